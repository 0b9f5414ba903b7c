"""InterleavedDataModule on Lightning's defaults (shuffle=True, dropout, early stopping, the
user's checkpoints and DataModule) and over a streaming (``IterableDataset``) train loader:
real Trainers, plain against wrapped, bit for bit; the configurations drawn by hypothesis (a
few in the fast tier, more in the slow one)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from streams import WorkerShardedSamples
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from torchrun_worker import load_example

from interleaved_sampler import SeededRandomSampler
from interleaved_sampler.integrations.lightning import InterleavedDataModule


def tensors(size: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 3, generator=generator)
    return TensorDataset(x, x.sum(1, keepdim=True).sin())


# Samples of a train stream: more than a run of the tests reads from any worker's copy, so the
# runs end before a copy runs out (where the wrapper's copies restart and Lightning's epoch ends).
STREAM_SAMPLES = 200


def train_stream(kind: str) -> IterableDataset[Any]:
    """A stream of :data:`STREAM_SAMPLES` samples: a Hugging Face ``datasets`` stream of 4
    shards (it has ``state_dict``) or one sharded by worker without ``state_dict``."""
    if kind == "sharded":
        return WorkerShardedSamples(tensors(STREAM_SAMPLES, 0))
    from datasets import Dataset

    x, y = tensors(STREAM_SAMPLES, 0).tensors
    table = Dataset.from_dict({"x": x.tolist(), "y": y.tolist()})
    return table.to_iterable_dataset(num_shards=4)  # type: ignore[no-any-return]


def rows_to_tensors(rows: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collates samples (pairs, or ``datasets`` rows) into ``(x, y)``."""
    if isinstance(rows[0], dict):
        rows = [(torch.tensor(row["x"]), torch.tensor(row["y"])) for row in rows]
    return torch.stack([x for x, _ in rows]), torch.stack([y for _, y in rows])


class Data(pl.LightningDataModule):
    """14 training samples (batch 4), or a stream (``order`` "stream-datasets" or
    "stream-sharded"); val sets of 5 (batch 2) and 3 (batch 2)."""

    def __init__(
        self,
        order: str = "shuffle",
        drop_last: bool = False,
        vals: str = "one",
        workers: int = 0,
        val_shuffle: bool = False,
        persistent: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.num_classes = 3
        self.order, self.drop_last, self.vals, self.workers = order, drop_last, vals, workers
        self.val_shuffle, self.persistent = val_shuffle, persistent
        self.restored: dict[str, Any] = {}

    def setup(self, stage: str) -> None:
        self.train_set, self.val_sets = tensors(14, 0), [tensors(5, 1), tensors(3, 2)]

    def arguments(self) -> dict[str, Any]:
        return (
            {"num_workers": self.workers, "multiprocessing_context": "fork"} if self.workers else {}
        )

    def train_dataloader(self) -> DataLoader[Any]:
        data, args = self.train_set, self.arguments()
        if self.order == "stream-unbatched":
            stream = WorkerShardedSamples(tensors(STREAM_SAMPLES, 0))
            return DataLoader(stream, batch_size=None, **args)
        if self.order.startswith("stream-"):
            stream = train_stream(self.order.removeprefix("stream-"))
            return DataLoader(stream, 4, collate_fn=rows_to_tensors, **args)
        if self.order == "seeded":
            sampler = SeededRandomSampler(data, seed=1)
            return DataLoader(data, 4, sampler=sampler, drop_last=self.drop_last, **args)
        generator = torch.Generator().manual_seed(7) if self.order == "generator" else None
        return DataLoader(
            data, 4, shuffle=True, drop_last=self.drop_last, generator=generator, **args
        )

    def val_dataloader(self) -> Any:
        loaders = [
            DataLoader(data, 2, shuffle=self.val_shuffle, **self.arguments())
            for data in self.val_sets
        ]
        if self.vals == "one":
            return loaders[0]
        return loaders if self.vals == "two" else {"a": loaders[0], "b": loaders[1]}

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restored = state


class Model(pl.LightningModule):
    def __init__(self, dropout: float = 0.5, fail_at: int = -1, interrupt: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.Dropout(dropout), torch.nn.Linear(8, 1)
        )
        self.fail_at, self.interrupt = fail_at, interrupt

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.global_step == self.fail_at:
            raise KeyboardInterrupt if self.interrupt else RuntimeError("boom in a step")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class MemoryLogger(load_example("lightning_datamodule").MemoryLogger):  # type: ignore[misc]
    """Keeps what Lightning logs, and the hyperparameters."""

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.hparams = dict(params)


@dataclass(frozen=True)
class Run:
    """One fit: the DataModule's and the Trainer's settings."""

    data: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=lambda: {"max_epochs": 2})
    dropout: float = 0.5
    early_stopping: bool = False
    checkpoint_every: int = 0
    seed: int = 3


