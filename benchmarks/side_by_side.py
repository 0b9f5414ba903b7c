"""What the framework side-by-side benchmarks share (``lightning_side_by_side.py``,
``hf_trainer_side_by_side.py``): the data, the measurement of one fit, the rounds, the report.

- The data: the ``bench`` command's worker-bound synthetic datasets (a sample's
  ``__getitem__`` burns ``sample_ms`` of CPU; :class:`Setting`), as ``(tags, payload)``
  tuples or as dicts ``{"x", "labels"}`` (:class:`DictSamples`), and the small MLP the
  frameworks train on them (:func:`mlp`, :func:`features`, :func:`target`).
- One fit (:class:`FitMeter`): wall time, peak PSS summed over the process tree, CPU time of
  the tree and of the main process, the cores other processes kept busy, worker processes
  started (a :class:`~interleaved_sampler.bench.measure.StartupCounter` as every loader's
  ``worker_init_fn``, chained with a framework's own by :class:`CountingInit`), the batches
  the model saw (:class:`Seen`) and its final weights.
- The runner (:func:`run_rounds`): every variant once per round, the order rotated each
  round, a pool's start-up measured apart once per round (:func:`pool_startup`), every fit
  checked against the first (:func:`check_same`).
- The report: the Markdown table (medians and ranges), the ratios of the medians with their
  spread over the rounds, and what separates the library's fit from the worker-bound limit
  (the loading work of a fit divided by the workers); the command line (:func:`parse`).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import multiprocessing.forkserver
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing.context import BaseContext
from operator import attrgetter
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from interleaved_sampler.bench.measure import (
    MIB,
    CpuSnapshot,
    MemoryPeak,
    StartupCounter,
    require_psutil,
)
from interleaved_sampler.bench.scenario import Scenario, SyntheticDataset

FEATURES = 16  # the MLP's inputs: the first floats of a sample's payload


@dataclass(frozen=True)
class Setting:
    """The benchmarked fit and how it is measured.

    Args:
        rounds: rounds; each fits every variant once, in a rotated order.
        updates: optimizer steps of a fit.
        eval_every: an evaluation of every eval set every this many updates.
        workers: ``num_workers`` of every loader.
        sample_ms: CPU time a worker spends loading one sample.
        train_size: samples of the train set.
        eval_sizes: samples of each eval set.
        batch_size: training batch size.
        eval_batch_size: evaluation batch size.
        start_method: ``multiprocessing_context`` of every loader.
        memory_interval_s: seconds between samples of the process tree's memory.
    """

    rounds: int = 3
    updates: int = 256
    eval_every: int = 32
    workers: int = 2
    sample_ms: float = 1.0
    train_size: int = 4096
    eval_sizes: tuple[int, ...] = (256, 256)
    batch_size: int = 32
    eval_batch_size: int = 64
    start_method: str = "spawn"
    memory_interval_s: float = 1.0

    @property
    def scenario(self) -> Scenario:
        """The bench scenario whose datasets the fits load."""
        return Scenario(
            train_size=self.train_size,
            eval_sizes=self.eval_sizes,
            load_ms=self.sample_ms,
            workers=self.workers,
            start_method=self.start_method,
        )

    @property
    def passes(self) -> int:
        """Evaluations of a fit (each a pass over every eval set)."""
        return self.updates // self.eval_every

    @property
    def samples_loaded(self) -> int:
        """Samples a fit needs: its training batches and every evaluation pass."""
        return self.updates * self.batch_size + self.passes * sum(self.eval_sizes)

    @property
    def loading_s(self) -> float:
        """The loading work of a fit, in CPU seconds."""
        return self.samples_loaded * self.sample_ms / 1000

    @property
    def limit_s(self) -> float:
        """The worker-bound limit: the loading work of a fit divided by the workers."""
        return self.loading_s / max(self.workers, 1)


# the sizes of --quick: tiny fits, one round
QUICK_SIZES: dict[str, Any] = {
    "rounds": 1,
    "updates": 24,
    "eval_every": 8,
    "sample_ms": 0.2,
    "train_size": 256,
    "eval_sizes": (64, 32),
    "batch_size": 16,
    "eval_batch_size": 16,
    "memory_interval_s": 0.2,
}

SettingT = TypeVar("SettingT", bound=Setting)


# --- the data and the model -------------------------------------------------------------


def mlp() -> torch.nn.Module:
    """The benchmarked model: a 16-32-1 MLP, the same initial weights every time."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
    )


