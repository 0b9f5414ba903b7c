"""The interleaved loader against a plain DataLoader doing the same training work.

Both load the same synthetic, worker-bound training set (the ``bench`` command's dataset) for
the same number of batches with the same workers; the interleaved loader has no callbacks and
yields tagged batches. Whatever separates the two is the library's own cost; what separates
both from the worker-bound limit (total loading work / workers) is torch's: worker start-up
and handing each batch from a worker to the main process.

Usage: python benchmarks/plain_vs_interleaved.py [--start-method spawn] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from torch.utils.data import DataLoader

from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig, SeededRandomSampler
from interleaved_sampler.bench import Scenario, SyntheticDataset


def plain(train: SyntheticDataset, scenario: Scenario) -> float:
    start = time.perf_counter()
    loader = DataLoader(
        train,
        batch_size=scenario.batch_size,
        sampler=SeededRandomSampler(train),
        drop_last=True,
        num_workers=scenario.workers,
        multiprocessing_context=scenario.start_method,
    )
    for _ in loader:
        time.sleep(scenario.step_ms / 1000)
    return time.perf_counter() - start


def interleaved(train: SyntheticDataset, scenario: Scenario) -> float:
    start = time.perf_counter()
    sampler = InterleavedSampler(
        SeededRandomSampler(train),
        InterleavedSamplerConfig(batch_size=scenario.batch_size, max_epochs=1),
    )
    loader = sampler.get_data_loader(
        num_workers=scenario.workers, multiprocessing_context=scenario.start_method, tagged=True
    )
    for _ in loader:
        time.sleep(scenario.step_ms / 1000)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", default="spawn", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scenario = Scenario(start_method=args.start_method)
    train = SyntheticDataset(0, scenario.train_size, scenario)
    batches = scenario.train_size // scenario.batch_size
    limit = batches * scenario.batch_size * scenario.load_ms / 1000 / scenario.workers
    times: dict[str, list[float]] = {"plain DataLoader": [], "interleaved (tagged)": []}
    for _ in range(args.repeats):  # alternate, so load drifts hit both alike
        times["plain DataLoader"].append(plain(train, scenario))
        times["interleaved (tagged)"].append(interleaved(train, scenario))
    print(
        f"one epoch: {batches} batches of {scenario.batch_size}, {scenario.load_ms} ms CPU per "
        f"sample, {scenario.workers} workers ({args.start_method}); worker-bound limit "
        f"{limit:.2f} s; median of {args.repeats}"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<22} {median:6.2f} s  {median / limit:5.3f}x limit")
    ratio = statistics.median(times["interleaved (tagged)"]) / statistics.median(
        times["plain DataLoader"]
    )
    print(f"interleaved / plain: {ratio:.3f}")


if __name__ == "__main__":
    main()