@dataclass
class Outcome:
    logged: list[tuple[int, dict[str, float]]]
    global_step: int
    weights: dict[str, torch.Tensor]
    logger: MemoryLogger
    data: Data


def monitored(run: Run) -> str:
    return "val_loss" if run.data.get("vals", "one") == "one" else "val_loss/dataloader_idx_0"


def fit(
    run: Run,
    plain: bool,
    folder: Path | None = None,
    resume: Path | None = None,
    model: Model | None = None,
) -> Outcome:
    pl.seed_everything(run.seed, verbose=False)
    callbacks: list[pl.Callback] = []
    if run.early_stopping:
        callbacks.append(EarlyStopping(monitored(run), patience=0, min_delta=0.05))
    if folder is not None and run.checkpoint_every:
        every = ModelCheckpoint(folder, "{step}", every_n_train_steps=run.checkpoint_every)
        callbacks.append(every)
        every.save_top_k = -1
    logger = MemoryLogger()
    trainer = pl.Trainer(
        accelerator="cpu", logger=logger, log_every_n_steps=1, callbacks=callbacks,
        enable_checkpointing=bool(callbacks and folder), enable_progress_bar=False,
        enable_model_summary=False, **run.trainer,
    )  # fmt: skip
    model = model or Model(run.dropout)
    data = Data(**run.data)
    trainer.fit(model, datamodule=data if plain else InterleavedDataModule(data), ckpt_path=resume)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Outcome(logger.logged, trainer.global_step, weights, logger, data)


def assert_same(a: Outcome, b: Outcome) -> None:
    assert a.logged == b.logged
    assert a.global_step == b.global_step
    for name, value in a.weights.items():
        assert torch.equal(value, b.weights[name]), name


@st.composite
def runs(draw: st.DrawFn) -> Run:
    data = {
        "order": draw(st.sampled_from(["shuffle", "generator", "seeded"])),
        "drop_last": draw(st.booleans()),
        "vals": draw(st.sampled_from(["one", "two", "dict"])),
        "workers": draw(st.sampled_from([0, 2])),
    }
    per_epoch = 3 if data["drop_last"] else 4
    trainer: dict[str, Any] = {}
    if draw(st.booleans()):
        trainer["max_epochs"] = draw(st.integers(1, 3))
    else:
        trainer["max_steps"] = draw(st.integers(2, 9))
    interval = draw(st.sampled_from([None, "int", 0.5]))
    every = draw(st.sampled_from([1, 2, None] if interval == "int" else [1, 2]))
    if interval == "int":
        trainer["val_check_interval"] = draw(st.integers(1, per_epoch))
    elif interval is not None:
        trainer["val_check_interval"] = interval
    trainer["check_val_every_n_epoch"] = every
    trainer["accumulate_grad_batches"] = draw(st.sampled_from([1, 2]))
    trainer["num_sanity_val_steps"] = draw(st.sampled_from([0, 2]))
    trainer["limit_val_batches"] = draw(st.sampled_from([1.0, 1.0, 0]))
    if draw(st.booleans()):
        trainer["gradient_clip_val"] = 0.5
    return Run(
        data,
        trainer,
        dropout=draw(st.sampled_from([0.0, 0.5])),
        early_stopping=draw(st.booleans()) and trainer["limit_val_batches"] != 0,
        checkpoint_every=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 3)),
    )


def fit_or_error(run: Run, plain: bool, folder: Path) -> Outcome | tuple[type, str]:
    """A fit's outcome, or the type and message of the error that ended it (e.g. Lightning's
    EarlyStopping finding no monitored metric when no validation ran)."""
    try:
        return fit(run, plain, folder)
    except Exception as error:
        return type(error), str(error)


