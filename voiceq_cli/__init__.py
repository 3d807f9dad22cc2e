"""The server's `voiceq` command: a composition root over three packages that do not know each
other's commands, so none of them imports another upwards:

- voiceq_client.cli: the client's commands (submit, status, jobs, ...), also in the light client;
- voiceq.cli: those plus `make-test-checkpoint` (the engine's random-weight checkpoints);
- droplets.lifecycle: `voiceq droplets --cluster NAME ...`, the cluster's GPU droplets.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from voiceq import cli as core_cli


def cmd_droplets(args: argparse.Namespace) -> int:
    """`voiceq droplets --cluster NAME`: droplets.lifecycle, which talks to DigitalOcean."""
    from droplets.lifecycle import main as lifecycle_main

    return lifecycle_main(args.rest)


def commands(sub: Any) -> None:
    """The commands added to voiceq.cli's."""
    p = sub.add_parser("droplets", add_help=False,
                       help="the cluster's GPU droplets: why, since when, cost so far (see --help)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_droplets)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["droplets"]:  # its own options (droplets.lifecycle's), passed through whole
        return cmd_droplets(argparse.Namespace(rest=argv[1:]))
    return core_cli.main(argv, extend=commands)