def features(payload: torch.Tensor) -> torch.Tensor:
    """The MLP's inputs: the first floats of each payload (every float of sample ``i`` is
    ``i``), scaled."""
    return payload[..., :FEATURES] / 1024


def target(inputs: torch.Tensor) -> torch.Tensor:
    """What the MLP learns to predict from its inputs."""
    return torch.sin(3 * inputs[..., :1])


class DictSamples(Dataset[dict[str, torch.Tensor]]):
    """A :class:`SyntheticDataset`'s samples as dicts: ``{"x": payload, "labels": target}``;
    loading one costs what loading the synthetic sample costs.

    Args:
        samples: the synthetic dataset.
    """

    def __init__(self, samples: SyntheticDataset) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _tags, payload = self.samples[index]
        return {"x": payload, "labels": target(features(payload))}


class EndlessStream(IterableDataset[Any]):
    """The items of ``samples`` as an endless stream, as torchtitan's infinite training
    datasets: worker ``w`` of ``W`` yields the items ``w, w + W, ...``; producing one costs
    what loading it costs.

    Args:
        samples: indexable at every index (a :class:`SyntheticDataset` of any size, or
            :class:`DictSamples` over one).
    """

    def __init__(self, samples: Dataset[Any]) -> None:
        self.samples = samples

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        index, step = (info.id, info.num_workers) if info is not None else (0, 1)
        while True:
            yield self.samples[index]  # burns the sample's CPU time
            index += step


class CountingInit:
    """A ``worker_init_fn`` that counts the start-up, then calls the framework's own.

    Args:
        counter: counts worker start-ups.
        then: the loader's ``worker_init_fn`` (None: none).
    """

    def __init__(self, counter: StartupCounter, then: Callable[[int], None] | None) -> None:
        self.counter, self.then = counter, then

    def __call__(self, worker_id: int) -> None:
        self.counter(worker_id)
        if self.then is not None:
            self.then(worker_id)


# --- one fit ----------------------------------------------------------------------------


@dataclass
class Seen:
    """What a fit's model saw: ``(phase, sample indices)`` per batch, in order, and when it
    saw its first training batch."""

    batches: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    first_train_at: float | None = None

    def add(self, phase: str, indices: torch.Tensor) -> None:
        """Record a batch of the samples ``indices`` (phase ``"train"``: a training batch)."""
        if phase == "train" and self.first_train_at is None:
            self.first_train_at = time.perf_counter()
        self.batches.append((phase, tuple(int(i) for i in indices)))

    def count(self, phase: str) -> int:
        """Batches of phases starting with ``phase`` (``"train"``, ``"val"``, ...)."""
        return sum(1 for each, _ in self.batches if each.startswith(phase))


@dataclass(frozen=True)
class Run:
    """The measurements of one fit.

    Args:
        variant: the variant's name.
        wall_s: wall time of the fit.
        first_batch_s: from the start of the fit to the first training batch.
        startups: worker processes started.
        peak_pss: peak summed PSS of the process tree, bytes.
        cpu_s: CPU time of the process tree (the workers included) during the fit.
        main_cpu_s: CPU time of the main process alone (the framework, the model, the
            memory sampler's thread).
        other_cores: cores other processes of the machine kept busy on average.
        seen: the batches the model saw.
        weights: the final weights.
        metrics: what the framework reported that every fit must report alike (e.g. the
            eval losses), in order.
    """

    variant: str
    wall_s: float
    first_batch_s: float
    startups: int
    peak_pss: int
    cpu_s: float
    main_cpu_s: float
    other_cores: float
    seen: Seen
    weights: dict[str, torch.Tensor]
    metrics: tuple[tuple[str, float], ...] = ()


def main_cpu_s() -> float:
    """CPU seconds of this process so far (all its threads, no children)."""
    times = require_psutil().Process().cpu_times()
    return float(times.user + times.system)


def children() -> set[int]:
    """Process ids of this process's descendants."""
    return {child.pid for child in require_psutil().Process().children(recursive=True)}


