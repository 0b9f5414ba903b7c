"""Command line: ``python -m interleaved_sampler {demo,...}``.

Each command lives in its own module with ``add_parser(subparsers)`` that registers it and
sets ``func`` (called with the parsed arguments, returning an exit code).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from interleaved_sampler import demo, plan

COMMANDS = (demo, plan)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interleaved_sampler",
        description="One DataLoader for training and every periodic evaluation.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
