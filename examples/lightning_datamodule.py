"""Your LightningModule and DataModule, unchanged, on one worker pool: one line changes.

    python examples/lightning_datamodule.py                     # InterleavedDataModule(data)
    python examples/lightning_datamodule.py --plain             # the same, unwrapped
    torchrun --standalone --nproc-per-node=2 examples/lightning_datamodule.py --devices 2
    python examples/lightning_datamodule.py --checkpoints ckpt/ # ModelCheckpoint every 5 steps
    python examples/lightning_datamodule.py --resume ckpt/step=10.ckpt
    python examples/lightning_datamodule.py --accelerator gpu --deterministic   # on a GPU
    python examples/lightning_datamodule.py --stream --max-steps 30   # an IterableDataset

The module uses automatic optimization, ``validation_step`` with two validation sets
(``dataloader_idx``), ``self.log`` (per step and per epoch), a OneCycle schedule sized by
``trainer.estimated_stepping_batches``; the DataModule has ordinary ``DataLoader``\\ s. The
only change for one pool is ``trainer.fit(model, datamodule=InterleavedDataModule(data))``:
the train set and both validation sets are then loaded by the train loader's workers,
started once, with validation exactly where Lightning validates. The printed losses and
final weights are the plain run's, bit for bit (``--plain`` to compare). With ``--stream``
the train loader is over an endless ``IterableDataset`` that shards itself by rank and
worker (``max_steps`` ends the run; validation every ``val_check_interval`` batches).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, get_worker_info

from interleaved_sampler import SeededRandomSampler
from interleaved_sampler.integrations.lightning import InterleavedDataModule


@dataclass(frozen=True)
class RunConfig:
    """One run.

    Args:
        plain: fit on the DataModule unwrapped (Lightning's own loaders).
        epochs: ``Trainer(max_epochs=...)``.
        max_steps: ``Trainer(max_steps=...)`` (-1: none).
        val_check_interval: ``Trainer(val_check_interval=...)``.
        check_val_every_n_epoch: ``Trainer(check_val_every_n_epoch=...)`` (0: None).
        accumulate: ``Trainer(accumulate_grad_batches=...)``.
        clip: ``Trainer(gradient_clip_val=...)`` (0: none).
        batch_scale: every loader's batch size times this (batch sizes are per device in
            Lightning: 2 resumes on 1 device the global run of 2 devices).
        workers: the DataLoaders' ``num_workers``.
        start_method: their ``multiprocessing_context``.
        shuffle: ``shuffle=True`` in the train loader (torch's RandomSampler) instead of a
            ``SeededRandomSampler``.
        stream: the train loader over :class:`RegressionStream` (needs ``max_steps``).
        devices: processes (``strategy="ddp"`` when more than one).
        accelerator: ``Trainer(accelerator=...)``.
        deterministic: ``Trainer(deterministic=True)`` (on a GPU: the same results every
            run, bit for bit).
        checkpoints: a folder for ``ModelCheckpoint`` checkpoints: every 5 steps, the best
            validation loss, and every epoch end.
        resume: a checkpoint to continue from (``ckpt_path=``).
        callbacks: further callbacks, e.g. ``EarlyStopping``.
    """

    plain: bool = False
    epochs: int = 2
    max_steps: int = -1
    val_check_interval: float | int = 5
    check_val_every_n_epoch: int = 0
    accumulate: int = 1
    clip: float = 0.0
    batch_scale: int = 1
    workers: int = 0
    start_method: str = "spawn"
    shuffle: bool = False
    stream: bool = False
    devices: int = 1
    accelerator: str = "cpu"
    deterministic: bool = False
    checkpoints: Path | None = None
    resume: Path | None = None
    callbacks: tuple[pl.Callback, ...] = ()


def regression(size: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 4, generator=generator)
    return TensorDataset(x, torch.sin(x @ torch.linspace(-1, 1, 4))[:, None])


class RegressionStream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """An endless stream of the samples of ``dataset``: rank ``r`` of ``R`` takes the samples
    ``r, r + R, ...``, and worker ``w`` of ``W`` every ``W``-th of those from its ``w``-th
    (a dataset that shards itself, as ``datasets.distributed.split_dataset_by_node`` does);
    each copy repeats its samples, reversing them on every other round.

    Args:
        dataset: the samples.
        rank: this process's rank (``trainer.global_rank``).
        world_size: the processes (``trainer.world_size``).
    """

    def __init__(self, dataset: TensorDataset, rank: int = 0, world_size: int = 1) -> None:
        self.dataset, self.rank, self.world_size = dataset, rank, world_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shard = range(self.rank, len(self.dataset), self.world_size)[worker::workers]
        rounds = 0
        while True:
            for index in reversed(shard) if rounds % 2 else shard:
                yield self.dataset[index]
            rounds += 1


class RegressionData(pl.LightningDataModule):
    """90 training samples (batch 8: 12 batches per epoch, the last of 2), or an endless
    stream of them; two validation sets of 20 (batch 6) and 7 (batch 4)."""

    def __init__(
        self,
        workers: int = 0,
        start_method: str = "spawn",
        shuffle: bool = False,
        batch_scale: int = 1,
        stream: bool = False,
    ) -> None:
        super().__init__()
        self.workers, self.start_method, self.shuffle = workers, start_method, shuffle
        self.batch_scale, self.stream = batch_scale, stream

    def setup(self, stage: str) -> None:
        self.train_set, self.val_sets = regression(90, 0), [regression(20, 1), regression(7, 2)]

    def loader_arguments(self) -> dict[str, Any]:
        if not self.workers:
            return {}
        return {"num_workers": self.workers, "multiprocessing_context": self.start_method}

    def train_dataloader(self) -> DataLoader[Any]:
        if self.stream:
            assert self.trainer is not None
            stream = RegressionStream(
                self.train_set, self.trainer.global_rank, self.trainer.world_size
            )
            return DataLoader(stream, 8 * self.batch_scale, **self.loader_arguments())
        if self.shuffle:
            return DataLoader(
                self.train_set, 8 * self.batch_scale, shuffle=True, **self.loader_arguments()
            )
        sampler = SeededRandomSampler(self.train_set, seed=0)
        return DataLoader(
            self.train_set, 8 * self.batch_scale, sampler=sampler, **self.loader_arguments()
        )

    def val_dataloader(self) -> list[DataLoader[Any]]:
        return [
            DataLoader(dataset, batch_size=size * self.batch_scale, **self.loader_arguments())
            for dataset, size in zip(self.val_sets, (6, 4), strict=True)
        ]


class Regression(pl.LightningModule):
    """A small MLP; no random numbers drawn after its initialization."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.model(x), y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call (rank 0): what Lightning logged, and when."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((step or 0, {k: float(v) for k, v in sorted(metrics.items())}))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing to keep."""


@dataclass
class Outcome:
    """What a run did: the logged metrics, the final global_step and weights."""

    logged: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    global_step: int = 0
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def checkpoint_callbacks(folder: Path) -> list[pl.Callback]:
    """Every kind of ModelCheckpoint: every 5 steps, at validation end (the best
    ``val_loss``), and at every epoch end."""
    return [
        ModelCheckpoint(folder, "{step}", every_n_train_steps=5, save_top_k=-1),
        ModelCheckpoint(folder, "best-{step}", monitor="val_loss/dataloader_idx_0"),
        ModelCheckpoint(folder, "epoch-{epoch}", save_on_train_epoch_end=True, save_top_k=-1),
    ]


def run(config: RunConfig, data: RegressionData | None = None) -> Outcome:
    """Fit (or continue from ``config.resume``) and return what the run did; ``data``: a
    DataModule to use instead of the one ``config`` describes."""
    logger = MemoryLogger()
    callbacks = list(config.callbacks)
    if config.checkpoints is not None:
        callbacks += checkpoint_callbacks(config.checkpoints)
    trainer = pl.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        deterministic=config.deterministic or None,
        strategy="ddp" if config.devices > 1 else "auto",
        max_epochs=config.epochs,
        max_steps=config.max_steps,
        val_check_interval=config.val_check_interval,
        check_val_every_n_epoch=config.check_val_every_n_epoch or None,
        accumulate_grad_batches=config.accumulate,
        gradient_clip_val=config.clip or None,
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Regression()
    data = data or RegressionData(
        config.workers, config.start_method, config.shuffle, config.batch_scale, config.stream
    )
    datamodule = data if config.plain else InterleavedDataModule(data)
    trainer.fit(model, datamodule=datamodule, ckpt_path=config.resume)
    weights = {k: v.detach().clone() for k, v in model.model.state_dict().items()}
    return Outcome(logger.logged, trainer.global_step, weights)


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RunConfig()
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps)
    parser.add_argument("--val-check-interval", type=float, default=defaults.val_check_interval)
    parser.add_argument("--check-val-every-n-epoch", type=int, default=0)
    parser.add_argument("--accumulate", type=int, default=defaults.accumulate)
    parser.add_argument("--clip", type=float, default=defaults.clip)
    parser.add_argument("--batch-scale", type=int, default=defaults.batch_scale)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--start-method", default=defaults.start_method)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--devices", type=int, default=defaults.devices)
    parser.add_argument("--accelerator", default=defaults.accelerator)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--checkpoints", type=Path, default=None)
    parser.add_argument("--resume", type=Path, default=None)
    args = vars(parser.parse_args(argv))
    interval = args["val_check_interval"]
    args["val_check_interval"] = int(interval) if interval >= 1 else interval
    outcome = run(RunConfig(**args))
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        for step, metrics in outcome.logged:
            shown = ", ".join(f"{k} {v:.6f}" for k, v in metrics.items() if k.startswith("val"))
            if shown:
                print(f"step {step:3d}  {shown}")
        print(f"global_step {outcome.global_step}")
        print(f"weights {sum(float(w.double().sum()) for w in outcome.weights.values())!r}")
    return outcome


if __name__ == "__main__":
    main()