def wait_for_workers(before: set[int], timeout_s: float = 30.0) -> None:
    """Wait until the descendants started since ``before`` (the run's workers) are gone, so
    that the next run's memory and CPU are its own."""
    deadline = time.monotonic() + timeout_s
    while children() - before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker processes outlived the fit: {children() - before}")
        gc.collect()
        time.sleep(0.05)


def live_workers_cpu_s(before: set[int]) -> float:
    """CPU seconds of the descendants started since ``before`` that still run (workers the
    framework keeps after its fit, whose time the tree's counts only once they exit)."""
    psutil = require_psutil()
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue  # exited since children() listed it
        total += times.user + times.system
    return total


class FitMeter:
    """Measures one fit: ``with meter: fit()``; then, once the framework's objects (its
    loaders, their workers) are released, :meth:`run` waits for the workers to exit and
    returns the measurements.

    Args:
        setting: the workers and the memory sampling interval.
        context: the workers' multiprocessing context.

    Attributes:
        counter: the ``worker_init_fn`` to give every loader (None without workers).
        seen: the recorder to give the model.
    """

    def __init__(self, setting: Setting, context: BaseContext) -> None:
        self.counter = StartupCounter(context) if setting.workers else None
        self.seen = Seen()
        self.memory = MemoryPeak(setting.memory_interval_s)
        self.before: set[int] = set()
        self.start = self.wall_s = self.main_s = self.other_cores = 0.0
        self.cpu = CpuSnapshot(0.0, 0.0)

    def __enter__(self) -> FitMeter:
        self.before, main_start = children(), main_cpu_s()
        self.main_s = -main_start
        self.memory.__enter__()
        self.cpu = CpuSnapshot.now()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_s = time.perf_counter() - self.start
        live = live_workers_cpu_s(self.before)
        self.other_cores = max(
            CpuSnapshot.now().other_cores(self.cpu, self.wall_s) - live / self.wall_s, 0.0
        )
        self.memory.__exit__(*exc_info)
        self.main_s += main_cpu_s()

    def run(
        self,
        variant: str,
        weights: Mapping[str, torch.Tensor],
        metrics: tuple[tuple[str, float], ...] = (),
    ) -> Run:
        """The measured fit of ``variant``, which ended with ``weights`` and reported
        ``metrics``, once its workers have exited (their CPU time is the tree's then)."""
        wait_for_workers(self.before)
        first = self.seen.first_train_at
        return Run(
            variant,
            self.wall_s,
            first - self.start if first is not None else float("nan"),
            self.counter.count if self.counter else 0,
            self.memory.peak_pss,
            CpuSnapshot.now().tree_s - self.cpu.tree_s,
            self.main_s,
            self.other_cores,
            self.seen,
            {k: v.detach().clone() for k, v in weights.items()},
            metrics,
        )


def pool_startup(setting: Setting, context: BaseContext) -> tuple[float, float]:
    """Time to the first batch of a loader with the fits' workers over a dataset that costs
    nothing to load (the start-up of one pool), and the CPU time of that pool's whole life."""
    if not setting.workers:
        return 0.0, 0.0
    free = SyntheticDataset(0, 2 * setting.workers, replace(setting.scenario, load_ms=0.0))
    before, cpu = children(), CpuSnapshot.now()
    start = time.perf_counter()
    loader = DataLoader(free, num_workers=setting.workers, multiprocessing_context=context)
    iterator = iter(loader)
    next(iterator)
    elapsed = time.perf_counter() - start  # before the shutdown, which del starts
    del iterator
    wait_for_workers(before)
    return elapsed, CpuSnapshot.now().tree_s - cpu.tree_s


class SampleMismatchError(AssertionError):
    """Two fits did not see the same samples, ended with different weights or reported other
    metrics."""


def check_same(runs: Sequence[Run]) -> None:
    """Every run saw the first run's batches, ended with its weights, bit for bit, and
    reported its metrics.

    Raises:
        SampleMismatchError: naming the first run that differs.
    """
    reference = runs[0]
    for run in runs[1:]:
        if run.seen.batches != reference.seen.batches:
            raise SampleMismatchError(f"{run.variant} saw other samples than {reference.variant}")
        for name, tensor in reference.weights.items():
            if not torch.equal(run.weights[name], tensor):
                raise SampleMismatchError(
                    f"{run.variant} ended with other weights than {reference.variant} ({name})"
                )
        if run.metrics != reference.metrics:
            raise SampleMismatchError(
                f"{run.variant} reported other metrics than {reference.variant}: "
                f"{run.metrics} != {reference.metrics}"
            )