def uninterrupted(run: Run, folders: dict[bool, Path]) -> tuple[Outcome, Outcome] | None:
    """Plain and wrapped, uninterrupted, checkpointing into ``folders``: identical, or both
    ended by the same error (Lightning's own), or the wrapper refused a stream whose run
    would have no validation (plain Lightning runs without one): then ``None``."""
    plain, wrapped = (fit_or_error(run, plain, folders[plain]) for plain in (True, False))
    if isinstance(plain, Outcome) and not isinstance(wrapped, Outcome):
        assert wrapped[0] is ValueError and "no validation would run" in wrapped[1]
        return None
    if not isinstance(plain, Outcome) or not isinstance(wrapped, Outcome):
        assert plain == wrapped
        return None
    assert_same(wrapped, plain)
    return plain, wrapped


def check_run(run: Run, tmp: Path) -> None:
    """Plain and wrapped, uninterrupted, then both resumed from the plain run's first
    checkpoint inside an epoch, and the wrapped from its own checkpoint there: identical (a
    SeededRandomSampler resumes the wrapped run exactly, where plain Lightning replays the
    epoch's start: equal to the uninterrupted run without dropout, whose masks move on with
    the RNG's state)."""
    folders = {plain: tmp / str(plain) for plain in (True, False)}
    ends = uninterrupted(run, folders)
    if ends is None:
        return
    _plain, wrapped = ends
    per_epoch = 3 if run.data["drop_last"] else 4
    steps = [int(p.stem.split("=")[1]) for p in folders[True].glob("step=*.ckpt")]
    inside = [s for s in steps if s % -(-per_epoch // run.trainer["accumulate_grad_batches"])]
    if not inside or run.trainer["accumulate_grad_batches"] != 1:
        return  # (Lightning saves no accumulated gradients: resumes at step boundaries only)
    checkpoint = folders[True] / f"step={min(inside)}.ckpt"
    rest = fit(run, plain=False, resume=checkpoint)
    own = fit(run, plain=False, resume=folders[False] / checkpoint.name)  # the wrapper's own
    assert_same(own, rest)
    if run.data["order"] == "seeded":
        assert rest.global_step == wrapped.global_step
        if run.dropout:
            return  # the RNG's state moved on: no run to equal
        for name, value in wrapped.weights.items():
            assert torch.equal(value, rest.weights[name]), name
    else:
        assert_same(rest, fit(run, plain=True, resume=checkpoint))


@st.composite
def stream_runs(draw: st.DrawFn) -> Run:
    """A drawn fit over a stream: max_steps, validation every k batches."""
    data = {
        "order": draw(st.sampled_from(["stream-datasets", "stream-sharded"])),
        "vals": draw(st.sampled_from(["one", "two", "dict"])),
        "workers": draw(st.sampled_from([0, 2])),
        "persistent": draw(st.booleans()),
    }
    data["persistent"] = data["persistent"] and data["workers"] > 0
    trainer: dict[str, Any] = {
        "max_steps": draw(st.integers(2, 9)),
        "max_epochs": draw(st.sampled_from([None, 1, 3])),
        "val_check_interval": draw(st.integers(1, 4)),
        "check_val_every_n_epoch": draw(st.sampled_from([1, None])),
        "accumulate_grad_batches": draw(st.sampled_from([1, 2])),
        "num_sanity_val_steps": draw(st.sampled_from([0, 2])),
        "limit_val_batches": draw(st.sampled_from([1.0, 1.0, 0])),
    }
    return Run(
        data,
        trainer,
        dropout=draw(st.sampled_from([0.0, 0.5])),
        early_stopping=draw(st.booleans()) and trainer["limit_val_batches"] != 0,
        checkpoint_every=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 3)),
    )


