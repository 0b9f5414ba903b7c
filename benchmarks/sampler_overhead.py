"""Sampler overhead: producing every batch index list of a run vs merely iterating its samplers.

The floor is what any loader must do: iterate the main sampler once per epoch (after
``set_epoch``) and each evaluation sampler once per pass. The interleaved batch sampler adds
batching, counters, due checks and index offsets on top. Both are timed alternately in one
process; the ratio of the medians is printed. Also prints the per-index ``SamplerOutput``
iteration (the reference's interface) and the time ``len()`` takes for a run of 10^6 updates.

Usage: python benchmarks/sampler_overhead.py [--samples N] [--repeats R] [--replicas W]
"""

from __future__ import annotations

import argparse
import time

from timing import median_seconds
from torch.utils.data import SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)


def build(
    samples: int,
    eval_samples: int,
    every: int,
    max_updates: int | None = None,
    replicas: int = 1,
    rank: int = 0,
) -> InterleavedSampler:
    config = (
        InterleavedSamplerConfig(batch_size=256, max_updates=max_updates)
        if max_updates
        else InterleavedSamplerConfig(batch_size=256, max_epochs=1)
    )
    return InterleavedSampler(
        SeededRandomSampler(range(samples), seed=0),
        config,
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(range(eval_samples)), every_n_updates=every)
        ],
        num_replicas=replicas,
        rank=rank,
    )


def iterate_samplers(sampler: InterleavedSampler) -> None:
    """The floor: every sampler iterated exactly as often as the run needs it; with the run
    split over ranks, the rank's indices only (its shard of the training set, its strided
    part of each evaluation pass)."""
    schedule = sampler.schedule
    replicas, rank = sampler.num_replicas, sampler.rank
    main = SeededRandomSampler(
        sampler.main_sampler.data_source,  # type: ignore[attr-defined]
        seed=0,
        num_replicas=replicas,
        rank=rank,
        drop_last=True,
    )
    epochs = range(
        schedule.start.epoch, -(-schedule.end_update // schedule.structure.updates_per_epoch)
    )
    for epoch in epochs:
        main.set_epoch(epoch)
        for _ in main:
            pass
    for i, callback in enumerate(sampler.extra_samplers):
        for _ in range(schedule.passes(i)):
            for _ in range(rank, len(callback.sampler), replicas):
                pass


def batch_lists(sampler: InterleavedSampler) -> None:
    for _ in sampler.batch_sampler:
        pass


def per_index(sampler: InterleavedSampler) -> None:
    for _ in sampler:
        pass


def report(sampler: InterleavedSampler, args: argparse.Namespace) -> None:
    """Time the run's batch index lists against the floor and print both."""
    indices = sum(len(b) for b in sampler.batch_sampler)
    seconds = median_seconds(
        {
            "iterate samplers (floor)": lambda: iterate_samplers(sampler),
            "batch index lists": lambda: batch_lists(sampler),
            "per-index SamplerOutput": lambda: per_index(sampler),
        },
        args.repeats,
    )
    floor = seconds["iterate samplers (floor)"]
    split = (
        f", rank {sampler.rank} of {sampler.num_replicas} (its part of every batch)"
        if sampler.num_replicas > 1
        else ""
    )
    print(
        f"run: {args.samples:,} training samples, batch size 256, {args.eval_samples:,}-sample "
        f"evaluation every {args.every} updates{split}: {len(sampler.batch_sampler):,} "
        f"batches, {indices:,} indices; median of {args.repeats} alternating repeats"
    )
    for name, value in seconds.items():
        print(f"  {name:<26} {value * 1e3:8.1f} ms   {value / floor:5.2f}x floor")
    print(
        f"  ratio batch index lists / floor: {seconds['batch index lists'] / floor:.2f} "
        "(goal: at most 1.3)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10**6)
    parser.add_argument("--eval-samples", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500, help="evaluation every n updates")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--replicas", type=int, default=4, help="ranks of the split run")
    args = parser.parse_args()

    for replicas, rank in ((1, 0), (args.replicas, 1)):
        report(build(args.samples, args.eval_samples, args.every, None, replicas, rank), args)

    big = build(4096, 1000, 1000, max_updates=10**6)
    start = time.perf_counter()
    length = len(big.batch_sampler)
    elapsed = time.perf_counter() - start
    print(
        f"len() of a 10^6-update run with a callback every 1,000 updates: {length:,} batches "
        f"in {elapsed * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
