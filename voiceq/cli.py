"""voiceq's command line: the light client's commands (voiceq_client.cli) plus the one that
needs the engine:

    voiceq make-test-checkpoint DIR      random-weight Chatterbox checkpoint for offline runs and tests

The installed `voiceq` command (voiceq_cli) adds `droplets`, which lives above voiceq.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from voiceq_client import cli as _light
from voiceq_client.cli import *  # noqa: F401,F403  (the commands, for callers of voiceq.cli)
from voiceq_client.cli import Extension
from voiceq_client.cli import build_parser as _build_parser
from voiceq_client.present import *  # noqa: F401,F403  (the presentation, likewise)
from voiceq_client.present import (EXIT_ERROR, EXIT_JOB_FAILED, EXIT_OK, EXIT_TIMEOUT,  # noqa: F401
                                   troubleshooting)


def cmd_make_test_checkpoint(args: argparse.Namespace) -> int:
    from .engine.checkpoint import make_test_checkpoint

    out = make_test_checkpoint(
        args.dir, model=args.model, seed=args.seed, stop_after=args.stop_after,
        stop_position=args.stop_position, max_speech_tokens=args.max_speech_tokens,
    )
    print(f"wrote a random-weight {args.model} checkpoint to {out}")
    env = {"chatterbox": "CHATTERBOX_CKPT_DIR", "chatterbox-turbo": "CHATTERBOX_TURBO_CKPT_DIR",
           "chatterbox-multilingual": "CHATTERBOX_MULTILINGUAL_CKPT_DIR"}[args.model]
    print(f"run offline with: {env}={out} serve run serve_app:app")
    return 0


def server_commands(sub: Any) -> None:
    p = sub.add_parser("make-test-checkpoint", help="write a random-weight Chatterbox checkpoint")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-after", type=int, default=16,
                   help="speech tokens after which the random T3 starts choosing its stop token")
    p.add_argument("--max-speech-tokens", type=int, default=64,
                   help="speech-token cap the checkpoint carries")
    p.add_argument("--model", default="chatterbox",
                   choices=["chatterbox", "chatterbox-turbo", "chatterbox-multilingual"],
                   help="which member of the Chatterbox family (default: chatterbox)")
    p.add_argument("--stop-position", type=int, default=180,
                   help="Turbo only: the absolute position (prefix included) where its T3 starts to stop")
    p.set_defaults(func=cmd_make_test_checkpoint)


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(server_commands)


def main(argv: Sequence[str] | None = None, *, extend: Extension | None = None) -> int:
    """`extend`: more commands, added after these (voiceq_cli's)."""
    def commands(sub: Any) -> None:
        server_commands(sub)
        if extend is not None:
            extend(sub)

    return _light.main(argv, extend=commands)


if __name__ == "__main__":
    sys.exit(main())
