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
What this script shares with the Hugging Face one (the data, the measurement, the rounds, the
report) is in ``side_by_side.py``.

The main process steps the tiny model with one torch thread (``torch.set_num_threads(1)``, as
a DataLoader worker does): with torch's default, intra-op threads spin on the cores the workers
load on, which made every step about ten times dearer on the loaded 2-core machine.

Spawned workers re-import the main script before they start. This one imports Lightning
(several seconds of CPU) only in the parent, so its workers cost what a worker of a script
that imports Lightning lazily costs; a training script that imports Lightning at the top makes
every spawned worker that much dearer, which the unwrapped runs pay more often.

``--shuffle 1`` fits a train loader with ``shuffle=True`` (torch's ``RandomSampler``) instead:
the wrapper then takes each epoch's order where Lightning's loader takes it, so its one pool
pauses before every epoch's first batches until the train loader's ``iter()``; the figures
show that cost.

Usage: python benchmarks/lightning_side_by_side.py [--rounds 3] [--updates 256] [--val-every 32]
       [--workers 2] [--sample-ms 1] [--slow-setup-s 3] [--shuffle 0] [--quick]
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

import torch
from side_by_side import (
    QUICK_SIZES,
    FitMeter,
    Report,
    Results,
    Run,
    Seen,
    describe,
    features,
    main_variants,
    mlp,
    options,
    parse,
    ratio_line,
    report,
    run_rounds,
    same_samples,
    summary,
    target,
)
from side_by_side import Setting as BaseSetting
from side_by_side import Variant as BaseVariant
from torch.utils.data import DataLoader

from interleaved_sampler import SeededRandomSampler
from interleaved_sampler.bench.measure import StartupCounter
from interleaved_sampler.bench.scenario import Datasets

SANITY_STEPS = 2  # Lightning's default num_sanity_val_steps


@dataclass(frozen=True)
class Setting(BaseSetting):
    """The benchmarked fit (``eval_every``: ``Trainer(val_check_interval=...)``; the train
    loader drops its last partial batch) and the slow model's set-up.

    Args:
        slow_setup_s: the slow model's set-up (``configure_model`` sleeps); 0: no such fits.
        shuffle: 1: the train loader has ``shuffle=True`` (torch's ``RandomSampler``, whose
            order the wrapper takes where Lightning's loader takes it: its pool pauses before
            each epoch's first batches until then) instead of a ``SeededRandomSampler``.
    """

    slow_setup_s: float = 3.0
    shuffle: int = 0

    @property
    def samples_loaded(self) -> int:
        """Samples a fit needs: its training batches, every validation pass, the sanity
        check's first batches of every validation set."""
        sanity = sum(min(size, SANITY_STEPS * self.eval_batch_size) for size in self.eval_sizes)
        return super().samples_loaded + sanity


QUICK = Setting(slow_setup_s=0.3, **QUICK_SIZES)


@dataclass(frozen=True)
class Variant(BaseVariant):
    """One way to fit: the DataModule unwrapped (``persistent`` workers or not) or wrapped
    (``one_pool``), with the quick or the slow model set-up; ``seeded``: a
    ``SeededRandomSampler`` even where the setting shuffles (the wrapper's pool then never
    pauses: what the pause costs)."""

    slow_setup: bool = False
    seeded: bool = False


VARIANTS = main_variants(Variant, "wrapped")
SLOW_VARIANTS = (
    Variant("persistent, slow set-up", persistent=True, slow_setup=True),
    Variant("wrapped, slow set-up", one_pool=True, slow_setup=True),
)
SEEDED = Variant("wrapped, SeededRandomSampler", one_pool=True, seeded=True)


# A spawned worker imports this script again as "__mp_main__" before it starts; it needs
# nothing of Lightning, so only the parent imports it (see the module docstring).
if __name__ != "__mp_main__":
    import pytorch_lightning as pl
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    from interleaved_sampler.integrations.lightning import InterleavedDataModule

    class BenchModel(pl.LightningModule):
        """The shared MLP on the first floats of each payload, trained with SGD.

        Args:
            seen: records every batch it trains or validates on.
            setup_s: ``configure_model`` sleeps this long (a slow set-up).
        """

        def __init__(self, seen: Seen, setup_s: float = 0.0) -> None:
            super().__init__()
            self.model = mlp()
            self.seen, self.setup_s = seen, setup_s

        def configure_model(self) -> None:
            time.sleep(self.setup_s)  # weights to a GPU, compiling, loading a checkpoint

        def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
            _tags, payload = batch
            x = features(payload)
            return torch.nn.functional.mse_loss(self.model(x), target(x))

        def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
            self.seen.add("train", batch[0][:, 1])
            return self.loss(batch)

        def validation_step(
            self, batch: Sequence[torch.Tensor], batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            phase = "sanity" if self.trainer.sanity_checking else "val"
            self.seen.add(f"{phase}{dataloader_idx}", batch[0][:, 1])
            self.log("val_loss", self.loss(batch))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    class BenchData(pl.LightningDataModule):
        """An ordinary DataModule over the bench's datasets.

        Args:
            setting: sizes, batch sizes, workers, loading cost.
            persistent: ``persistent_workers=True`` on every loader (with workers).
            counter: every loader's ``worker_init_fn`` (None without workers).
            shuffle: ``shuffle=True`` in the train loader (else a ``SeededRandomSampler``).
        """

        def __init__(
            self,
            setting: Setting,
            persistent: bool,
            counter: StartupCounter | None,
            shuffle: bool = False,
        ) -> None:
            super().__init__()
            self.setting, self.persistent, self.counter = setting, persistent, counter
            self.shuffle = shuffle

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
            if self.shuffle:
                return DataLoader(
                    self.data.train,
                    self.setting.batch_size,
                    shuffle=True,
                    drop_last=True,
                    **self.loader_arguments(),
                )
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
                DataLoader(dataset, self.setting.eval_batch_size, **self.loader_arguments())
                for dataset in self.data.evals
            ]


def quiet_lightning() -> None:
    """No Lightning banners, no advice to use more workers than the machine has cores."""
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message="Consider setting `persistent_workers=True`")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def trainer(setting: Setting) -> pl.Trainer:
    """The Trainer of every fit."""
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=setting.updates,
        val_check_interval=setting.eval_every,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def fit_once(variant: Variant, setting: Setting, context: BaseContext) -> Run:
    """Fit ``variant`` once, measured."""
    meter = FitMeter(setting, context)
    shuffle = bool(setting.shuffle) and not variant.seeded
    data = BenchData(setting, variant.persistent, meter.counter, shuffle)
    model = BenchModel(meter.seen, setting.slow_setup_s if variant.slow_setup else 0.0)
    fitter = trainer(setting)
    datamodule = InterleavedDataModule(data) if variant.one_pool else data
    torch.manual_seed(0)  # shuffle=True: every fit draws the same epoch orders
    with meter:
        fitter.fit(model, datamodule=datamodule)
    del fitter, datamodule, data
    return meter.run(variant.name, model.state_dict())


