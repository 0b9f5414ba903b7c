"""InterleavedDataModule: an unchanged LightningModule and DataModule on one pool, with real
Trainers, each compared with the same DataModule unwrapped (examples/lightning_datamodule.py):
logged metrics, global_step and weights bit for bit; resumes equal the uninterrupted run."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from helpers import torchrun
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader, IterableDataset
from torchrun_worker import load_example

from interleaved_sampler.integrations.lightning import InterleavedDataModule

ROOT = Path(__file__).resolve().parents[1]
example = load_example("lightning_datamodule")
# 90 samples, batch 8: 12 updates per epoch; val sets of 20 (batch 6) and 7 (batch 4)
BASE = example.RunConfig()


def assert_same(a: Any, b: Any) -> None:
    assert a.logged == b.logged
    assert a.global_step == b.global_step
    for name, value in a.weights.items():
        assert torch.equal(value, b.weights[name]), name


def validation_steps(outcome: Any) -> list[int]:
    return [step for step, metrics in outcome.logged if "val_loss/dataloader_idx_0" in metrics]


@pytest.mark.parametrize(
    ("settings", "validations"),
    [
        ({}, [4, 9, 14, 19]),  # every 5 batches of the run (check_val_every_n_epoch=None)
        ({"val_check_interval": 1.0, "check_val_every_n_epoch": 1}, [11, 23]),  # epoch ends
        ({"val_check_interval": 5, "check_val_every_n_epoch": 1}, [4, 9, 16, 21]),  # per epoch
        ({"val_check_interval": 0.5, "check_val_every_n_epoch": 1}, [5, 11, 17, 23]),
        ({"val_check_interval": 1.0, "check_val_every_n_epoch": 2, "epochs": 3}, [23]),
        ({"max_steps": 17}, [4, 9, 14]),  # the end of the run cuts the epoch
    ],
    ids=["updates", "epochs", "in-epoch", "fraction", "every-2-epochs", "max-steps"],
)
def test_validation_falls_where_lightning_validates(
    settings: dict[str, Any], validations: list[int]
) -> None:
    config = replace(BASE, **settings)
    wrapped = example.run(config)
    assert_same(wrapped, example.run(replace(config, plain=True)))
    assert validation_steps(wrapped) == validations


def test_accumulation_and_clipping_and_max_steps_in_optimizer_steps() -> None:
    config = replace(BASE, accumulate=2, clip=0.05, max_steps=9, epochs=3)
    wrapped = example.run(config)
    assert_same(wrapped, example.run(replace(config, plain=True)))
    assert wrapped.global_step == 9  # 6 steps per epoch (12 batches): ends after batch 18
    assert validation_steps(wrapped) == [2, 4, 7]  # validation every 5 batches, not steps


def early_stopping() -> EarlyStopping:
    return EarlyStopping("val_loss/dataloader_idx_0", patience=0, min_delta=0.0, mode="min")


def test_early_stopping_stops_both_at_the_same_validation() -> None:
    config = replace(BASE, epochs=4)
    wrapped = example.run(replace(config, callbacks=(early_stopping(),)))
    plain = example.run(replace(config, plain=True, callbacks=(early_stopping(),)))
    assert_same(wrapped, plain)
    assert wrapped.global_step < 48  # it stopped early


def test_model_checkpoint_monitor_ranks_the_same_weights(tmp_path: Path) -> None:
    scores = []
    for plain in (False, True):
        best = ModelCheckpoint(tmp_path / str(plain), monitor="val_loss/dataloader_idx_1")
        example.run(replace(BASE, plain=plain, callbacks=(best,)))
        scores.append((Path(best.best_model_path).name, float(best.best_model_score)))
    assert scores[0] == scores[1]


def test_worker_processes_started_equal_the_train_loaders(tmp_path: Path) -> None:
    """2 workers (fork): the wrapped run starts 2 processes for everything; the plain run
    starts 2 per train epoch and per validation pass of each set."""
    counts = []
    for plain in (False, True):
        folder = tmp_path / str(plain)
        folder.mkdir()
        data = CountingData(folder)
        outcome = example.run(replace(BASE, plain=plain), data)
        counts.append((len(list(folder.iterdir())), outcome))
    assert counts[0][0] == 2
    assert counts[1][0] == 2 * (2 + 2 * (4 + 1))  # epochs, then 2 sets x (4 passes + sanity)
    assert_same(counts[0][1], counts[1][1])


def record_worker(worker_id: int) -> None:
    """worker_init_fn: one file per worker process started."""
    Path(os.environ["WORKER_LOG"], str(os.getpid())).touch()


class CountingData(example.RegressionData):  # type: ignore[misc,name-defined]
    def __init__(self, folder: Path) -> None:
        super().__init__(workers=2, start_method="fork")
        os.environ["WORKER_LOG"] = str(folder)

    def loader_arguments(self) -> dict[str, Any]:
        return {**super().loader_arguments(), "worker_init_fn": record_worker}


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return folder, example.run(replace(BASE, checkpoints=folder))


@pytest.mark.parametrize(
    "name",
    ["step=10.ckpt", "step=15.ckpt", "epoch-epoch=0.ckpt", "best"],
    ids=["mid-epoch", "mid-epoch-2", "epoch-end", "validation-end"],
)
def test_resume_from_every_kind_of_checkpoint_equals_the_uninterrupted_run(
    checkpointed: tuple[Path, Any], name: str
) -> None:
    folder, uninterrupted = checkpointed
    if name == "best":
        name = next(p.name for p in folder.iterdir() if p.name.startswith("best-"))
    checkpoint = torch.load(folder / name, weights_only=False)
    step = checkpoint["global_step"]
    rest = example.run(replace(BASE, resume=folder / name))
    assert rest.global_step == uninterrupted.global_step == 24
    for key, value in uninterrupted.weights.items():
        assert torch.equal(rest.weights[key], value), key
    later = [
        (s, m) for s, m in uninterrupted.logged if s > step and "val_loss/dataloader_idx_0" in m
    ]
    resumed = [(s, m) for s, m in rest.logged if "val_loss/dataloader_idx_0" in m]
    assert resumed == later  # the validations after the checkpoint, none repeated


def test_plain_lightning_replays_a_mid_epoch_resume(checkpointed: tuple[Path, Any]) -> None:
    """What the wrapper does better: plain Lightning restarts the epoch's data."""
    folder, uninterrupted = checkpointed
    plain = example.run(replace(BASE, plain=True, resume=folder / "step=10.ckpt"))
    assert not all(
        torch.equal(plain.weights[key], value) for key, value in uninterrupted.weights.items()
    )


