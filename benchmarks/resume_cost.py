"""What a resume costs: ``load_state_dict`` + the first batch, next to a fresh start.

A run of 10 epochs over 10^6 training samples (batch size 256, a 10,000-sample evaluation
every 500 updates) is resumed from a state saved in the middle of epoch 1 and of the last
epoch. The seek is closed form, so both cost about the same: a few times one iteration of
the sampler over the epoch's consumed indices (skipped without loading any data, or jumped
over by ``iter_from`` where the sampler has it), independent of the epochs before.

Run: ``python benchmarks/resume_cost.py`` (``--help`` for the options).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

from torch.utils.data import DistributedSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)

SAMPLERS: dict[str, Callable[[range], Any]] = {
    "SequentialSampler": SequentialSampler,
    "SeededRandomSampler": lambda data: SeededRandomSampler(data, seed=0),
    "DistributedSampler": lambda data: DistributedSampler(data, num_replicas=1, rank=0),
}


def build(make_sampler: Callable[[range], Any], samples: int, epochs: int) -> Any:
    """The run's loader (no workers: the cost measured is the library's and the sampler's)."""
    sampler = InterleavedSampler(
        make_sampler(range(samples)),
        InterleavedSamplerConfig(batch_size=256, max_epochs=epochs),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(range(10_000)), every_n_updates=500)
        ],
    )
    return sampler.get_data_loader()


def first_batch_seconds(loader: Any, state: dict[str, Any] | None) -> float:
    """Seconds for ``load_state_dict(state)`` (if given) and the first batch."""
    began = time.perf_counter()
    if state is not None:
        loader.load_state_dict(state)
    next(iter(loader))
    return time.perf_counter() - began


def state_in_epoch(loader: Any, epoch: int) -> dict[str, Any]:
    """A state in the middle of ``epoch`` (half of its updates done)."""
    schedule = loader.batch_sampler.schedule
    per_epoch = schedule.structure.updates_per_epoch
    state = loader.state_dict()
    state["batches"] = schedule.batches_before(epoch * per_epoch + per_epoch // 2)
    return state


def epoch_iteration_seconds(make_sampler: Callable[[range], Any], samples: int) -> float:
    """Seconds to iterate one epoch of the sampler (the floor of a skip-based seek)."""
    sampler = make_sampler(range(samples))
    began = time.perf_counter()
    sum(1 for _ in islice(iter(sampler), samples))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10**6, help="training samples (10^6)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the run (10)")
    parser.add_argument("--repeats", type=int, default=5, help="median of this many runs (5)")
    args = parser.parse_args()
    last = args.epochs - 1
    print(
        f"run: {args.epochs} epochs of {args.samples:,} samples, batch size 256, evaluation "
        f"every 500 updates; median of {args.repeats} repeats, milliseconds"
    )
    header = ("sampler", "fresh start", "resume ep. 1", f"resume ep. {last}", "1 epoch iter")
    print(f"{header[0]:<20}" + "".join(f"{h:>15}" for h in header[1:]) + "   last/1   last/iter")
    for name, make_sampler in SAMPLERS.items():
        times: dict[str, list[float]] = {key: [] for key in header[1:]}
        for _ in range(args.repeats):  # alternate the cases: the machine is shared and noisy
            loader = build(make_sampler, args.samples, args.epochs)
            times[header[1]].append(first_batch_seconds(loader, None))
            for key, epoch in ((header[2], 1), (header[3], last)):
                loader = build(make_sampler, args.samples, args.epochs)
                times[key].append(first_batch_seconds(loader, state_in_epoch(loader, epoch)))
            times[header[4]].append(epoch_iteration_seconds(make_sampler, args.samples))
        ms = {key: statistics.median(values) * 1000 for key, values in times.items()}
        print(
            f"{name:<20}"
            + "".join(f"{ms[key]:>15.1f}" for key in header[1:])
            + f"{ms[header[3]] / ms[header[2]]:>9.2f}x{ms[header[3]] / ms[header[4]]:>11.2f}x"
        )


if __name__ == "__main__":
    main()