def reference_of(setting: Setting) -> Callable[[Variant], str] | None:
    """The variant whose first fit each variant's fits must equal: with ``shuffle`` a
    persistent loader draws its workers' seed once, so its epoch orders are its own, and a
    ``SeededRandomSampler`` fit has its own; every other fit is non-persistent's run."""
    if not setting.shuffle:
        return None

    def reference(variant: Variant) -> str:
        if variant.seeded:
            return variant.name
        return "persistent" if variant.persistent else "non-persistent"

    return reference


def slow_summary(results: Results, setting: Setting) -> list[str]:
    """Wrapped against persistent with the slow set-up, and what the overlap saved."""
    setup_s = setting.slow_setup_s
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


OPTIONS = {
    **options(
        "Trainer(max_steps=...)",
        ("val-every", "Trainer(val_check_interval=...), in updates"),
        "num_workers of every loader",
    ),
    "slow-setup-s": (
        "slow_setup_s",
        "seconds the slow model's configure_model sleeps (0: no such fits)",
    ),
    "shuffle": (
        "shuffle",
        "1: the train loader has shuffle=True (torch's RandomSampler) instead of a "
        "SeededRandomSampler",
    ),
}


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> Report:
    """Run the benchmark, print the table and the ratios, and return them.

    Raises:
        SampleMismatchError: two fits did not see the same samples or weights differ.
    """
    setting = parse(argv, __doc__.splitlines()[0], Setting(), QUICK, OPTIONS)
    quiet_lightning()
    variants = VARIANTS + (SLOW_VARIANTS if setting.slow_setup_s > 0 else ())
    variants += (SEEDED,) if setting.shuffle else ()
    results = run_rounds(setting, variants, fit_once, log, reference_of(setting))
    phases = [("train", "training"), ("val", "validation"), ("sanity", "sanity-check")]
    sanity = f", the sanity check's {SANITY_STEPS * len(setting.eval_sizes)} batches loaded"
    tail = summary(results, "wrapped", "Lightning", sanity + " in the main process")
    if setting.slow_setup_s > 0:
        tail += [f"with a model set-up of {setting.slow_setup_s:g} s:"]
        tail += slow_summary(results, setting)
    same = same_samples(results, phases)
    if setting.shuffle:
        same += (
            "; shuffle=True: the persistent fits saw their own epoch orders (a persistent "
            "loader draws its workers' seed once), the SeededRandomSampler fits theirs, the "
            "others those of non-persistent"
        )
        tail.append(
            ratio_line(
                results,
                "the pause before each epoch's first batches: wrapped / wrapped with a "
                "SeededRandomSampler, wall time",
                "wrapped",
                SEEDED.name,
                "wall_s",
            )
        )
    return report(
        results,
        describe(setting, "updates", "validation", " and Lightning's sanity check"),
        same,
        tail,
        log,
    )


if __name__ == "__main__":
    main()
