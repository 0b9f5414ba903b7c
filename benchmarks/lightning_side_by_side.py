"""PyTorch Lightning side by side: your DataModule unwrapped and in InterleavedDataModule.

The same LightningModule (automatic optimization, ``validation_step``, a small MLP that draws
no random numbers) and the same LightningDataModule (the ``bench`` command's worker-bound
synthetic datasets: a map-style train set whose ``__getitem__`` burns ``--sample-ms`` of CPU,
two validation sets; ``SeededRandomSampler``; ``spawn`` workers), validated every
``--val-every`` updates (``Trainer(val_check_interval=N, check_val_every_n_epoch=None)``),
fitted three ways in alternating rounds:

- ``non-persistent``: the DataModule unwrapped: Lightning's loaders, a fresh pool of workers
  for every epoch, every validation pass and the sanity check;
- ``persistent``: unwrapped, ``persistent_workers=True`` on every loader: a pool per loader;
- ``wrapped``: ``InterleavedDataModule(datamodule)``: one pool for training and every
  validation (the loaders' arguments are the non-persistent ones; that pool lives for the run).

Measured per fit: wall time of ``trainer.fit``, peak PSS summed over the process tree, worker
processes started (``StartupCounter`` as every loader's ``worker_init_fn``), CPU time. Every
fit must see the same samples in the same order (training, validation, sanity check) and end
with bit-identical weights, or the script fails. The worker-bound limit is the loading work of
the fit divided by the workers; the pool start-up is measured apart (time to the first batch
of a loader over a dataset that costs nothing). "Go further": the persistent and the wrapped
fit again with a model whose ``configure_model`` sleeps ``--slow-setup-s`` (standing in for
moving weights to a GPU, compiling, loading a checkpoint): the wrapper starts its pool at
``setup("fit")``, before ``configure_model``, so the pool's start-up overlaps the set-up.

The main process steps the tiny model with one torch thread (``torch.set_num_threads(1)``, as
a DataLoader worker does): with torch's default, intra-op threads spin on the cores the workers
load on, which made every step about ten times dearer on the loaded 2-core machine.

Spawned workers re-import the main script before they start. This one imports Lightning
(several seconds of CPU) only in the parent, so its workers cost what a worker of a script
that imports Lightning lazily costs; a training script that imports Lightning at the top makes
every spawned worker that much dearer, which the unwrapped runs pay more often.

Usage: python benchmarks/lightning_side_by_side.py [--rounds 3] [--updates 256] [--val-every 32]
       [--workers 2] [--sample-ms 1] [--slow-setup-s 3] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.context import BaseContext
from operator import attrgetter
from typing import Any

import torch
from torch.utils.data import DataLoader

from interleaved_sampler import SeededRandomSampler
from interleaved_sampler.bench.measure import (
    MIB,
    CpuSnapshot,
    MemoryPeak,
    StartupCounter,
    require_psutil,
)
from interleaved_sampler.bench.scenario import Datasets, Scenario, SyntheticDataset

FEATURES = 16  # the MLP's inputs: the first floats of a sample's payload
SANITY_STEPS = 2  # Lightning's default num_sanity_val_steps


@dataclass(frozen=True)
class Setting:
    """The benchmarked fit and how it is measured.

    Args:
        rounds: rounds; each fits every variant once, in a rotated order.
        updates: ``Trainer(max_steps=...)``.
        val_every: ``Trainer(val_check_interval=...)``, in updates.
        workers: ``num_workers`` of every loader.
        sample_ms: CPU time a worker spends loading one sample.
        slow_setup_s: the slow model's set-up (``configure_model`` sleeps); 0: no such fits.
        train_size: samples of the train set.
        val_sizes: samples of each validation set.
        batch_size: training batch size (``drop_last=True``).
        val_batch_size: validation batch size.
        start_method: ``multiprocessing_context`` of every loader.
        memory_interval_s: seconds between samples of the process tree's memory.
    """

    rounds: int = 3
    updates: int = 256
    val_every: int = 32
    workers: int = 2
    sample_ms: float = 1.0
    slow_setup_s: float = 3.0
    train_size: int = 4096
    val_sizes: tuple[int, ...] = (256, 256)
    batch_size: int = 32
    val_batch_size: int = 64
    start_method: str = "spawn"
    memory_interval_s: float = 1.0

    @property
    def scenario(self) -> Scenario:
        """The bench scenario whose datasets the DataModule serves."""
        return Scenario(
            train_size=self.train_size,
            eval_sizes=self.val_sizes,
            load_ms=self.sample_ms,
            workers=self.workers,
            start_method=self.start_method,
        )

    @property
    def samples_loaded(self) -> int:
        """Samples a fit needs: its training batches, every validation pass, the sanity
        check's first batches of every validation set."""
        sanity = sum(min(size, SANITY_STEPS * self.val_batch_size) for size in self.val_sizes)
        passes = self.updates // self.val_every
        return self.updates * self.batch_size + passes * sum(self.val_sizes) + sanity

    @property
    def loading_s(self) -> float:
        """The loading work of a fit, in CPU seconds."""
        return self.samples_loaded * self.sample_ms / 1000

    @property
    def limit_s(self) -> float:
        """The worker-bound limit: the loading work of a fit divided by the workers."""
        return self.loading_s / max(self.workers, 1)