def check_stream_run(run: Run, tmp: Path) -> None:
    """Plain and wrapped over a stream, uninterrupted: identical. Then the wrapped run
    resumed from the plain run's first checkpoint and from its own there: identical, and
    (without dropout, whose masks move on with the RNG, and without early stopping) the
    uninterrupted run's weights, which plain Lightning's resume does not give: it reads the
    stream again from its start."""
    folders = {plain: tmp / str(plain) for plain in (True, False)}
    ends = uninterrupted(run, folders)
    if ends is None:
        return
    plain, wrapped = ends
    steps = sorted(int(p.stem.split("=")[1]) for p in folders[True].glob("step=*.ckpt"))
    inside = [step for step in steps if step < plain.global_step]
    if not inside or run.trainer["accumulate_grad_batches"] != 1:
        return  # (Lightning saves no accumulated gradients: resumes at step boundaries only)
    checkpoint = folders[True] / f"step={inside[0]}.ckpt"
    rest = fit(run, plain=False, resume=checkpoint)
    assert_same(fit(run, plain=False, resume=folders[False] / checkpoint.name), rest)
    if run.early_stopping:
        return  # (it may stop elsewhere: Lightning skips the validation due at the checkpoint)
    assert rest.global_step == wrapped.global_step
    if not run.dropout:
        for name, value in wrapped.weights.items():
            assert torch.equal(value, rest.weights[name]), name


SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck)}


@settings(max_examples=6, **SETTINGS)  # type: ignore[arg-type]
@given(runs())
def test_plain_and_wrapped_agree_over_drawn_settings(run: Run) -> None:
    check_run(run, Path(tempfile.mkdtemp(dir=os.environ["FIDELITY_TMP"])))


@pytest.mark.slow
@settings(max_examples=60, **SETTINGS)  # type: ignore[arg-type]
@given(runs())
def test_plain_and_wrapped_agree_over_more_drawn_settings(run: Run) -> None:
    check_run(run, Path(tempfile.mkdtemp(dir=os.environ["FIDELITY_TMP"])))


@pytest.fixture(autouse=True)
def fidelity_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIDELITY_TMP", str(tmp_path))


# --- one regression test per bug of the issue --------------------------------------------


@pytest.mark.parametrize("workers", [0, 2, "persistent"])
@pytest.mark.parametrize("order", ["shuffle", "generator"])
def test_shuffle_true_and_dropout_are_plain_lightnings_run(order: str, workers: Any) -> None:
    data = {"order": order, "workers": 2 if workers == "persistent" else workers, "vals": "two"}
    run = Run({**data, "persistent": workers == "persistent"}, {"max_epochs": 3})
    assert_same(fit(run, plain=False), fit(run, plain=True))


def test_dropout_alone_is_plain_lightnings_run() -> None:
    run = Run({"order": "seeded"}, {"max_epochs": 2, "val_check_interval": 2})
    assert_same(fit(run, plain=False), fit(run, plain=True))


def test_early_stopping_inside_an_epoch_ends_as_plain_lightning() -> None:
    run = Run({"order": "shuffle", "workers": 2}, {"max_epochs": 5, "val_check_interval": 3})
    run = replace(run, early_stopping=True)
    wrapped = fit(run, plain=False)
    assert_same(wrapped, fit(run, plain=True))
    assert wrapped.global_step % 4  # it stopped inside an epoch


@pytest.mark.parametrize(
    "run",
    [
        Run({"order": "shuffle", "workers": 2}, {"max_epochs": 2}),
        Run({"order": "stream-datasets", "workers": 2}, {"max_steps": 8, "val_check_interval": 3}),
    ],
    ids=["shuffle", "stream"],
)
@pytest.mark.parametrize("interrupt", [False, True], ids=["exception", "ctrl-c"])
def test_an_exception_or_ctrl_c_in_a_step_ends_as_in_plain_lightning(
    interrupt: bool, run: Run
) -> None:
    """The step's own exception (Ctrl-C: Lightning's graceful exit), never a ValueError of
    the shutdown hiding it."""
    expected = SystemExit if interrupt else RuntimeError
    for plain in (True, False):
        with pytest.raises(expected):
            fit(run, plain, model=Model(fail_at=5, interrupt=interrupt))