# --- the rounds -------------------------------------------------------------------------


@dataclass
class Results:
    """Every fit of every round, and the pool start-ups measured apart."""

    setting: Setting
    runs: dict[str, list[Run]] = field(default_factory=dict)
    startups: list[tuple[float, float]] = field(default_factory=list)

    def wall(self, name: str) -> float:
        """The median wall time of variant ``name``."""
        return statistics.median(run.wall_s for run in self.runs[name])

    def median(self, name: str, measure: Callable[[Run], float]) -> float:
        """The median of ``measure`` over the runs of variant ``name``."""
        return statistics.median(measure(run) for run in self.runs[name])

    def ratios(self, top: str, bottom: str, measure: Callable[[Run], float]) -> list[float]:
        """``measure`` of ``top`` over that of ``bottom``, round by round."""
        pairs = zip(self.runs[top], self.runs[bottom], strict=True)
        return [measure(a) / measure(b) for a, b in pairs]

    @property
    def startup_s(self) -> float:
        """The median time to the first batch of a pool measured apart."""
        return statistics.median(wall for wall, _ in self.startups) if self.startups else 0.0

    @property
    def startup_cpu_s(self) -> float:
        """The median CPU time of a pool measured apart (start-up, one batch, shutdown)."""
        return statistics.median(cpu for _, cpu in self.startups) if self.startups else 0.0


@dataclass(frozen=True)
class Variant:
    """One way to fit: the framework's own loaders (``persistent`` workers or not) or the
    library's, one pool for the whole fit (``one_pool``)."""

    name: str
    one_pool: bool = False
    persistent: bool = False


VariantT = TypeVar("VariantT", bound=Variant)


def main_variants(kind: type[VariantT], ours: str) -> tuple[VariantT, ...]:
    """``non-persistent``, ``persistent`` and the library's variant ``ours``."""
    return (kind("non-persistent"), kind("persistent", persistent=True), kind(ours, one_pool=True))


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread in the main process: the tiny model's steps need no intra-op
    threads, and torch's default ones would spin on the cores the workers load on (a GPU
    model would leave them alone too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_rounds(
    setting: SettingT,
    variants: Sequence[VariantT],
    fit: Callable[[VariantT, SettingT, BaseContext], Run],
    log: Callable[[str], None],
    reference: Callable[[VariantT], str] | None = None,
) -> Results:
    """Fit every variant ``setting.rounds`` times with ``fit`` (one torch thread in the main
    process), rotating the order each round, and measure a pool's start-up once per round.
    ``reference``: the variant whose first fit a variant's fits must equal (default: the
    first variant).

    Raises:
        SampleMismatchError: as soon as a fit saw other samples than its reference.
    """
    context = multiprocessing.get_context(setting.start_method)
    if setting.start_method == "forkserver":  # its server outlives every fit: start it first
        multiprocessing.forkserver.ensure_running()
    results = Results(setting, {variant.name: [] for variant in variants})
    width = max(len(variant.name) for variant in variants)
    for round_ in range(setting.rounds):
        shift = round_ % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            with one_torch_thread():
                run = fit(variant, setting, context)
            results.runs[variant.name].append(run)
            if reference is None:
                check_same([next(iter(results.runs.values()))[0], run])
            else:
                check_same([(results.runs[reference(variant)] or [run])[0], run])
            log(
                f"round {round_ + 1}/{setting.rounds}  {variant.name:<{width}}  "
                f"wall {run.wall_s:6.2f} s  first batch {run.first_batch_s:5.2f} s  "
                f"{run.startups:3d} worker start-ups  peak PSS {run.peak_pss / MIB:5.0f} MiB  "
                f"others busy {run.other_cores:4.2f} cores"
            )
        with one_torch_thread():
            results.startups.append(pool_startup(setting, context))
    return results


# --- the report -------------------------------------------------------------------------


def spread(values: Sequence[float]) -> str:
    """``min-max`` of ``values``."""
    return f"{min(values):.2f}-{max(values):.2f}"


Column = tuple[str, Callable[[Results, str], str]]
"""A column a benchmark adds to :func:`table`: its header and its cell for a variant."""