QUICK = Setting(
    rounds=1,
    updates=24,
    val_every=8,
    sample_ms=0.2,
    slow_setup_s=0.3,
    train_size=256,
    val_sizes=(64, 32),
    batch_size=16,
    val_batch_size=16,
    memory_interval_s=0.2,
)


@dataclass(frozen=True)
class Variant:
    """One way to fit: the DataModule unwrapped (``persistent`` workers or not) or wrapped,
    with the quick or the slow model set-up."""

    name: str
    wrapped: bool = False
    persistent: bool = False
    slow_setup: bool = False


VARIANTS = (
    Variant("non-persistent"),
    Variant("persistent", persistent=True),
    Variant("wrapped", wrapped=True),
)
SLOW_VARIANTS = (
    Variant("persistent, slow set-up", persistent=True, slow_setup=True),
    Variant("wrapped, slow set-up", wrapped=True, slow_setup=True),
)


@dataclass
class Seen:
    """What a fit's model saw: ``(phase, sample indices)`` per batch, in order."""

    batches: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    def add(self, phase: str, tags: torch.Tensor) -> None:
        """Record a batch whose items are tagged ``(source, index)``."""
        self.batches.append((phase, tuple(int(i) for i in tags[:, 1])))

    def count(self, phase: str) -> int:
        """Batches of ``phase`` (``"train"``, ``"val"``, ``"sanity"``)."""
        return sum(1 for each, _ in self.batches if each.startswith(phase))