@pytest.mark.parametrize("order", ["seeded", "shuffle"])
def test_a_plain_lightning_checkpoint_resumes_under_the_wrapper(order: str, tmp_path: Path) -> None:
    """With validation every 2 batches: the position follows from the loops' progress, as
    Lightning resumes (shuffle: a new order for the rest of the epoch, as plain Lightning;
    seeded: exactly the uninterrupted run)."""
    run = Run({"order": order}, {"max_epochs": 2, "val_check_interval": 2}, checkpoint_every=3)
    run = replace(run, dropout=0.0 if order == "seeded" else 0.5)  # (the RNG moves on resume)
    uninterrupted = fit(run, plain=True, folder=tmp_path)
    rest = fit(run, plain=False, resume=tmp_path / "step=3.ckpt")
    assert rest.data.restored == {"order": order}  # the user's DataModule state
    if order == "seeded":
        assert rest.weights.keys() == uninterrupted.weights.keys()
        for name, value in uninterrupted.weights.items():
            assert torch.equal(value, rest.weights[name]), name
        later = [(s, m) for s, m in uninterrupted.logged if s >= 3 and "val_loss" in m]
        assert [(s, m) for s, m in rest.logged if "val_loss" in m] == later
    else:
        assert_same(rest, fit(run, plain=True, resume=tmp_path / "step=3.ckpt"))


def test_a_wrapper_checkpoint_loads_in_plain_lightning(tmp_path: Path) -> None:
    run = Run({"order": "shuffle"}, {"max_epochs": 2}, checkpoint_every=3)
    fit(run, plain=False, folder=tmp_path / "wrapped")
    fit(run, plain=True, folder=tmp_path / "plain")
    checkpoint = torch.load(tmp_path / "wrapped" / "step=3.ckpt", weights_only=False)
    assert checkpoint["Data"] == {"order": "shuffle"}  # the user's state, for plain Lightning
    assert checkpoint["InterleavedDataModule"]["interleaved_sampler"]["position"]["update"] == 3
    from_wrapped = fit(run, plain=True, resume=tmp_path / "wrapped" / "step=3.ckpt")
    assert from_wrapped.data.restored == {"order": "shuffle"}
    assert_same(from_wrapped, fit(run, plain=True, resume=tmp_path / "plain" / "step=3.ckpt"))


@pytest.mark.parametrize(
    "change",
    [
        {"max_epochs": 4},
        {"max_epochs": 4, "max_steps": 11},
        {"max_epochs": 3, "val_check_interval": 2},
    ],
    ids=["more-epochs", "max-steps", "val-check-interval"],
)
def test_a_longer_or_changed_run_continues_as_plain_lightning(
    change: dict[str, Any], tmp_path: Path
) -> None:
    """From an epoch-end checkpoint (where plain Lightning resumes exactly too)."""
    run = Run({"order": "seeded"}, {"max_epochs": 2}, checkpoint_every=4)
    fit(run, plain=False, folder=tmp_path)
    longer = replace(run, trainer=change)
    rest = fit(longer, plain=False, resume=tmp_path / "step=4.ckpt")
    assert_same(rest, fit(longer, plain=True, resume=tmp_path / "step=4.ckpt"))
    assert rest.global_step == change.get("max_steps", 4 * change["max_epochs"])


class Reading(Model):
    def on_fit_start(self) -> None:
        self.classes = self.trainer.datamodule.num_classes  # type: ignore[attr-defined]


def test_the_wrapper_is_the_users_datamodule(tmp_path: Path) -> None:
    run = Run({"order": "seeded", "vals": "two"}, {"max_epochs": 1}, checkpoint_every=4)
    model = Reading()
    wrapped = fit(run, plain=False, folder=tmp_path, model=model)
    assert model.classes == 3
    assert wrapped.logger.hparams["vals"] == "two"  # save_hyperparameters reach the logger
    checkpoint = torch.load(tmp_path / "step=4.ckpt", weights_only=False)
    assert checkpoint["datamodule_hyper_parameters"]["order"] == "seeded"
    assert InterleavedDataModule(Data(order="seeded")).hparams["order"] == "seeded"


@pytest.mark.parametrize("limit", [0, 0.0])
def test_no_validation_with_limit_val_batches_zero(limit: float) -> None:
    run = Run({"order": "shuffle", "vals": "two"}, {"max_epochs": 2, "limit_val_batches": limit})
    wrapped = fit(run, plain=False)
    assert_same(wrapped, fit(run, plain=True))
    assert not any("val_loss" in metric for _, m in wrapped.logged for metric in m)


