"""PyTorch Lightning: examples/lightning_train.py in one process and under DDP (2 ranks,
gloo), the integration's refusals, and exact resume through ``ckpt_path``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from helpers import torchrun
from torch.utils.data import SequentialSampler
from torchrun_worker import load_example

from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig
from interleaved_sampler.integrations.lightning import trainer_arguments

ROOT = Path(__file__).resolve().parents[1]
example = load_example("lightning_train")
TINY = example.RunConfig()  # 96 samples, batch 8, 2 epochs: 24 updates, val every 5


def expected(world: int, rank: int) -> list[tuple[str, int, list[int]]]:
    """What the loop must see: the loader's batches in order."""
    loader = example.make_loader(TINY, world, rank)
    return [(b.source, b.progress.update, b.indices) for b in loader]


def as_tuples(seen: list[Any]) -> list[tuple[str, int, list[int]]]:
    return [(source, update, list(indices)) for source, update, indices in seen]


@pytest.fixture(scope="module")
def uninterrupted() -> Any:
    return example.run(TINY)


def test_fit_sees_the_schedule_and_counts_only_updates(uninterrupted: Any) -> None:
    assert as_tuples(uninterrupted.seen) == expected(1, 0)
    assert uninterrupted.global_step == 24  # 24 updates; 16 validation batches not counted
    assert [update for update, _ in uninterrupted.results] == [5, 10, 15, 20]


def test_schedulers_step_per_update_and_per_sampler_epoch() -> None:
    module = example.Regression()
    steps: list[Any] = []

    def optimizers() -> Any:
        optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
        per_update = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
        per_epoch = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
        steps.extend([per_update, per_epoch])
        return [optimizer], [{"scheduler": per_update, "interval": "step"}, per_epoch]

    module.configure_optimizers = optimizers
    trainer = pl.Trainer(**trainer_arguments(), accelerator="cpu", logger=False, **QUIET)
    trainer.fit(module, example.make_loader(TINY, 1, 0))
    assert [s.last_epoch for s in steps] == [24, 2]  # 24 updates, 2 epochs of the sampler


QUIET = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"use_distributed_sampler": False}, "max_epochs=1000"),
        ({"max_epochs": 1, "max_steps": 24}, "max_steps=24"),
    ],
)
def test_trainer_arguments_that_break_the_run_are_refused(
    arguments: dict[str, Any], message: str
) -> None:
    trainer = pl.Trainer(accelerator="cpu", logger=False, **QUIET, **arguments)
    with pytest.raises(ValueError, match=message):
        trainer.fit(example.Regression(), example.make_loader(TINY, 1, 0))


def test_untagged_loader_is_refused() -> None:
    sampler = InterleavedSampler(
        SequentialSampler(example.regression(16, 0)),
        InterleavedSamplerConfig(batch_size=4, max_epochs=1),
    )
    trainer = pl.Trainer(**trainer_arguments(), accelerator="cpu", logger=False, **QUIET)
    with pytest.raises(TypeError, match="tagged=True"):
        trainer.fit(example.Regression(), sampler.get_data_loader())


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop_at", [7, 12])  # inside the first epoch, at its end
def test_resume_from_a_mid_run_checkpoint_equals_the_uninterrupted_run(
    uninterrupted: Any, tmp_path: Path, workers: int, stop_at: int
) -> None:
    checkpoint = tmp_path / "stop.ckpt"
    first = example.run(example.RunConfig(workers=workers, stop_at=stop_at, checkpoint=checkpoint))
    assert first.global_step == stop_at
    rest = example.run(example.RunConfig(workers=workers, resume=checkpoint))
    assert as_tuples(first.seen + rest.seen) == as_tuples(uninterrupted.seen)
    assert rest.global_step == uninterrupted.global_step == 24
    assert first.results + rest.results == uninterrupted.results
    for name, value in uninterrupted.weights.items():
        assert torch.equal(rest.weights[name], value), name


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_ranks_follow_one_schedule_on_their_shards(tmp_path: Path) -> None:
    script = ROOT / "examples" / "lightning_train.py"
    torchrun(script, ["--devices", "2", "--json", str(tmp_path)], timeout=240)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, record in enumerate(ranks):
        assert as_tuples(record["seen"]) == expected(2, rank)
        assert record["global_step"] == 24  # the global run: 96 / 8 x 2 epochs
    assert ranks[0]["results"] == ranks[1]["results"]  # gathered: the same on both ranks
    assert [update for update, _ in ranks[0]["results"]] == [5, 10, 15, 20]
    assert ranks[0]["weights"] == ranks[1]["weights"]


class SizedByEstimate(example.Regression):  # type: ignore[misc,name-defined]
    """configure_optimizers reads trainer.estimated_stepping_batches (the OneCycle recipe),
    which sets the train loader up before Lightning restores a checkpoint, and records
    training_updates."""

    def configure_optimizers(self) -> Any:
        self.estimated = int(self.trainer.estimated_stepping_batches)
        self.updates = self.training_updates
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=0.2, total_steps=self.updates
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def test_resume_is_exact_when_configure_optimizers_reads_the_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(example, "Regression", SizedByEstimate)
    full = example.run(TINY)
    checkpoint = tmp_path / "stop.ckpt"
    first = example.run(example.RunConfig(stop_at=7, checkpoint=checkpoint))
    rest = example.run(example.RunConfig(resume=checkpoint))
    assert as_tuples(first.seen + rest.seen) == as_tuples(full.seen)
    assert rest.global_step == full.global_step == 24
    for name, value in full.weights.items():
        assert torch.equal(rest.weights[name], value), name


def test_training_updates_sizes_schedules_in_configure_optimizers() -> None:
    module = SizedByEstimate()
    trainer = pl.Trainer(**trainer_arguments(), accelerator="cpu", logger=False, **QUIET)
    trainer.fit(module, example.make_loader(TINY, 1, 0))
    assert (module.updates, module.estimated) == (24, 40)  # 24 updates, 16 val batches


class WithValidationStep(example.Regression):  # type: ignore[misc,name-defined]
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """A leftover: Lightning would validate on a second pool."""


@pytest.mark.parametrize(
    ("module", "callback", "message"),
    [
        (WithValidationStep, None, "overrides validation_step"),
        (None, "early_stopping", r"EarlyStopping\(monitor='val/mse'\).*InterleavedDataModule"),
        (None, "checkpoint", r"ModelCheckpoint\(monitor='val/mse'\).*InterleavedDataModule"),
    ],
)
def test_what_would_act_on_stale_metrics_or_a_second_pool_is_refused(
    module: Any, callback: str | None, message: str, tmp_path: Path
) -> None:
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    callbacks = {
        None: [],
        "early_stopping": [EarlyStopping("val/mse")],
        "checkpoint": [ModelCheckpoint(tmp_path, monitor="val/mse")],
    }[callback]
    options = {**QUIET, "enable_checkpointing": callback == "checkpoint"}
    trainer = pl.Trainer(
        **trainer_arguments(), accelerator="cpu", logger=False, callbacks=callbacks, **options
    )
    with pytest.raises(ValueError, match=message):
        trainer.fit((module or example.Regression)(), example.make_loader(TINY, 1, 0))