# A spawned worker imports this script again as "__mp_main__" before it starts; it needs
# nothing of Lightning, so only the parent imports it (see the module docstring).
if __name__ != "__mp_main__":
    import pytorch_lightning as pl
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    from interleaved_sampler.integrations.lightning import InterleavedDataModule

    class BenchModel(pl.LightningModule):
        """A small MLP on the first floats of each payload, trained with SGD.

        Args:
            seen: records every batch it trains or validates on.
            setup_s: ``configure_model`` sleeps this long (a slow set-up).
        """

        def __init__(self, seen: Seen, setup_s: float = 0.0) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.model = torch.nn.Sequential(
                torch.nn.Linear(FEATURES, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
            )
            self.seen, self.setup_s = seen, setup_s

        def configure_model(self) -> None:
            time.sleep(self.setup_s)  # weights to a GPU, compiling, loading a checkpoint

        def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
            _tags, payload = batch
            x = payload[:, :FEATURES] / 1024
            return torch.nn.functional.mse_loss(self.model(x), torch.sin(3 * x[:, :1]))

        def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
            self.seen.add("train", batch[0])
            return self.loss(batch)

        def validation_step(
            self, batch: Sequence[torch.Tensor], batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            phase = "sanity" if self.trainer.sanity_checking else "val"
            self.seen.add(f"{phase}{dataloader_idx}", batch[0])
            self.log("val_loss", self.loss(batch))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    class BenchData(pl.LightningDataModule):
        """An ordinary DataModule over the bench's datasets.

        Args:
            setting: sizes, batch sizes, workers, loading cost.
            persistent: ``persistent_workers=True`` on every loader (with workers).
            counter: every loader's ``worker_init_fn`` (None without workers).
        """

        def __init__(
            self, setting: Setting, persistent: bool, counter: StartupCounter | None
        ) -> None:
            super().__init__()
            self.setting, self.persistent, self.counter = setting, persistent, counter

        def setup(self, stage: str) -> None:
            self.data = Datasets.of(self.setting.scenario)

        def loader_arguments(self) -> dict[str, Any]:
            if not self.setting.workers:
                return {}
            return {
                "num_workers": self.setting.workers,
                "multiprocessing_context": self.setting.start_method,
                "worker_init_fn": self.counter,
                "persistent_workers": self.persistent,
            }

        def train_dataloader(self) -> DataLoader[Any]:
            sampler = SeededRandomSampler(self.data.train, seed=0)
            return DataLoader(
                self.data.train,
                self.setting.batch_size,
                sampler=sampler,
                drop_last=True,
                **self.loader_arguments(),
            )

        def val_dataloader(self) -> list[DataLoader[Any]]:
            return [
                DataLoader(dataset, self.setting.val_batch_size, **self.loader_arguments())
                for dataset in self.data.evals
            ]

    class FirstBatchTimer(pl.Callback):
        """Keeps the time from ``start`` to the first training batch."""

        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.first_batch_s: float | None = None

        def on_train_batch_start(self, *args: Any) -> None:
            if self.first_batch_s is None:
                self.first_batch_s = time.perf_counter() - self.start


@dataclass(frozen=True)
class Run:
    """The measurements of one fit.

    Args:
        variant: the variant's name.
        wall_s: wall time of ``trainer.fit``.
        first_batch_s: from the start of ``fit`` to the first training batch.
        startups: worker processes started.
        peak_pss: peak summed PSS of the process tree, bytes.
        cpu_s: CPU time of the process tree (the workers included) during the fit.
        main_cpu_s: CPU time of the main process alone (Lightning, the model, the memory
            sampler's thread).
        other_cores: cores other processes of the machine kept busy on average.
        seen: the batches the model saw.
        weights: the final weights.
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


def quiet_lightning() -> None:
    """No Lightning banners, no advice to use more workers than the machine has cores."""
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message="Consider setting `persistent_workers=True`")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


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


def trainer(setting: Setting, callback: pl.Callback) -> pl.Trainer:
    """The Trainer of every fit."""
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=setting.updates,
        val_check_interval=setting.val_every,
        check_val_every_n_epoch=None,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def fit_once(variant: Variant, setting: Setting, context: BaseContext) -> Run:
    """Fit ``variant`` once, measured."""
    counter = StartupCounter(context) if setting.workers else None
    data = BenchData(setting, variant.persistent, counter)
    seen = Seen()
    model = BenchModel(seen, setting.slow_setup_s if variant.slow_setup else 0.0)
    timer = FirstBatchTimer()
    fitter = trainer(setting, timer)
    datamodule = InterleavedDataModule(data) if variant.wrapped else data
    before, main_start = children(), main_cpu_s()
    with MemoryPeak(setting.memory_interval_s) as memory:
        cpu = CpuSnapshot.now()
        timer.start = start = time.perf_counter()
        fitter.fit(model, datamodule=datamodule)
        wall_s = time.perf_counter() - start
        other_cores = CpuSnapshot.now().other_cores(cpu, wall_s)
    main_s = main_cpu_s() - main_start
    del fitter, datamodule, data
    wait_for_workers(before)  # reaped: their CPU time is the tree's now
    return Run(
        variant.name,
        wall_s,
        timer.first_batch_s or float("nan"),
        counter.count if counter else 0,
        memory.peak_pss,
        CpuSnapshot.now().tree_s - cpu.tree_s,
        main_s,
        other_cores,
        seen,
        {k: v.detach().clone() for k, v in model.state_dict().items()},
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
    """Two fits did not see the same samples, or ended with different weights."""


def check_same(runs: Sequence[Run]) -> None:
    """Every run saw the first run's batches and ended with its weights, bit for bit.

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


def run_rounds(
    setting: Setting, variants: Sequence[Variant], log: Callable[[str], None]
) -> Results:
    """Fit every variant ``setting.rounds`` times, rotating the order each round, and measure
    a pool's start-up once per round.

    Raises:
        SampleMismatchError: as soon as a fit saw other samples than the first.
    """
    context = multiprocessing.get_context(setting.start_method)
    results = Results(setting, {variant.name: [] for variant in variants})
    width = max(len(variant.name) for variant in variants)
    for round_ in range(setting.rounds):
        shift = round_ % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            run = fit_once(variant, setting, context)
            results.runs[variant.name].append(run)
            check_same([next(iter(results.runs.values()))[0], run])
            log(
                f"round {round_ + 1}/{setting.rounds}  {variant.name:<{width}}  "
                f"wall {run.wall_s:6.2f} s  first batch {run.first_batch_s:5.2f} s  "
                f"{run.startups:3d} worker start-ups  peak PSS {run.peak_pss / MIB:5.0f} MiB  "
                f"others busy {run.other_cores:4.2f} cores"
            )
        results.startups.append(pool_startup(setting, context))
    return results


def spread(values: Sequence[float]) -> str:
    """``min-max`` of ``values``."""
    return f"{min(values):.2f}-{max(values):.2f}"


def table(results: Results) -> list[str]:
    """The Markdown table: one row per variant, then the limit and the pool start-up."""
    lines = [
        "| variant | wall s (median; min-max) | first train batch s | worker start-ups "
        "| peak PSS MiB | CPU s (tree) | main process CPU s | others busy, cores (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.runs.items():
        walls = [run.wall_s for run in runs]
        lines.append(
            f"| {name} | {results.wall(name):.2f} ({spread(walls)}) "
            f"| {results.median(name, attrgetter('first_batch_s')):.2f} "
            f"| {max(run.startups for run in runs)} "
            f"| {results.median(name, attrgetter('peak_pss')) / MIB:.0f} "
            f"| {results.median(name, attrgetter('cpu_s')):.1f} "
            f"| {results.median(name, attrgetter('main_cpu_s')):.1f} "
            f"| {results.median(name, attrgetter('other_cores')):.2f} "
            f"({max(run.other_cores for run in runs):.2f}) |"
        )
    setting = results.setting
    lines.append(
        f"| worker-bound limit | {setting.limit_s:.2f} | | | "
        f"| {setting.loading_s:.1f} (loading) | | |"
    )
    lines.append(
        f"| pool start-up (time to first batch, apart) | {results.startup_s:.2f} | | | "
        f"| {results.startup_cpu_s:.1f} | | |"
    )
    return lines


def ratio_line(results: Results, label: str, top: str, bottom: str, measure: str) -> str:
    """``label``: the ratio of the medians of the :class:`Run` field ``measure`` of ``top``
    and ``bottom``, and its spread over the rounds."""
    get = attrgetter(measure)
    overall = results.median(top, get) / results.median(bottom, get)
    return f"- {label}: **{overall:.2f}x** (rounds: {spread(results.ratios(top, bottom, get))})"


def summary(results: Results) -> list[str]:
    """The ratios of the main fits and what separates the wrapped fit from the limit."""
    setting = results.setting
    wall, cpu = results.wall("wrapped"), results.median("wrapped", attrgetter("cpu_s"))
    main, loading = results.median("wrapped", attrgetter("main_cpu_s")), setting.loading_s
    others = results.median("wrapped", attrgetter("other_cores"))
    cores = require_psutil().cpu_count()
    return [
        ratio_line(
            results, "non-persistent / wrapped, wall time", "non-persistent", "wrapped", "wall_s"
        ),
        ratio_line(results, "persistent / wrapped, wall time", "persistent", "wrapped", "wall_s"),
        ratio_line(
            results, "wrapped / persistent, peak memory", "wrapped", "persistent", "peak_pss"
        ),
        ratio_line(
            results, "non-persistent / wrapped, CPU time", "non-persistent", "wrapped", "cpu_s"
        ),
        ratio_line(results, "persistent / wrapped, CPU time", "persistent", "wrapped", "cpu_s"),
        f"- wrapped - worker-bound limit: **{wall - setting.limit_s:.2f} s** "
        f"({wall / setting.limit_s:.2f}x the limit). Before the first training batch: "
        f"{results.median('wrapped', attrgetter('first_batch_s')):.2f} s (Lightning's set-up, "
        f"the pool's start-up: {results.startup_s:.2f} s measured apart, the sanity check's "
        f"{SANITY_STEPS * len(setting.val_sizes)} batches loaded in the main process)",
        f"- CPU beyond the loading work ({loading:.1f} s): {cpu - loading:.1f} s, "
        f"{main:.1f} s of it the main process (Lightning, the model, the memory sampler), "
        f"{cpu - loading - main:.1f} s the workers' (their pool's start-up and shutdown: "
        f"{results.startup_cpu_s:.1f} s measured apart; the rest handing batches over): "
        f"{(cpu - loading) / cores:.2f} s on {cores} cores; other processes kept "
        f"{others:.2f} cores busy (median)",
    ]


def slow_summary(results: Results) -> list[str]:
    """Wrapped against persistent with the slow set-up, and what the overlap saved."""
    setup_s = results.setting.slow_setup_s
    plain_added = results.wall("persistent, slow set-up") - results.wall("persistent")
    wrapped_added = results.wall("wrapped, slow set-up") - results.wall("wrapped")
    expected = min(setup_s, results.startup_s)
    return [
        ratio_line(
            results,
            f"persistent / wrapped, wall time, {setup_s:g} s set-up",
            "persistent, slow set-up",
            "wrapped, slow set-up",
            "wall_s",
        ),
        f"- the {setup_s:g} s set-up added {plain_added:.2f} s to the persistent fit and "
        f"{wrapped_added:.2f} s to the wrapped one: the overlap saved "
        f"**{plain_added - wrapped_added:.2f} s** (min(set-up, pool start-up) = {expected:.2f} s)",
    ]


def describe(setting: Setting) -> str:
    """The scenario in one paragraph."""
    passes = setting.updates // setting.val_every
    return (
        f"{setting.updates} updates of {setting.batch_size} over {setting.train_size} training "
        f"samples ({setting.updates * setting.batch_size / setting.train_size:g} epochs), "
        f"validation every {setting.val_every} updates ({passes} passes over "
        f"{len(setting.val_sizes)} sets of {', '.join(map(str, setting.val_sizes))}, "
        f"batch {setting.val_batch_size}) and "
        f"Lightning's sanity check; {setting.sample_ms:g} ms of CPU per sample, "
        f"{setting.samples_loaded} samples loaded; {setting.workers} workers per loader "
        f"({setting.start_method}); median of {setting.rounds} rounds"
    )


@dataclass(frozen=True)
class Report:
    """What :func:`main` measured and printed."""

    results: Results
    lines: list[str]


OPTIONS = {
    "rounds": "rounds, each fitting every variant once",
    "updates": "Trainer(max_steps=...)",
    "val_every": "Trainer(val_check_interval=...), in updates",
    "workers": "num_workers of every loader",
    "sample_ms": "CPU milliseconds a worker spends on one sample",
    "slow_setup_s": "seconds the slow model's configure_model sleeps (0: no such fits)",
}


def parse(argv: Sequence[str] | None) -> Setting:
    """The setting of the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny fits, one round: a smoke test")
    defaults = Setting()
    for name, text in OPTIONS.items():
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(default),
            help=f"{text} (default {default}; with --quick {getattr(QUICK, name)})",
        )
    args = parser.parse_args(argv)
    chosen = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    return replace(QUICK if args.quick else defaults, **chosen)


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> Report:
    """Run the benchmark, print the table and the ratios, and return them.

    Raises:
        SampleMismatchError: two fits did not see the same samples or weights differ.
    """
    setting = parse(argv)
    quiet_lightning()
    variants = VARIANTS + (SLOW_VARIANTS if setting.slow_setup_s > 0 else ())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's steps: no intra-op threads spinning
    try:  # on the cores the workers load on (a GPU model would leave them alone too)
        results = run_rounds(setting, variants, log)
    finally:
        torch.set_num_threads(threads)
    first = next(iter(results.runs.values()))[0]
    lines = [
        describe(setting),
        "",
        *table(results),
        "",
        f"same samples in every fit: yes ({first.seen.count('train')} training batches, "
        f"{first.seen.count('val')} validation batches, {first.seen.count('sanity')} sanity-check "
        "batches; final weights bit-identical)",
        *summary(results),
    ]
    if setting.slow_setup_s > 0:
        lines += [f"with a model set-up of {setting.slow_setup_s:g} s:", *slow_summary(results)]
    for line in lines:
        log(line)
    return Report(results, lines)


if __name__ == "__main__":
    main()
