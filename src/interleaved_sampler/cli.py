"""Command line: ``python -m interleaved_sampler {demo,plan,bench}``.

Each command lives in its own module with ``add_parser(subparsers)`` that registers it and
sets ``func`` (called with the parsed arguments, returning an exit code). Only this layer
exits the process: library functions raise ``ValueError`` or ``ImportError``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from interleaved_sampler import __version__, bench, demo, plan
from interleaved_sampler.extras import MissingExtraError

COMMANDS = (demo, plan, bench)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m interleaved_sampler`` with every command."""
    parser = argparse.ArgumentParser(
        prog="python -m interleaved_sampler",
        description="One DataLoader for training and every periodic evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; a missing optional dependency ends it with one line naming the extra.

    Args:
        argv: the arguments (``None``: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except MissingExtraError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    return code
