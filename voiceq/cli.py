"""The `voiceq` command line.

    voiceq make-test-checkpoint DIR      random-weight Chatterbox checkpoint for offline runs and tests
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

Command = Callable[[argparse.Namespace], int]


def cmd_make_test_checkpoint(args: argparse.Namespace) -> int:
    from .engine.checkpoint import make_test_checkpoint

    out = make_test_checkpoint(
        args.dir, seed=args.seed, stop_after=args.stop_after, max_speech_tokens=args.max_speech_tokens
    )
    print(f"wrote a random-weight checkpoint to {out}")
    print(f"run offline with: CHATTERBOX_CKPT_DIR={out} serve run serve_app:app")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceq", description="voiceq: voice-cloning job queue")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-test-checkpoint", help="write a random-weight Chatterbox checkpoint")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-after", type=int, default=16,
                   help="speech tokens after which the random T3 starts choosing its stop token")
    p.add_argument("--max-speech-tokens", type=int, default=64,
                   help="speech-token cap the checkpoint carries")
    p.set_defaults(func=cmd_make_test_checkpoint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
