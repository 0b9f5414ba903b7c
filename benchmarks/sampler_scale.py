"""SeededRandomSampler at scale: memory, throughput and seek time, against torch's samplers.

For each dataset size it prints:
- the peak memory growth (RSS high-water mark, Linux) while taking the first ``--take``
  indices, measured in a fresh process per case so one case does not hide another's peak,
  for SeededRandomSampler and, where it fits, torch's RandomSampler;
- indices per second of SeededRandomSampler, torch's RandomSampler and a bare
  ``torch.randperm(n).tolist()``, iterating whole epochs as a DataLoader does (torch's
  RandomSampler then draws a second permutation that it discards); sizes above ``--count``
  time the first ``--count`` indices of SeededRandomSampler only, and torch's two run only up
  to ``--torch-max`` (above it their lists take many GB);
- for the largest size, the time to the first batch (``--batch`` indices) of
  ``iter_from(n // 2)`` next to ``iter_from(0)``.
Timed variants alternate; each figure is the median of ``--repeats`` runs.

Usage: python benchmarks/sampler_scale.py [--sizes N ...] [--repeats R]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import torch
from timing import median_seconds
from torch.utils.data import RandomSampler

from interleaved_sampler import SeededRandomSampler

KINDS = ("seeded", "torch", "randperm")


def indices(kind: str, size: int) -> Iterator[int]:
    """A fresh epoch of ``size`` indices from the sampler ``kind``."""
    if kind == "seeded":
        return iter(SeededRandomSampler(range(size), seed=0))
    if kind == "torch":
        return iter(RandomSampler(range(size)))
    return iter(torch.randperm(size).tolist())


def epoch_runner(kind: str, size: int, count: int) -> Callable[[], None]:
    """Iterates a whole epoch, or its first ``count`` indices when ``count < size``."""
    if count == size:
        return lambda: consume(indices(kind, size))
    return lambda: consume(islice(indices(kind, size), count))


def consume(items: Iterable[int]) -> None:
    for _ in items:
        pass


def status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match is not None, field
    return int(match.group(1))


def memory_growth(kind: str, size: int, take: int) -> None:
    """Runs in a fresh process: prints the peak RSS growth (MiB) while taking ``take`` indices."""
    sampler = (
        SeededRandomSampler(range(size), seed=0) if kind == "seeded" else RandomSampler(range(size))
    )
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass  # the mark then includes the import peak: the growth is an upper bound
    before = status_kib("VmRSS")
    consume(islice(iter(sampler), take))
    print((status_kib("VmHWM") - before) / 1024)


def measured_growth(kind: str, size: int, take: int) -> float:
    command = [sys.executable, __file__, "--memory-child", kind, str(size), str(take)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10**6, 10**7, 10**8, 10**9],
        help="dataset sizes (default: 10^6 10^7 10^8 10^9)",
    )  # fmt: skip
    parser.add_argument(
        "--take", type=int, default=10**6,
        help="indices taken in the memory measurement (default: 10^6)",
    )  # fmt: skip
    parser.add_argument(
        "--count", type=int, default=10**7,
        help="indices timed per size, at most the size (default: 10^7)",
    )  # fmt: skip
    parser.add_argument(
        "--torch-max", type=int, default=10**7,
        help="largest size torch's samplers are run at (default: 10^7)",
    )  # fmt: skip
    parser.add_argument(
        "--batch", type=int, default=256, help="first-batch size of the seek (default: 256)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (default: 3)")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        kind, size, take = args.memory_child
        memory_growth(kind, int(size), int(take))
        return

    print(
        f"peak RSS growth taking the first {args.take:,} indices (fresh process per case), "
        f"and indices per second over whole epochs, or the first {args.count:,} indices (median "
        f"of {args.repeats} alternating runs)"
    )
    print(
        f"{'n':>14} | {'seeded MiB':>10} {'vs 1st n':>9} {'torch MiB':>10} | "
        f"{'seeded /s':>11} {'torch /s':>11} {'ratio':>6} {'randperm /s':>12} {'ratio':>6}"
    )
    first_growth = None
    for size in args.sizes:
        with_torch = size <= args.torch_max
        growths = {"seeded": [], "torch": []}  # type: dict[str, list[float]]
        for _ in range(args.repeats):
            for kind in ("seeded", "torch") if with_torch else ("seeded",):
                growths[kind].append(measured_growth(kind, size, min(args.take, size)))
        seeded_mib = statistics.median(growths["seeded"])
        first_growth = seeded_mib if first_growth is None else first_growth
        count = min(size, args.count)
        kinds = KINDS if with_torch else ("seeded",)
        seconds = median_seconds(
            {kind: epoch_runner(kind, size, count) for kind in kinds}, args.repeats
        )
        rate = {kind: count / value for kind, value in seconds.items()}
        row = f"{size:>14,} | {seeded_mib:>10.1f} {seeded_mib - first_growth:>+9.1f} "
        if with_torch:
            row += (
                f"{statistics.median(growths['torch']):>10.1f} | {rate['seeded']:>11,.0f} "
                f"{rate['torch']:>11,.0f} {rate['seeded'] / rate['torch']:>5.2f}x "
                f"{rate['randperm']:>12,.0f} {rate['seeded'] / rate['randperm']:>5.2f}x"
            )
        else:
            row += f"{'-':>10} | {rate['seeded']:>11,.0f}   (torch skipped: its list needs GBs)"
        print(row)

    size = max(args.sizes)
    sampler = SeededRandomSampler(range(size), seed=0)
    seek = median_seconds(
        {
            "iter_from(0)": lambda: consume(islice(sampler.iter_from(0), args.batch)),
            f"iter_from({size // 2:,})": lambda: consume(
                islice(sampler.iter_from(size // 2), args.batch)
            ),
        },
        max(args.repeats, 9),
    )
    print(f"time to the first {args.batch} indices, n = {size:,}:")
    for name, value in seek.items():
        print(f"  {name:<24} {value * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
