"""``bench``: one interleaved DataLoader against one DataLoader per dataset, end to end.

Needs the optional extra ``bench`` (psutil for the measurements, matplotlib for the chart);
``import interleaved_sampler`` never imports this module.

A training run with periodic evaluation over synthetic, worker-bound datasets, run several ways
(the :data:`VARIANTS`) in one process, alternating and repeated:

- ``interleaved``: this library: one (tagged) DataLoader, one worker pool for the whole run;
- ``interleaved + cache``: the same with the evaluation cache (``cache=True``): each
  evaluation sample is loaded once, later passes are served from memory;
- ``per-dataset``: one DataLoader per dataset without persistent workers: a fresh pool for
  every training epoch and for every evaluation pass;
- ``persistent``: one DataLoader per dataset with ``persistent_workers=True``: one pool per
  dataset, each alive for the whole run.

A variant is data (:class:`Variant`: a name, the function that runs the training loop with
its loaders, the worker pools it starts, the worker-bound limit its wall time is compared
with); whatever it is, every run must consume exactly the samples of the first variant's run,
phase by phase (:func:`check_same_samples`). To add one, write its loop like
:func:`run_per_dataset` and append a :class:`Variant` to :data:`VARIANTS` (and the pairs to
compare it with to :data:`RATIOS`).

Loading a sample costs ``load_ms`` in a worker. With ``load="cpu"`` (the default) that is
``load_ms`` of CPU time on the thread's CPU clock, spent in small torch operations: a fixed
amount of CPU work per sample, like decoding or augmenting, which competes for the cores with
every other process, so more workers than cores cannot make it faster. (A busy loop on the wall
clock would not be honest: descheduled, it still ends on time, as if it had run.) Like image
decoding in C, the operations release the GIL: a pure-Python loop holding it would delay the
worker thread that hands each batch tensor's file descriptor to the main process (up to the
5 ms switch interval per tensor), and every variant would be bound by that instead of by the
loading work. ``load="sleep"`` models I/O-bound loading, which more processes than cores can
overlap. The model step is simulated by sleeping ``step_ms`` per batch in the main process: a
stand-in for a GPU step, which leaves the CPU cores to the workers.

Memory is the peak of the summed PSS (proportional set size) of the main process and all its
descendants, sampled by a thread: PSS splits each shared page among the processes that map
it, so the sum is the physical memory the process tree occupies. Summed RSS would count the
shared pages (torch's libraries in every spawned worker, copy-on-write pages after ``fork``)
once per process; summed USS (also reported) leaves them out altogether.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import shlex
import statistics
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.data import InterleavedBatch
from interleaved_sampler.extras import require
from interleaved_sampler.sampler import InterleavedSampler
from interleaved_sampler.samplers import SeededRandomSampler

LOADS = ("cpu", "sleep")
START_METHODS = ("fork", "spawn", "forkserver")
MIB = 2**20

# One phase of a run: the source (0 = training, i + 1 = evaluation dataset i) and the sample
# indices of its consecutive batches, in the order the loop consumed them.
Phase = tuple[int, tuple[int, ...]]


class SampleMismatchError(RuntimeError):
    """The variants of a benchmark did not consume the same samples in the same phases."""


@dataclass(frozen=True)
class Scenario:
    """One benchmarked training run.

    Args:
        train_size: samples in the training dataset.
        eval_sizes: samples in each evaluation dataset.
        batch_size: training batch size (the incomplete last batch of an epoch is dropped).
        eval_batch_size: evaluation batch size.
        updates: training updates of the run.
        eval_every: a pass over every evaluation dataset after every ``eval_every`` updates.
        load_ms: cost of loading one sample, in milliseconds.
        load: ``"cpu"`` (``load_ms`` of the thread's CPU time, see :func:`burn_cpu`) or
            ``"sleep"``.
        sample_kib: size of a sample's float32 payload, in KiB.
        step_ms: simulated model step per batch in the main process (a sleep), in ms.
        workers: worker processes per DataLoader.
        start_method: ``"fork"``, ``"spawn"`` or ``"forkserver"``.
        prefetch_factor: batches prefetched per worker.
        seed: seed of the training sampler.
    """

    train_size: int = 4096
    eval_sizes: tuple[int, ...] = (512,)
    batch_size: int = 32
    eval_batch_size: int = 64
    updates: int = 400
    eval_every: int = 50
    load_ms: float = 2.0
    load: str = "cpu"
    sample_kib: int = 48
    step_ms: float = 5.0
    workers: int = 2
    start_method: str = "spawn"
    prefetch_factor: int = 2
    seed: int = 0

    @property
    def updates_per_epoch(self) -> int:
        return self.train_size // self.batch_size

    @property
    def epochs_started(self) -> int:
        return math.ceil(self.updates / self.updates_per_epoch)

    @property
    def evaluations(self) -> int:
        return self.updates // self.eval_every

    @property
    def samples_loaded(self) -> int:
        return self.updates * self.batch_size + self.evaluations * sum(self.eval_sizes)

    @property
    def samples_loaded_cached(self) -> int:
        """Samples loaded with the evaluation cache: each evaluation sample once."""
        return self.updates * self.batch_size + min(self.evaluations, 1) * sum(self.eval_sizes)

    @property
    def worker_bound_s(self) -> float:
        """The worker-bound limit: total loading work divided by the workers of one pool."""
        return self.samples_loaded * self.load_ms / 1000 / self.workers

    @property
    def worker_bound_cached_s(self) -> float:
        """The worker-bound limit with the evaluation cache."""
        return self.samples_loaded_cached * self.load_ms / 1000 / self.workers


@dataclass(frozen=True)
class RunResult:
    """The measurements of one run of one variant.

    Args:
        variant: the name of a :class:`Variant`.
        wall_s: wall time of the whole run (building the loaders to shutting the last pool).
        wait_s: time the loop spent waiting for data (in a loader's ``iter()``/``next()``).
        startups: worker processes started.
        peak_pss: peak of the summed PSS of the process tree, in bytes.
        peak_uss: peak of the summed USS of the process tree, in bytes.
        cpu_s: CPU time of this process and its exited children (the workers, except with
            ``forkserver``) during the run: the loading work plus every overhead.
        other_cores: CPU cores that other processes of the machine kept busy on average
            during the run: the noise a figure carries.
        cache_bytes: the most bytes the evaluation cache held (the loader's
            ``cache_bytes``; 0 without the cache).
    """

    variant: str
    wall_s: float
    wait_s: float
    startups: int
    peak_pss: int
    peak_uss: int
    cpu_s: float
    other_cores: float
    cache_bytes: int = 0


@dataclass(frozen=True)
class Summary:
    """The medians (and the spread of the wall time) of one variant's runs.

    Args:
        variant: the name of a :class:`Variant`.
        runs: how many runs it summarises.
        wall_s: the median wall time.
        wall_min_s: the shortest wall time.
        wall_max_s: the longest wall time.
        wait_s, startups, peak_pss, peak_uss, cpu_s, other_cores: medians of the
            :class:`RunResult` fields of the same names (``startups``: the largest).
    """

    variant: str
    runs: int
    wall_s: float
    wall_min_s: float
    wall_max_s: float
    wait_s: float
    startups: int
    peak_pss: int
    peak_uss: int
    cpu_s: float
    other_cores: float

    @classmethod
    def of(cls, variant: str, runs: Sequence[RunResult]) -> Summary:
        """Summarise the runs of ``variant``.

        Args:
            variant: the variant.
            runs: its runs (at least one).
        """
        walls = [run.wall_s for run in runs]
        return cls(
            variant=variant,
            runs=len(runs),
            wall_s=statistics.median(walls),
            wall_min_s=min(walls),
            wall_max_s=max(walls),
            wait_s=statistics.median(run.wait_s for run in runs),
            startups=max(run.startups for run in runs),
            peak_pss=int(statistics.median(run.peak_pss for run in runs)),
            peak_uss=int(statistics.median(run.peak_uss for run in runs)),
            cpu_s=statistics.median(run.cpu_s for run in runs),
            other_cores=statistics.median(run.other_cores for run in runs),
        )


@dataclass(frozen=True)
class BenchReport:
    """All runs of a benchmark, in the order they ran.

    Args:
        scenario: the benchmarked run.
        runs: every run of every variant.
    """

    scenario: Scenario
    runs: tuple[RunResult, ...]

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The variants that ran, in the order of :data:`VARIANTS`."""
        ran = {run.variant for run in self.runs}
        return tuple(v for v in VARIANTS if v.name in ran)

    @property
    def limits(self) -> tuple[Limit, ...]:
        """The scenario's worker-bound limit, then those of the variants that ran."""
        limits = [WORKER_BOUND, *(v.limit for v in self.variants if v.limit is not None)]
        return tuple(dict.fromkeys(limits))

    def summary(self, variant: str) -> Summary:
        """The summary of ``variant``'s runs."""
        return Summary.of(variant, [run for run in self.runs if run.variant == variant])

    def to_json(self) -> dict[str, Any]:
        """The scenario, every run and the ratios, as JSON-compatible data."""
        return {
            "scenario": asdict(self.scenario),
            "worker_bound_s": self.scenario.worker_bound_s,
            "runs": [asdict(run) for run in self.runs],
            "ratios": self.ratios(),
        }

    def rounds(self) -> list[dict[str, RunResult]]:
        """The runs by round: each round ran every variant once."""
        size = len(self.variants)
        chunks = (self.runs[i : i + size] for i in range(0, len(self.runs), size))
        return [{run.variant: run for run in chunk} for chunk in chunks]

    def ratios(self) -> dict[str, tuple[float, float, float]]:
        """Ratios of the :data:`RATIOS` pairs that both ran (> 1: the second wins) and of the
        variants that have a limit to it (> 1: above it): of the medians, and the lowest and
        highest of the rounds' ratios."""
        ran = {v.name for v in self.variants}
        ratios = {
            f"{metric} {slower} / {faster}": (
                getattr(self.summary(slower), attribute) / getattr(self.summary(faster), attribute),
                [
                    getattr(r[slower], attribute) / getattr(r[faster], attribute)
                    for r in self.rounds()
                ],
            )
            for metric, attribute in (("wall", "wall_s"), ("peak PSS", "peak_pss"))
            for slower, faster in RATIOS
            if slower in ran and faster in ran
        }
        for v in self.variants:
            if v.limit is not None:
                limit = v.limit.seconds(self.scenario)
                ratios[f"wall {v.name} / {v.limit.name}"] = (
                    self.summary(v.name).wall_s / limit,
                    [r[v.name].wall_s / limit for r in self.rounds()],
                )
        return {name: (value, min(each), max(each)) for name, (value, each) in ratios.items()}


class SyntheticDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``i`` is ``(tensor([source, i]), payload)``; loading it costs ``load_ms``.

    Args:
        source: the id of this dataset (0 = training), returned with every item.
        size: number of items.
        scenario: the cost (``load_ms``, ``load``) and payload size (``sample_kib``) of an item.
    """

    def __init__(self, source: int, size: int, scenario: Scenario) -> None:
        self.source = source
        self.size = size
        self.load_s = scenario.load_ms / 1000
        self.load = scenario.load
        self.floats = scenario.sample_kib * 256

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.load == "cpu":
            burn_cpu(self.load_s)
        else:
            time.sleep(self.load_s)
        return torch.tensor([self.source, index]), torch.full((self.floats,), float(index))


def burn_cpu(seconds: float) -> None:
    """Compute until this thread has used ``seconds`` of CPU time, mostly without the GIL.

    Args:
        seconds: CPU time to use.
    """
    end = time.thread_time() + seconds
    values = torch.linspace(0, 1, 2048)
    while time.thread_time() < end:
        torch.sin(values, out=values)  # ~10 us in C, GIL released


class StartupCounter:
    """A ``worker_init_fn`` that counts worker start-ups in shared memory.

    Args:
        context: the multiprocessing context the workers are started with.
    """

    def __init__(self, context: BaseContext) -> None:
        self.started = context.Value("i", 0)

    def __call__(self, worker_id: int) -> None:
        with self.started.get_lock():
            self.started.value += 1

    @property
    def count(self) -> int:
        value: int = self.started.value
        return value


def _psutil() -> Any:
    return require("psutil", "the benchmark's memory and CPU measurements")


def tree_memory(process: Any) -> tuple[int, int]:
    """Summed ``(PSS, USS)`` in bytes of ``process`` and all its descendants.

    Args:
        process: a ``psutil.Process``.
    """
    psutil = _psutil()
    pss = uss = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # exited (or not ours) since children() listed it
        pss, uss = pss + info.pss, uss + info.uss
    return pss, uss


@dataclass(frozen=True)
class CpuSnapshot:
    """Busy CPU seconds of the whole machine and of this process tree, at one moment.

    The tree's are this process's and those of its children that have exited (as every
    worker has when a run ends; with ``forkserver`` they are the server's children, so they
    count as other processes).
    """

    machine_s: float
    tree_s: float

    @classmethod
    def now(cls) -> CpuSnapshot:
        psutil = _psutil()
        machine = psutil.cpu_times()
        idle = ("idle", "iowait", "guest", "guest_nice")  # guest time is also in user time
        busy = sum(machine) - sum(getattr(machine, name, 0.0) for name in idle)
        own = psutil.Process().cpu_times()
        return cls(busy, own.user + own.system + own.children_user + own.children_system)

    def other_cores(self, start: CpuSnapshot, wall_s: float) -> float:
        """Cores other processes kept busy on average since ``start``.

        Args:
            start: the snapshot at the start of the interval.
            wall_s: the interval's length in seconds.
        """
        others = (self.machine_s - start.machine_s) - (self.tree_s - start.tree_s)
        return max(others, 0.0) / wall_s


class MemoryPeak:
    """Samples :func:`tree_memory` of this process in a thread and keeps the peaks.

    Args:
        interval_s: seconds between samples (reading PSS costs a few ms of CPU per process).
    """

    def __init__(self, interval_s: float) -> None:
        psutil = _psutil()
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak_pss = self.peak_uss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample_until_stopped(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval_s):
                return

    def _sample(self) -> None:
        pss, uss = tree_memory(self.process)
        self.peak_pss, self.peak_uss = max(self.peak_pss, pss), max(self.peak_uss, uss)


@dataclass
class Recorder:
    """What the training loop observed: time waiting for data, the samples per phase and
    the most bytes the loader's evaluation cache held."""

    wait_s: float = 0.0
    phases: list[tuple[int, list[int]]] = field(default_factory=list)
    cache_bytes: int = 0

    def fetch(self, loader: Iterable[Any]) -> Iterator[Any]:
        """Iterate ``loader``, adding the time spent in ``iter()`` and ``next()`` to wait_s.

        Args:
            loader: a DataLoader.
        """
        start = time.perf_counter()
        iterator = iter(loader)
        self.wait_s += time.perf_counter() - start
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            self.wait_s += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    def consume(self, batch: Sequence[torch.Tensor], step_s: float) -> None:
        """Record the samples of ``batch`` and run the simulated model step.

        Args:
            batch: a collated ``(ids, payloads)`` batch; row ``j`` of ``ids`` is
                ``[source, index]`` of sample ``j``.
            step_s: duration of the simulated step (a sleep), in seconds.
        """
        ids = batch[0]
        source = int(ids[0, 0])
        if bool((ids[:, 0] != source).any()):
            raise SampleMismatchError(f"a batch mixes datasets: {sorted(set(ids[:, 0].tolist()))}")
        if not self.phases or self.phases[-1][0] != source:
            self.phases.append((source, []))
        self.phases[-1][1].extend(ids[:, 1].tolist())
        time.sleep(step_s)

    def trace(self) -> tuple[Phase, ...]:
        """The recorded phases, frozen."""
        return tuple((source, tuple(indices)) for source, indices in self.phases)


@dataclass(frozen=True)
class Datasets:
    """The training dataset and the evaluation datasets of a scenario."""

    train: SyntheticDataset
    evals: tuple[SyntheticDataset, ...]

    @classmethod
    def of(cls, scenario: Scenario) -> Datasets:
        """The datasets of ``scenario``: training is source 0, evaluation ``i`` source ``i + 1``.

        Args:
            scenario: the run.
        """
        evals = (SyntheticDataset(i + 1, n, scenario) for i, n in enumerate(scenario.eval_sizes))
        return cls(SyntheticDataset(0, scenario.train_size, scenario), tuple(evals))


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


def check_tag(batch: InterleavedBatch) -> None:
    """Raise :class:`SampleMismatchError` unless ``batch``'s tag names the samples it holds.

    Args:
        batch: a tagged batch of :class:`SyntheticDataset` samples.
    """
    ids = batch.data[0]
    if batch.source_index != int(ids[0, 0]) or batch.indices != ids[:, 1].tolist():
        raise SampleMismatchError(
            f"the tag of a batch (source {batch.source_index}, indices {batch.indices}) "
            f"disagrees with its samples {ids.tolist()}"
        )


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


def run_once(
    variant: Variant,
    scenario: Scenario,
    data: Datasets,
    context: BaseContext,
    memory_interval_s: float,
) -> tuple[RunResult, tuple[Phase, ...]]:
    """Run ``variant`` once and measure it.

    Args:
        variant: the variant.
        scenario: the run.
        data: its datasets.
        context: the multiprocessing context of the workers.
        memory_interval_s: seconds between memory samples.

    Returns:
        The measurements and the samples the loop consumed, per phase.
    """
    counter = StartupCounter(context)
    common = loader_args(scenario, context, counter)
    recorder = Recorder()
    with MemoryPeak(memory_interval_s) as memory:
        cpu = CpuSnapshot.now()
        start = time.perf_counter()
        variant.run(scenario, data, common, recorder)
        wall_s = time.perf_counter() - start  # the pools of the run are shut down by now
        cpu_end = CpuSnapshot.now()
    result = RunResult(
        variant.name,
        wall_s,
        recorder.wait_s,
        counter.count,
        memory.peak_pss,
        memory.peak_uss,
        cpu_end.tree_s - cpu.tree_s,
        cpu_end.other_cores(cpu, wall_s),
        recorder.cache_bytes,
    )
    return result, recorder.trace()


def check_same_samples(traces: dict[str, tuple[Phase, ...]]) -> None:
    """Raise :class:`SampleMismatchError` unless all variants consumed the same phases.

    Args:
        traces: the phases each variant consumed.
    """
    (reference_name, reference), *others = traces.items()
    for name, trace in others:
        if trace == reference:
            continue
        differ = next(
            (i for i, (x, y) in enumerate(zip(trace, reference, strict=False)) if x != y),
            min(len(trace), len(reference)),
        )
        raise SampleMismatchError(
            f"{name} and {reference_name} consumed different samples: {len(trace)} and "
            f"{len(reference)} phases, first difference in phase {differ}"
        )


def run_benchmark(
    scenario: Scenario,
    repeats: int,
    memory_interval_s: float = 1.0,
    log: Callable[[str], None] = print,
    variants: Collection[str] | None = None,
) -> BenchReport:
    """Run the variants ``repeats`` times, alternating, rotating the order each round.

    Args:
        scenario: the run.
        repeats: rounds; each runs every variant once.
        memory_interval_s: seconds between memory samples.
        log: receives a line per finished run.
        variants: the names of the variants to run (None: all of :data:`VARIANTS`); they
            run in the order of :data:`VARIANTS`.

    Raises:
        SampleMismatchError: if the variants did not consume exactly the same samples.
    """
    context = multiprocessing.get_context(scenario.start_method)
    data = Datasets.of(scenario)
    runs: list[RunResult] = []
    traces: dict[str, tuple[Phase, ...]] = {}
    order = [v for v in VARIANTS if variants is None or v.name in variants]
    width = max(len(v.name) for v in order)
    for round_ in range(repeats):
        shift = round_ % len(order)
        for variant in order[shift:] + order[:shift]:
            result, traces[variant.name] = run_once(
                variant, scenario, data, context, memory_interval_s
            )
            check_same_samples(traces)
            runs.append(result)
            cache = f"  cache {result.cache_bytes / MIB:.1f} MiB" if result.cache_bytes else ""
            log(
                f"round {round_ + 1}/{repeats}  {variant.name:<{width}} "
                f"wall {result.wall_s:6.2f} s  "
                f"waiting {result.wait_s:6.2f} s  {result.startups:3d} worker start-ups  "
                f"peak PSS {result.peak_pss / MIB:6.0f} MiB  "
                f"other processes busy {result.other_cores:4.2f} cores{cache}"
            )
    return BenchReport(scenario, tuple(runs))


def format_report(report: BenchReport) -> str:
    """The report as a table, the ratios and the scenario, in Markdown."""
    scenario = report.scenario
    lines = [
        "| variant | wall s (median; min-max) | waiting for data s | worker start-ups "
        "| peak PSS MiB | peak USS MiB | CPU s | other processes busy (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in report.variants:
        s = report.summary(variant.name)
        lines.append(
            f"| {variant.name} | {s.wall_s:.2f} ({s.wall_min_s:.2f}-{s.wall_max_s:.2f}) "
            f"| {s.wait_s:.2f} | {s.startups} | {s.peak_pss / MIB:.0f} | {s.peak_uss / MIB:.0f} "
            f"| {s.cpu_s:.1f} | {s.other_cores:.2f} |"
        )
    for limit in report.limits:
        seconds = limit.seconds(scenario)
        lines.append(
            f"| {limit.name} | {seconds:.2f} | | | | | {seconds * scenario.workers:.1f} | |"
        )
    lines.append("\nRatios of the medians (in brackets: lowest and highest of the rounds):\n")
    lines.extend(
        f"- {name}: {value:.2f} ({low:.2f}-{high:.2f})"
        for name, (value, low, high) in report.ratios().items()
    )
    lines.append(
        f"\n{len(report.rounds())} runs per variant. {scenario.samples_loaded} "
        f"samples loaded per run ({scenario.updates} updates of {scenario.batch_size}, "
        f"{scenario.evaluations} evaluations of {list(scenario.eval_sizes)} in batches of "
        f"{scenario.eval_batch_size}), {scenario.load_ms} ms {scenario.load} each, "
        f"{scenario.workers} workers ({scenario.start_method})."
    )
    held = max(run.cache_bytes for run in report.runs)
    if held:
        lines.append(
            f"With the cache, {scenario.samples_loaded_cached} samples loaded per run; the "
            f"cache held {held / MIB:.1f} MiB."
        )
    return "\n".join(lines)


def plot(report: BenchReport, path: Path) -> None:
    """Write a bar chart of wall time (with the limit) and peak memory to ``path`` (PNG).

    Args:
        report: the benchmark's results.
        path: where to write the chart.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    figure_class = require("matplotlib.figure", "the benchmark's chart").Figure
    names = [variant.name for variant in report.variants]
    colors = [variant.color for variant in report.variants]
    summaries = [report.summary(name) for name in names]
    figure = figure_class(figsize=(11, 4), layout="tight")
    wall, memory = figure.subplots(1, 2)
    walls = [s.wall_s for s in summaries]
    spread = [
        [s.wall_s - s.wall_min_s for s in summaries],
        [s.wall_max_s - s.wall_s for s in summaries],
    ]
    wall.bar(names, walls, yerr=spread, capsize=4, color=colors)
    wall.bar(
        names,
        [s.wait_s for s in summaries],
        color="none",
        hatch="//",
        edgecolor="black",
        label="waiting for data",
    )
    for limit, style in zip(report.limits, itertools.cycle(("--", ":", "-.")), strict=False):
        wall.axhline(
            limit.seconds(report.scenario), color="black", linestyle=style, label=limit.name
        )
    wall.set_ylabel("wall time (s)")
    wall.set_ylim(top=1.3 * max(s.wall_max_s for s in summaries))  # room for the legend
    wall.legend(loc="upper left")
    memory.bar(names, [s.peak_pss / MIB for s in summaries], color=colors)
    memory.set_ylabel("peak PSS of process tree (MiB)")
    figure.suptitle("training with periodic evaluation: one loader vs one per dataset")
    figure.savefig(path, dpi=100)


DESCRIPTION = """\
Time a training run with periodic evaluation on synthetic, worker-bound data, loaded four ways
in one process, alternating and repeated: through one interleaved DataLoader (one worker pool
for the whole run), the same with the evaluation cache (each evaluation sample loaded once,
later passes served from memory), through one DataLoader per dataset (a new pool for every
epoch and every evaluation pass) and through one DataLoader per dataset with persistent workers
(one pool per dataset); --variants runs some of them. It prints wall time, time spent waiting
for data, worker start-ups, peak memory (PSS of the process tree) and CPU time per variant, and
the ratios; it fails unless every variant consumed exactly the same samples. Loading a sample
costs --load-ms of CPU time in a worker (--load sleep: of waiting, like I/O); the model step is
a sleep of --step-ms per batch.

Needs psutil (and matplotlib for --plot): the extra 'bench'.
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``bench`` command.

    Args:
        subparsers: the ``add_subparsers()`` object of the main parser.
    """
    d = Scenario()
    parser = subparsers.add_parser(
        "bench",
        help="one interleaved DataLoader vs one DataLoader per dataset, end to end",
        description=DESCRIPTION,
        formatter_class=_HelpFormatter,
    )
    add = parser.add_argument
    add("--train-size", type=_positive(int), default=d.train_size, help="training samples")
    add("--eval-sizes", type=_positive(int), nargs="+", default=list(d.eval_sizes),
        help="samples of each evaluation dataset")  # fmt: skip
    add("--batch-size", type=_positive(int), default=d.batch_size, help="training batch size")
    add("--eval-batch-size", type=_positive(int), default=d.eval_batch_size, help="of passes")
    add("--updates", type=_positive(int), default=d.updates, help="training updates of the run")
    add("--eval-every", type=_positive(int), default=d.eval_every, help="updates between passes")
    add("--load-ms", type=_positive(float), default=d.load_ms, help="loading cost per sample")
    add("--load", choices=LOADS, default=d.load, help="CPU work or sleep (I/O-like)")
    add("--sample-kib", type=_positive(int), default=d.sample_kib, help="payload per sample")
    add("--step-ms", type=_non_negative(float), default=d.step_ms, help="simulated model step")
    add("--workers", type=_positive(int), default=d.workers, help="per DataLoader")
    add("--start-method", choices=START_METHODS, default=d.start_method, help="of the workers")
    add("--prefetch-factor", type=_positive(int), default=d.prefetch_factor, help="per worker")
    add("--seed", type=_non_negative(int), default=d.seed, help="of the training sampler")
    add("--repeats", type=_positive(int), default=2, help="rounds; each runs every variant")
    names = [v.name for v in VARIANTS]
    add("--variants", choices=names, nargs="+", metavar="VARIANT",
        help=f"run only these: {', '.join(map(shlex.quote, names))} (default: all)")  # fmt: skip
    add("--memory-interval", type=_positive(float), default=1.0, help="seconds between samples")
    add("--plot", type=Path, help="write a bar chart (PNG) here")
    add("--json", type=Path, help="write the scenario, every run and the ratios here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``bench`` command: run the comparison, print the table, optionally plot it."""
    scenario = Scenario(
        train_size=args.train_size,
        eval_sizes=tuple(args.eval_sizes),
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        updates=args.updates,
        eval_every=args.eval_every,
        load_ms=args.load_ms,
        load=args.load,
        sample_kib=args.sample_kib,
        step_ms=args.step_ms,
        workers=args.workers,
        start_method=args.start_method,
        prefetch_factor=args.prefetch_factor,
        seed=args.seed,
    )
    if scenario.train_size < scenario.batch_size:
        raise SystemExit(f"--train-size {scenario.train_size} < --batch-size {scenario.batch_size}")
    _psutil()  # fail in one line before the run, not after it
    if args.plot:
        require("matplotlib.figure", "--plot")
    report = run_benchmark(
        scenario,
        args.repeats,
        args.memory_interval,
        log=lambda line: print(line, flush=True),
        variants=args.variants,
    )
    print(format_report(report))
    if args.plot:
        plot(report, args.plot)
        print(f"chart written to {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=1))
        print(f"results written to {args.json}")
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and the default of every option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    return _at_least(kind, 0, strict=True)


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    return _at_least(kind, 0, strict=False)


def _at_least(kind: Callable[[str], Any], bound: float, strict: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < bound or (strict and value == bound):
            relation = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {relation} {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__ if hasattr(kind, "__name__") else "value"
    return parse