def table(results: Results, extra: Sequence[Column] = ()) -> list[str]:
    """The Markdown table: one row per variant, then the limit and the pool start-up;
    ``extra`` columns go on the right (empty in the last two rows)."""
    headers = "".join(f" {header} |" for header, _ in extra)
    lines = [
        "| variant | wall s (median; min-max) | first train batch s | worker start-ups "
        f"| peak PSS MiB | CPU s (tree) | main process CPU s | others busy, cores (max) |{headers}",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(extra),
    ]
    for name, runs in results.runs.items():
        walls = [run.wall_s for run in runs]
        cells = "".join(f" {cell(results, name)} |" for _, cell in extra)
        lines.append(
            f"| {name} | {results.wall(name):.2f} ({spread(walls)}) "
            f"| {results.median(name, attrgetter('first_batch_s')):.2f} "
            f"| {max(run.startups for run in runs)} "
            f"| {results.median(name, attrgetter('peak_pss')) / MIB:.0f} "
            f"| {results.median(name, attrgetter('cpu_s')):.1f} "
            f"| {results.median(name, attrgetter('main_cpu_s')):.1f} "
            f"| {results.median(name, attrgetter('other_cores')):.2f} "
            f"({max(run.other_cores for run in runs):.2f}) |{cells}"
        )
    setting, blank = results.setting, " |" * len(extra)
    lines.append(
        f"| worker-bound limit | {setting.limit_s:.2f} | | | "
        f"| {setting.loading_s:.1f} (loading) | | |{blank}"
    )
    lines.append(
        f"| pool start-up (time to first batch, apart) | {results.startup_s:.2f} | | | "
        f"| {results.startup_cpu_s:.1f} | | |{blank}"
    )
    return lines


def ratio_line(results: Results, label: str, top: str, bottom: str, measure: str) -> str:
    """``label``: the ratio of the medians of the :class:`Run` field ``measure`` of ``top``
    and ``bottom``, and its spread over the rounds."""
    get = attrgetter(measure)
    overall = results.median(top, get) / results.median(bottom, get)
    return f"- {label}: **{overall:.2f}x** (rounds: {spread(results.ratios(top, bottom, get))})"


def summary(results: Results, ours: str, framework: str, before_first: str = "") -> list[str]:
    """The ratios of the non-persistent and persistent fits to the library's fit ``ours``,
    and what separates ``ours`` from the worker-bound limit.

    Args:
        results: the fits; their variants include ``"non-persistent"``, ``"persistent"``
            and ``ours``.
        ours: the library's variant.
        framework: the framework's name, for what its main process does.
        before_first: what else comes before the first training batch, after the pool's
            start-up (``", ..."``).
    """
    setting = results.setting
    wall, cpu = results.wall(ours), results.median(ours, attrgetter("cpu_s"))
    main, loading = results.median(ours, attrgetter("main_cpu_s")), setting.loading_s
    others = results.median(ours, attrgetter("other_cores"))
    cores = require_psutil().cpu_count()
    pairs = [
        ("non-persistent", ours, "wall time", "wall_s"),
        ("persistent", ours, "wall time", "wall_s"),
        (ours, "persistent", "peak memory", "peak_pss"),
        ("non-persistent", ours, "CPU time", "cpu_s"),
        ("persistent", ours, "CPU time", "cpu_s"),
    ]
    return [
        *(ratio_line(results, f"{a} / {b}, {what}", a, b, m) for a, b, what, m in pairs),
        f"- {ours} - worker-bound limit: **{wall - setting.limit_s:.2f} s** "
        f"({wall / setting.limit_s:.2f}x the limit). Before the first training batch: "
        f"{results.median(ours, attrgetter('first_batch_s')):.2f} s ({framework}'s set-up, "
        f"the pool's start-up: {results.startup_s:.2f} s measured apart{before_first})",
        f"- CPU beyond the loading work ({loading:.1f} s): {cpu - loading:.1f} s, "
        f"{main:.1f} s of it the main process ({framework}, the model, the memory sampler), "
        f"{cpu - loading - main:.1f} s the workers' (their pool's start-up and shutdown: "
        f"{results.startup_cpu_s:.1f} s measured apart; the rest handing batches over): "
        f"{(cpu - loading) / cores:.2f} s on {cores} cores; other processes kept "
        f"{others:.2f} cores busy (median)",
    ]


