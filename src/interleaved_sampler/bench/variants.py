"""The benchmarked ways to load a run (:data:`VARIANTS`) and the training loops that run them.

A variant is data (:class:`Variant`: a name, the function that runs the training loop with
its loaders, the worker pools it starts, the worker-bound limit its wall time is compared
with); whatever it is, every run must consume exactly the samples of the first variant's run,
phase by phase (:func:`~interleaved_sampler.bench.samples.check_same_samples`). To add one,
write its loop like :func:`run_per_dataset` and append a :class:`Variant` to :data:`VARIANTS`
(and the pairs to compare it with to :data:`RATIOS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.context import BaseContext
from typing import Any

from torch.utils.data import DataLoader, SequentialSampler

from interleaved_sampler.bench.measure import StartupCounter
from interleaved_sampler.bench.samples import Recorder, check_tag
from interleaved_sampler.bench.scenario import Datasets, Scenario
from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.sampler import InterleavedSampler
from interleaved_sampler.samplers import SeededRandomSampler


def loader_args(
    scenario: Scenario, context: BaseContext, counter: StartupCounter
) -> dict[str, Any]:
    """DataLoader arguments that every variant shares.

    Args:
        scenario: the run (workers, prefetching).
        context: the multiprocessing context of the workers.
        counter: counts the worker start-ups.
    """
    return {
        "num_workers": scenario.workers,
        "multiprocessing_context": context,
        "worker_init_fn": counter,
        "prefetch_factor": scenario.prefetch_factor,
    }


def run_interleaved(
    scenario: Scenario, data: Datasets, common: dict[str, Any], rec: Recorder, cache: bool
) -> None:
    """The run through this library: one tagged DataLoader for training and every evaluation.

    Args:
        scenario: the run.
        data: its datasets.
        common: the DataLoader arguments every variant shares.
        rec: records the waiting, the samples and the bytes the cache held.
        cache: cache the evaluation datasets (``SamplerIntervalConfig(cache=True)``).
    """
    sampler = InterleavedSampler(
        SeededRandomSampler(data.train, seed=scenario.seed),
        InterleavedSamplerConfig(batch_size=scenario.batch_size, max_updates=scenario.updates),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(dataset),
                every_n_updates=scenario.eval_every,
                batch_size=scenario.eval_batch_size,
                cache=cache,
            )
            for dataset in data.evals
        ],
    )
    loader = sampler.get_data_loader(tagged=True, **common)
    for batch in rec.fetch(loader):
        check_tag(batch)
        rec.consume(batch.data, scenario.step_ms / 1000)
        rec.cache_bytes = max(rec.cache_bytes, loader.cache_bytes)


def run_per_dataset(
    scenario: Scenario, data: Datasets, common: dict[str, Any], rec: Recorder, persistent: bool
) -> None:
    """The usual run: one DataLoader per dataset, evaluation passes inside the training loop.

    Args:
        scenario: the run.
        data: its datasets.
        common: the DataLoader arguments every variant shares.
        rec: records the waiting and the samples.
        persistent: keep each DataLoader's workers alive between its iterations.
    """
    step_s = scenario.step_ms / 1000
    train_sampler = SeededRandomSampler(data.train, seed=scenario.seed)
    train = DataLoader(
        data.train,
        batch_size=scenario.batch_size,
        sampler=train_sampler,
        drop_last=True,
        persistent_workers=persistent,
        **common,
    )
    evals = [
        DataLoader(ds, batch_size=scenario.eval_batch_size, persistent_workers=persistent, **common)
        for ds in data.evals
    ]
    update = 0
    for epoch in range(scenario.epochs_started):
        train_sampler.set_epoch(epoch)
        for batch in rec.fetch(train):
            rec.consume(batch, step_s)
            update += 1
            if update % scenario.eval_every == 0:
                for loader in evals:
                    for eval_batch in rec.fetch(loader):
                        rec.consume(eval_batch, step_s)
            if update == scenario.updates:
                break


@dataclass(frozen=True)
class Limit:
    """A lower bound of a run's wall time: the loading work it leaves to the workers,
    divided by the workers of one pool.

    Args:
        name: its row in the table.
        seconds: its value in a scenario.
    """

    name: str
    seconds: Callable[[Scenario], float]


WORKER_BOUND = Limit("worker-bound limit", lambda s: s.worker_bound_s)
"""Every sample of the run loaded by the workers."""


@dataclass(frozen=True)
class Variant:
    """One way to load the benchmarked run.

    Args:
        name: its name in the tables and the chart.
        run: runs the scenario's training loop through its loaders:
            ``run(scenario, data, common_loader_args, recorder)``; every batch goes through
            ``recorder.fetch`` and ``recorder.consume``.
        pools: the number of worker pools it starts in a scenario.
        color: its color in the chart.
        limit: the worker-bound limit its wall time is compared with (its distance to it
            is overhead); None: not compared (the start-ups of more pools are a known cost).

    Example:
        >>> variant("interleaved").startups(Scenario(workers=3))
        3
    """

    name: str
    run: Callable[[Scenario, Datasets, dict[str, Any], Recorder], None]
    pools: Callable[[Scenario], int]
    color: str
    limit: Limit | None = None

    def startups(self, scenario: Scenario) -> int:
        """How many worker processes it starts in ``scenario``."""
        return self.pools(scenario) * scenario.workers


VARIANTS = (
    Variant(
        "interleaved", partial(run_interleaved, cache=False), lambda s: 1, "tab:green", WORKER_BOUND
    ),
    Variant(
        "interleaved + cache",
        partial(run_interleaved, cache=True),
        lambda s: 1,
        "tab:blue",
        Limit("worker-bound limit with cache", lambda s: s.worker_bound_cached_s),
    ),
    Variant(
        "per-dataset",
        partial(run_per_dataset, persistent=False),
        lambda s: s.epochs_started + s.evaluations * len(s.eval_sizes),
        "tab:red",
    ),
    Variant(
        "persistent",
        partial(run_per_dataset, persistent=True),
        lambda s: 1 + len(s.eval_sizes) if s.evaluations else 1,
        "tab:orange",
    ),
)
"""The benchmarked variants, in the order they run in the first round."""


RATIOS = (
    ("per-dataset", "interleaved"),
    ("persistent", "interleaved"),
    ("interleaved", "interleaved + cache"),
)
"""(slower, faster) pairs of variants whose wall time and peak PSS ratios a report gives."""


def variant(name: str) -> Variant:
    """The variant called ``name``."""
    return next(v for v in VARIANTS if v.name == name)