def test_max_time_alone_ends_the_run_as_in_plain_lightning() -> None:
    run = Run({"order": "shuffle"}, {"max_epochs": None, "max_time": {"seconds": 1}})
    wrapped = fit(run, plain=False)
    assert wrapped.global_step > 4  # several epochs, then Lightning's Timer stopped it


def test_lightnings_warnings_about_the_users_loaders_still_appear() -> None:
    run = Run({"order": "shuffle", "val_shuffle": True}, {"max_epochs": 1})
    with pytest.warns(UserWarning, match="shuffling enabled"):
        wrapped = fit(run, plain=False)
    assert_same(wrapped, fit(run, plain=True))


def test_worker_processes_of_a_shuffling_fit_are_the_train_loaders(tmp_path: Path) -> None:
    """One pool for the whole fit: it pauses before each epoch's first batches until the
    epoch's order is drawn, and is never restarted."""
    os.environ["WORKER_LOG"] = str(tmp_path)
    data = LoggedData(order="shuffle", workers=2, vals="two")
    pl.seed_everything(3, verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Model(), datamodule=InterleavedDataModule(data))
    assert len(list(tmp_path.iterdir())) == 2


def record_worker(worker_id: int) -> None:
    Path(os.environ["WORKER_LOG"], str(os.getpid())).touch()


class LoggedData(Data):
    def arguments(self) -> dict[str, Any]:
        return {**super().arguments(), "worker_init_fn": record_worker}


def test_a_checkpoint_of_version_0_3_with_its_view_state_still_resumes(tmp_path: Path) -> None:
    """interleaved-sampler 0.3 wrote a (stateless) train view state into the fit loop's
    combined loader states, which Lightning would refuse now that the view has none."""
    run = Run({"order": "seeded"}, {"max_epochs": 2}, dropout=0.0, checkpoint_every=3)
    uninterrupted = fit(run, plain=False, folder=tmp_path)
    checkpoint = torch.load(tmp_path / "step=3.ckpt", weights_only=False)
    view = {"position": "saved by InterleavedDataModule.state_dict"}
    checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] = [view]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    rest = fit(run, plain=False, resume=tmp_path / "old.ckpt")
    for name, value in uninterrupted.weights.items():
        assert torch.equal(value, rest.weights[name]), name


def test_with_several_devices_no_rank_draws_its_own_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A RandomSampler would draw its order on each rank: Lightning's own DistributedSampler
    order takes its place (global), or the run is refused where Lightning injects none."""
    from types import SimpleNamespace

    from torch.utils.data import DistributedSampler, RandomSampler

    from interleaved_sampler.integrations.lightning import _train_sampler

    data = tensors(6, 0)
    loader = DataLoader(data, 2, shuffle=True)

    def trainer(injects: bool) -> Any:
        return SimpleNamespace(
            world_size=2, _accelerator_connector=SimpleNamespace(use_distributed_sampler=injects)
        )

    monkeypatch.setenv("PL_GLOBAL_SEED", "4")
    sampler = _train_sampler(trainer(True), loader, RandomSampler(data))
    assert isinstance(sampler, DistributedSampler)
    assert (sampler.num_replicas, sampler.shuffle, sampler.seed) == (1, True, 4)
    with pytest.raises(ValueError, match="draw its own order on each rank"):
        _train_sampler(trainer(False), loader, RandomSampler(data))
    seeded = SeededRandomSampler(data, seed=1)
    assert _train_sampler(trainer(False), loader, seeded) is seeded


class Transferring(Model):
    """Its own batch-transfer hooks: scales the inputs before the transfer, counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.transfers = 0

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.transfers += 1
        x, y = batch
        return x * 2, y


class TransferringData(Data):
    """A DataModule with its own ``on_after_batch_transfer``: Lightning calls it instead of
    the module's (there is none here)."""

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        return x + 1, y