def test_a_shuffling_train_loader_is_warned_about_and_resumes_like_a_plain_one(
    tmp_path: Path,
) -> None:
    with pytest.warns(UserWarning, match="SeededRandomSampler"):
        example.run(replace(BASE, shuffle=True, checkpoints=tmp_path))
    rest = example.run(replace(BASE, shuffle=True, resume=tmp_path / "step=10.ckpt"))
    assert rest.global_step == 24  # a new order for the rest of the epoch, no error


def test_sanity_check_and_validate_are_served_apart() -> None:
    model, data = example.Regression(), example.RegressionData()
    wrapped = InterleavedDataModule(data)
    seen: list[int] = []

    class Recorder(pl.Callback):
        def on_validation_batch_start(self, trainer: Any, *args: Any) -> None:
            seen.append(int(trainer.sanity_checking))

    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, val_check_interval=6, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Recorder()],
    )  # fmt: skip
    trainer.fit(model, datamodule=wrapped)
    assert seen == [1] * 4 + [0] * (4 + 2) * 2  # sanity: 2 batches per set; 2 validations
    plain = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert trainer.validate(model, datamodule=wrapped, verbose=False) == plain.validate(
        model, datamodule=example.RegressionData(), verbose=False
    )


class Endless(IterableDataset[torch.Tensor]):
    def __iter__(self) -> Any:
        return iter([torch.zeros(4)])


class IterableData(example.RegressionData):  # type: ignore[misc,name-defined]
    """A val loader over an IterableDataset (a train loader may be over one: a stream)."""

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(Endless())


class IterStep(example.Regression):  # type: ignore[misc,name-defined]
    def training_step(self, dataloader_iter: Any) -> torch.Tensor:  # type: ignore[override]
        return super().training_step(next(dataloader_iter)[0], 0)


