"""End to end: one interleaved DataLoader vs one DataLoader per dataset (with and without
persistent workers), for a training run with periodic evaluation on worker-bound data.

A thin wrapper of ``python -m interleaved_sampler bench`` (see :mod:`interleaved_sampler.bench`
for what is measured and how); it takes the same arguments.

Usage: python benchmarks/end_to_end.py [--repeats R] [--plot docs/bench.png] [...]
"""

from __future__ import annotations

import sys

from interleaved_sampler.cli import main

if __name__ == "__main__":  # spawned workers import this module: run only in the parent
    raise SystemExit(main(["bench", *sys.argv[1:]]))