def test_the_modules_and_the_datamodules_batch_transfer_hooks_run_as_unwrapped() -> None:
    """The wrapper takes the DataModule's hooks only where it overrides them, as Lightning
    does: a LightningModule's own hooks are called (they were bypassed)."""
    run = Run({"order": "seeded"}, {"max_epochs": 2, "val_check_interval": 2})
    outcomes, calls = [], []
    for plain in (True, False):
        pl.seed_everything(run.seed, verbose=False)
        model, data = Transferring(), TransferringData(**run.data)
        trainer = pl.Trainer(
            accelerator="cpu", logger=MemoryLogger(), log_every_n_steps=1,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            **run.trainer,
        )  # fmt: skip
        trainer.fit(model, datamodule=data if plain else InterleavedDataModule(data))
        outcomes.append(trainer.logger.logged)  # type: ignore[union-attr]
        calls.append(model.transfers)
    assert outcomes[0] == outcomes[1]
    assert calls[0] == calls[1] > 0


@settings(max_examples=6, **SETTINGS)  # type: ignore[arg-type]
@given(stream_runs())
def test_plain_and_wrapped_agree_over_drawn_streams(run: Run) -> None:
    check_stream_run(run, Path(tempfile.mkdtemp(dir=os.environ["FIDELITY_TMP"])))


@pytest.mark.slow
@settings(max_examples=60, **SETTINGS)  # type: ignore[arg-type]
@given(stream_runs())
def test_plain_and_wrapped_agree_over_more_drawn_streams(run: Run) -> None:
    check_stream_run(run, Path(tempfile.mkdtemp(dir=os.environ["FIDELITY_TMP"])))


@pytest.mark.parametrize("kind", ["datasets", "sharded"])
@pytest.mark.parametrize("workers", [0, 2, "persistent"])
def test_a_stream_on_lightnings_defaults_is_plain_lightnings_run(kind: str, workers: Any) -> None:
    """One val loader, dropout, validation every 3 batches, 10 steps."""
    data = {"order": f"stream-{kind}", "workers": 2 if workers == "persistent" else workers}
    trainer = {"max_steps": 10, "val_check_interval": 3}
    run = Run({**data, "persistent": workers == "persistent"}, trainer)
    wrapped = fit(run, plain=False)
    assert_same(wrapped, fit(run, plain=True))
    assert sum("val_loss" in metrics for _, metrics in wrapped.logged) == 3


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"max_epochs": 2}, r"Trainer\(max_steps=...\) with a train loader over an Iterable"),
        ({"max_steps": 4}, r"val_check_interval=1.0\) with a train loader over an Iterable"),
        (
            {"max_steps": 4, "val_check_interval": 2, "check_val_every_n_epoch": 2},
            r"check_val_every_n_epoch=2\) with a train loader over an IterableDataset",
        ),
        (
            {"max_steps": 4, "val_check_interval": 6},
            r"val_check_interval=6\) .* the run has 4 training batches, so no validation",
        ),
    ],
    ids=["no-max-steps", "float-interval", "every-2-epochs", "interval-past-the-end"],
)
def test_settings_a_stream_cannot_follow_are_refused(trainer: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit(Run({"order": "stream-sharded"}, trainer), plain=False)


def test_an_unbatched_stream_is_refused() -> None:
    run = Run({"order": "stream-unbatched"}, {"max_steps": 4, "val_check_interval": 2})
    with pytest.raises(TypeError, match=r"IterableDataset with batch_size=None"):
        fit(run, plain=False)


class Scheduled(Model):
    """Halves the learning rate at each epoch end (Lightning's default scheduler interval)."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def test_a_stream_run_ends_as_plain_lightnings() -> None:
    """Lightning never reaches the last batch of an epoch of a stream that has not run out:
    nor does it under the wrapper (its epoch-interval schedulers step as plain Lightning's,
    the progress says no last batch)."""
    run = Run({"order": "stream-sharded"}, {"max_steps": 6, "val_check_interval": 2})
    ends = []
    for plain in (True, False):
        pl.seed_everything(run.seed, verbose=False)
        trainer = pl.Trainer(
            accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, **run.trainer,
        )  # fmt: skip
        data = Data(**run.data)
        trainer.fit(Scheduled(), datamodule=data if plain else InterleavedDataModule(data))
        progress = trainer.fit_loop.epoch_loop.batch_progress
        ends.append((trainer.optimizers[0].param_groups[0]["lr"], progress.is_last_batch))
    assert ends[0] == ends[1]