def describe(
    setting: Setting, step: str, evaluation: str, extra: str = "", source: str | None = None
) -> str:
    """The scenario in one paragraph.

    Args:
        setting: the fit.
        step: what the framework calls an update (``"updates"``, ``"steps"``).
        evaluation: what it calls an evaluation (``"validation"``, ``"evaluation"``).
        extra: what else it loads (``" and ..."``).
        source: where the training batches come from (default: the training samples and
            the epochs they make).
    """
    if source is None:
        epochs = setting.updates * setting.batch_size / setting.train_size
        source = f"over {setting.train_size} training samples ({epochs:g} epochs)"
    return (
        f"{setting.updates} {step} of {setting.batch_size} {source}, "
        f"{evaluation} every {setting.eval_every} {step} ({setting.passes} passes over "
        f"{len(setting.eval_sizes)} sets of {', '.join(map(str, setting.eval_sizes))}, "
        f"batch {setting.eval_batch_size}){extra}; {setting.sample_ms:g} ms of CPU per sample, "
        f"{setting.samples_loaded} samples loaded; {setting.workers} workers per loader "
        f"({setting.start_method}); median of {setting.rounds} rounds"
    )


def same_samples(results: Results, phases: Sequence[tuple[str, str]], also: str = "") -> str:
    """The line saying that every fit saw the same batches: their count per phase.

    Args:
        results: the fits (:func:`run_rounds` has checked them).
        phases: ``(phase, what it is called)`` of every phase the model records.
        also: what else was the same (``", ..."``).
    """
    first = next(iter(results.runs.values()))[0]
    counts = ", ".join(f"{first.seen.count(phase)} {label} batches" for phase, label in phases)
    return f"same samples in every fit: yes ({counts}; final weights bit-identical{also})"


@dataclass(frozen=True)
class Report:
    """What a benchmark's ``main`` measured and printed."""

    results: Results
    lines: list[str]


def report(
    results: Results,
    head: str,
    same: str,
    tail: Sequence[str],
    log: Callable[[str], None],
    extra: Sequence[Column] = (),
) -> Report:
    """Print ``head`` (the scenario), the table (with the ``extra`` columns), ``same`` (the
    samples check) and ``tail`` (the ratios), and return them."""
    lines = [head, "", *table(results, extra), "", same, *tail]
    for line in lines:
        log(line)
    return Report(results, lines)


# --- the command line -------------------------------------------------------------------


def options(updates: str, every: tuple[str, str], workers: str) -> dict[str, tuple[str, str]]:
    """The options both scripts have, ``flag: (field, help)`` for :func:`parse`; ``updates``,
    ``every`` (the flag and the help of ``eval_every``) and ``workers`` in the framework's
    words."""
    return {
        "rounds": ("rounds", "rounds, each fitting every variant once"),
        "updates": ("updates", updates),
        every[0]: ("eval_every", every[1]),
        "workers": ("workers", workers),
        "sample-ms": ("sample_ms", "CPU milliseconds a worker spends on one sample"),
    }


QUICK_FLAG = ("quick", "tiny fits, one round: a smoke test")


def parse(
    argv: Sequence[str] | None,
    description: str,
    defaults: SettingT,
    quick: SettingT,
    options: Mapping[str, tuple[str, str]],
    quick_flag: tuple[str, str] = QUICK_FLAG,
) -> SettingT:
    """The setting of the command line: ``--quick`` (``quick`` instead of ``defaults``; its
    name and help: ``quick_flag``) and one option per ``flag: (field of the setting, help)``
    in ``options`` (``--flag``/``--no-flag`` for a field that is a bool)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{quick_flag[0]}", action="store_true", help=quick_flag[1])
    for flag, (name, text) in options.items():
        default = getattr(defaults, name)
        shown = f"{text} (default {default}; with --{quick_flag[0]} {getattr(quick, name)})"
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction
            parser.add_argument(f"--{flag}", dest=name, action=action, default=None, help=shown)
            continue
        parser.add_argument(
            f"--{flag}",
            dest=name,
            metavar=flag.upper().replace("-", "_"),
            type=type(default),
            help=shown,
        )
    args = parser.parse_args(argv)
    names = [name for name, _ in options.values()]
    chosen = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return replace(quick if getattr(args, quick_flag[0]) else defaults, **chosen)