@pytest.mark.parametrize(
    ("trainer_arguments", "model", "data", "message"),
    [
        ({"limit_val_batches": 0.5}, None, None, r"Trainer\(limit_val_batches=0.5\)"),
        ({"limit_train_batches": 3}, None, None, r"Trainer\(limit_train_batches=3\)"),
        ({"limit_val_batches": 1}, None, None, r"Trainer\(limit_val_batches=1\)"),  # 1 batch
        ({"limit_train_batches": 1}, None, None, r"Trainer\(limit_train_batches=1\)"),
        ({"overfit_batches": 2}, None, None, r"Trainer\(overfit_batches=2"),
        ({"fast_dev_run": True}, None, None, r"Trainer\(fast_dev_run=True\)"),
        ({}, IterStep, None, r"dataloader_iter"),
        ({}, None, IterableData, r"IterableDataset \(Endless\), which has no len\(\)"),
    ],
    ids=[
        "limit_val",
        "limit_train",
        "limit_val_int_1",
        "limit_train_int_1",
        "overfit",
        "fast_dev_run",
        "dataloader_iter",
        "iterable",
    ],
)
def test_settings_no_schedule_can_follow_are_refused_at_fit_start(
    trainer_arguments: dict[str, Any], model: Any, data: Any, message: str
) -> None:
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **trainer_arguments,
    )  # fmt: skip
    module = (model or example.Regression)()
    datamodule = InterleavedDataModule((data or example.RegressionData)())
    with pytest.raises((ValueError, TypeError), match=message):
        trainer.fit(module, datamodule=datamodule)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_on_two_processes_and_resume_on_one(tmp_path: Path) -> None:
    """2 devices of 8 training samples per batch; the checkpoint after step 5 continues on
    1 device with every batch size doubled: the same global run."""
    script = ROOT / "examples" / "lightning_datamodule.py"
    folder = tmp_path / "ckpt"
    out = torchrun(script, ["--devices", "2", "--checkpoints", str(folder)], timeout=240)
    assert "global_step 12" in out  # global batches of 16: 6 updates per epoch, 2 epochs
    steps = [int(line.split()[1]) for line in out.splitlines() if line.startswith("step")]
    assert steps == [4, 9]  # after batches 5 and 10 of the global run
    rest = example.run(replace(BASE, batch_scale=2, resume=folder / "step=5.ckpt"))
    assert rest.global_step == 12
    assert validation_steps(rest) == [9]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ddp_with_shuffle_true_is_plain_lightnings_ddp_run() -> None:
    """2 devices, shuffle=True: plain Lightning puts DistributedSampler(shuffle=True, seed=0)
    in place of the RandomSampler; the wrapper takes the same order as one global sampler and
    splits every batch itself, so every rank trains on its part of Lightning's order: the
    same validations on rank 0 and the same global_step."""
    script = ROOT / "examples" / "lightning_datamodule.py"
    outputs = [
        torchrun(script, ["--devices", "2", "--shuffle", *plain], timeout=180)
        for plain in ([], ["--plain"])
    ]
    lines = [
        [line for line in out.splitlines() if line.startswith(("step", "global"))]
        for out in outputs
    ]
    assert lines[0] == lines[1]
    assert "global_step 12" in lines[0]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ddp_over_a_stream_is_plain_lightnings_ddp_run() -> None:
    """2 devices, 2 spawn workers each, a train loader over a stream that shards itself by
    rank and worker: each device's copies give its batches as under plain Lightning (which
    injects no sampler into an IterableDataset); the same validations, global_step and
    weights."""
    script = ROOT / "examples" / "lightning_datamodule.py"
    arguments = ["--devices", "2", "--stream", "--max-steps", "12", "--workers", "2"]
    outputs = [torchrun(script, arguments + plain, timeout=180) for plain in ([], ["--plain"])]
    lines = [
        [line for line in out.splitlines() if line.startswith(("step", "global", "weights"))]
        for out in outputs
    ]
    assert lines[0] == lines[1]
    assert "global_step 12" in lines[0] and len(lines[0]) == 4  # validations at 5 and 10
