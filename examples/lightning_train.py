"""PyTorch Lightning on one interleaved loader: train, evaluate on schedule, resume exactly.

    python examples/lightning_train.py                              # one process
    torchrun --standalone --nproc-per-node=2 examples/lightning_train.py --devices 2
    python examples/lightning_train.py --stop-at 13 --checkpoint c.ckpt   # interrupted run
    python examples/lightning_train.py --resume c.ckpt                    # its continuation

The model is an :class:`~interleaved_sampler.integrations.lightning.InterleavedLightningModule`:
``train_step`` gets the training batches (one optimizer update each; ``global_step`` counts
updates), ``evaluation_step`` the batches of the validation passes, ``evaluation_end`` the
end of each pass (its metric is gathered from all ranks by dataset index and logged as
``val/mse``). The data module builds the loader in ``train_dataloader``, where Lightning
knows the world size and rank: global samplers, and ``InterleavedSampler(...,
num_replicas=world_size, rank=rank)`` gives each rank its part of every global batch.
``--resume`` hands the checkpoint to ``trainer.fit(..., ckpt_path=...)``: Lightning
restores the loader's position (the global run's) with the model, so the continuation sees
exactly the rest of the batches, also on another number of processes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedBatch,
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.distributed import gather_by_index
from interleaved_sampler.integrations.lightning import (
    InterleavedLightningModule,
    trainer_arguments,
)


@dataclass(frozen=True)
class RunConfig:
    """One run.

    Args:
        epochs: epochs of the training set.
        batch_size: training samples per update, over all ranks.
        val_every: a validation pass every this many updates.
        workers: DataLoader worker processes per rank.
        devices: processes (``strategy="ddp"`` when more than one).
        stop_at: save ``checkpoint`` after this many updates and stop there.
        checkpoint: where ``stop_at`` saves.
        resume: a checkpoint to continue from.
    """

    epochs: int = 2
    batch_size: int = 8
    val_every: int = 5
    workers: int = 0
    devices: int = 1
    stop_at: int | None = None
    checkpoint: Path | None = None
    resume: Path | None = None


def regression(size: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 4, generator=generator)
    return TensorDataset(x, torch.sin(x @ torch.linspace(-1, 1, 4))[:, None])


def make_loader(config: RunConfig, world: int, rank: int) -> DataLoader[Any]:
    """96 training samples and a validation set of 20; this process's part of the run."""
    train, val = regression(96, 0), regression(20, 1)
    sampler = InterleavedSampler(
        SeededRandomSampler(train, seed=0),
        InterleavedSamplerConfig(batch_size=config.batch_size, max_epochs=config.epochs),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(val), every_n_updates=config.val_every, batch_size=6, name="val"
            )
        ],
        num_replicas=world,
        rank=rank,
    )
    return sampler.get_data_loader(num_workers=config.workers, tagged=True)


class RegressionData(pl.LightningDataModule):
    """The loader, built where Lightning knows the world size and this process's rank."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config

    def train_dataloader(self) -> DataLoader[Any]:
        return make_loader(self.config, self.trainer.world_size, self.trainer.global_rank)


class Regression(InterleavedLightningModule):
    """A small MLP; records every batch it gets and every validation result."""

    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
        )
        self.seen: list[tuple[str, int, list[int]]] = []
        self.results: list[tuple[int, float]] = []
        self.errors: list[torch.Tensor] = []
        self.indices: list[int] = []

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.8)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def train_step(self, batch: InterleavedBatch) -> torch.Tensor:
        self.seen.append((batch.source, batch.progress.update, batch.indices))
        x, y = batch.data
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.log("train/loss", loss)
        return loss

    def evaluation_step(self, batch: InterleavedBatch) -> None:
        self.seen.append((batch.source, batch.progress.update, batch.indices))
        x, y = batch.data
        self.errors.append(((self.model(x) - y) ** 2).squeeze(1))
        self.indices.extend(batch.indices)

    def evaluation_end(self, source: str) -> dict[str, Any]:
        mse = gather_by_index(torch.cat(self.errors), self.indices).mean()
        self.errors, self.indices = [], []
        self.results.append((self.global_step, mse.item()))
        return {"mse": mse}


class StopAt(pl.Callback):
    """Save a checkpoint after ``update`` updates (and before the passes due then), then stop:
    an interrupted run."""

    def __init__(self, update: int, path: Path) -> None:
        self.update, self.path = update, path

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, _: int
    ) -> None:
        if batch.source == "train" and trainer.global_step == self.update:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


@dataclass
class Outcome:
    """What a run did: every batch (source, progress.update, indices), the validation
    results, the final global_step and weights."""

    seen: list[tuple[str, int, list[int]]] = field(default_factory=list)
    results: list[tuple[int, float]] = field(default_factory=list)
    global_step: int = 0
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def run(config: RunConfig) -> Outcome:
    """Fit (or continue from ``config.resume``) and return what the run did."""
    pl.seed_everything(0, verbose=False)
    module = Regression()
    callbacks = []
    if config.stop_at is not None:
        assert config.checkpoint is not None, "--stop-at needs --checkpoint"
        callbacks.append(StopAt(config.stop_at, config.checkpoint))
    trainer = pl.Trainer(
        **trainer_arguments(),
        accelerator="cpu",
        devices=config.devices,
        strategy="ddp" if config.devices > 1 else "auto",
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, RegressionData(config), ckpt_path=config.resume)
    weights = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    return Outcome(module.seen, module.results, trainer.global_step, weights)


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RunConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--val-every", type=int, default=defaults.val_every)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--devices", type=int, default=defaults.devices)
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write each rank's outcome here")
    args = vars(parser.parse_args(argv))
    out = args.pop("json")
    outcome = run(RunConfig(**args))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if out is not None:
        record = {
            "seen": outcome.seen,
            "results": outcome.results,
            "global_step": outcome.global_step,
            "weights": {k: v.tolist() for k, v in outcome.weights.items()},
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    if rank == 0:
        for update, mse in outcome.results:
            print(f"update {update:3d}  val mse {mse:.6f}")
        print(f"global_step {outcome.global_step}")
    return outcome


if __name__ == "__main__":
    main()
