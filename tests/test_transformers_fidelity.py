"""InterleavedTrainer against Trainer on Trainer's own settings, drawn by hypothesis: no
sampler override, one eval set or a dict, dropout, early stopping, workers, a map-style or a
streaming (``IterableDataset``) train set; log_history and weights bit for bit,
uninterrupted and resumed from the same checkpoint (each trainer's own, Trainer's checkpoint
under InterleavedTrainer, and the other way round)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import WorkerShardedSamples
from test_transformers import assert_same
from torchrun_worker import load_example
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from interleaved_sampler.integrations.transformers import InterleavedTrainer

example = load_example("hf_trainer")


@dataclass(frozen=True)
class Setting:
    """One drawn run: ``TrainingArguments`` and what the run is made of."""

    arguments: dict[str, Any]
    train_size: int
    one_eval_set: bool
    dropout: float
    early_stopping: bool
    stream: str = ""  # the train set: "" map-style, "datasets" or "sharded" a stream

    def trained(self, plain: bool, output: Path) -> Trainer:
        """A trainer that has trained (built right before, as Trainer seeds at init)."""
        trainer = self.trainer(plain, output)
        trainer.train()
        return trainer

    def trainer(self, plain: bool, output: Path, **changes: Any) -> Trainer:
        trainer_class = Trainer if plain else InterleavedTrainer
        eval_sets = {"a": example.regression(5, 1), "b": example.regression(6, 2)}
        callbacks = [EarlyStoppingCallback(early_stopping_patience=1)]
        return trainer_class(
            model=example.Regression(self.dropout),
            args=TrainingArguments(
                output_dir=str(output), **{**FIXED, **self.arguments, **changes}
            ),
            train_dataset=train_set(self.stream, self.train_size),
            eval_dataset=eval_sets["a"] if self.one_eval_set else eval_sets,
            callbacks=callbacks if self.early_stopping else None,
        )


# Rows of a train stream: more than a run of the tests reads from any worker's copy, so the
# runs end before a copy runs out (where the wrapper's copies restart and Trainer's epoch ends).
STREAM_ROWS = 400


def train_set(stream: str, size: int) -> Any:
    """The train set: ``size`` regression rows, or a stream of :data:`STREAM_ROWS` of them (a
    Hugging Face ``datasets`` stream of 4 shards, which has ``state_dict``, or
    one sharded by worker without ``state_dict``)."""
    if stream == "sharded":
        return WorkerShardedSamples(example.regression(STREAM_ROWS, 0))
    if stream == "datasets":
        from datasets import Dataset

        rows = example.regression(STREAM_ROWS, 0)
        table = {key: [row[key].tolist() for row in rows] for key in ("x", "labels")}
        return Dataset.from_dict({**table, "id": list(range(STREAM_ROWS))}).to_iterable_dataset(
            num_shards=4
        )
    return example.regression(size, 0)


FIXED: dict[str, Any] = {
    "report_to": [],
    "use_cpu": True,
    "disable_tqdm": True,
    "per_device_eval_batch_size": 2,
    "learning_rate": 0.05,
    "save_only_model": False,
}


@st.composite
def drawn_settings(draw: st.DrawFn) -> Setting:
    strategy = draw(st.sampled_from(["steps", "epoch", "no"]))
    eval_steps = draw(st.integers(1, 4))
    best = strategy != "no" and draw(st.booleans())
    save_steps = eval_steps * draw(st.integers(1, 2)) if best else draw(st.integers(2, 5))
    one_eval_set = draw(st.booleans())
    workers = draw(st.sampled_from([0, 0, 2]))
    arguments = {
        "eval_strategy": strategy,
        "eval_steps": eval_steps,
        "eval_delay": draw(st.integers(0, 3)),
        "num_train_epochs": draw(st.integers(1, 3)),
        "max_steps": draw(st.sampled_from([-1, -1, 5, 9])),
        "per_device_train_batch_size": draw(st.integers(2, 5)),
        "gradient_accumulation_steps": draw(st.integers(1, 3)),
        "dataloader_drop_last": draw(st.booleans()),
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": workers > 0 and draw(st.booleans()),
        "logging_steps": draw(st.integers(1, 3)),
        "save_strategy": strategy if best else "steps",
        "save_steps": save_steps,
        "seed": draw(st.integers(0, 3)),
        "load_best_model_at_end": best,
        "metric_for_best_model": ("eval_loss" if one_eval_set else "eval_a_loss") if best else None,
    }
    return Setting(
        arguments,
        train_size=draw(st.integers(9, 20)),
        one_eval_set=one_eval_set,
        dropout=draw(st.sampled_from([0.0, 0.3])),
        early_stopping=best and draw(st.booleans()),
    )


@st.composite
def drawn_stream_settings(draw: st.DrawFn) -> Setting:
    """A drawn setting over a stream, which Trainer trains for ``max_steps`` only."""
    setting = draw(drawn_settings())
    arguments = {**setting.arguments, "max_steps": draw(st.integers(3, 10))}
    return replace(setting, arguments=arguments, stream=draw(st.sampled_from(STREAMS)))


STREAMS = ["datasets", "sharded"]


def checkpoints(output: Path) -> list[Path]:
    return sorted(output.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))


PLAIN_WRAPPED = [(True, "plain"), (False, "wrapped")]


def check_same_as_trainer(setting: Setting, data: st.DataObject, tmp: Path) -> None:
    plain, wrapped = (setting.trained(plain, tmp / name) for plain, name in PLAIN_WRAPPED)
    assert_same(wrapped, plain)
    # not the last: Trainer resumed from its final checkpoint trains one step past max_steps
    saved = [c for c in checkpoints(tmp / "plain") if int(c.name[11:]) < plain.state.global_step]
    if not saved:
        return
    checkpoint = data.draw(st.sampled_from(saved), label="checkpoint")
    more = data.draw(st.integers(0, 1), label="more")
    longer: dict[str, Any] = (
        {"max_steps": setting.arguments["max_steps"] + 3 * more}
        if setting.stream
        else {"num_train_epochs": setting.arguments["num_train_epochs"] + more}
    )
    if setting.stream:  # Trainer reads the stream again from its start
        longer["ignore_data_skip"] = data.draw(st.booleans(), label="ignore_data_skip")
    resumed = {}
    for name, plain_trainer, folder in [
        ("plain", True, checkpoint),  # Trainer's own resume
        ("wrapped", False, tmp / "wrapped" / checkpoint.name),  # from the position saved
        ("wrapped-from-plain", False, checkpoint),  # a checkpoint from before the switch
        ("plain-from-wrapped", True, tmp / "wrapped" / checkpoint.name),
    ]:
        trainer = setting.trainer(plain_trainer, tmp / f"resumed-{name}", **longer)
        trainer.train(resume_from_checkpoint=str(folder))
        resumed[name] = trainer
    for name in ("wrapped", "wrapped-from-plain", "plain-from-wrapped"):
        assert_same(resumed[name], resumed["plain"])


def drawn(max_examples: int) -> Any:
    """Hypothesis settings for ``max_examples`` drawn runs of a few trainers each."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@drawn(6)
@given(setting=drawn_settings(), data=st.data())
def test_the_same_run_and_resume_as_trainer_on_drawn_settings(
    setting: Setting, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    check_same_as_trainer(setting, data, tmp_path_factory.mktemp("hf"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
@drawn(40)
@given(setting=drawn_settings(), data=st.data())
def test_the_same_run_and_resume_as_trainer_on_many_drawn_settings(
    setting: Setting, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    check_same_as_trainer(setting, data, tmp_path_factory.mktemp("hf"))


@drawn(6)
@given(setting=drawn_stream_settings(), data=st.data())
def test_the_same_run_and_resume_as_trainer_on_a_stream(
    setting: Setting, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An ``IterableDataset`` train set with ``max_steps``: Trainer's batches (each worker's
    copy, round-robin), evaluations, resume (Trainer replays the stream; the wrapper brings
    each copy to its position by its state or by replay) and log, bit for bit."""
    check_same_as_trainer(setting, data, tmp_path_factory.mktemp("hf-stream"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
@drawn(40)
@given(setting=drawn_stream_settings(), data=st.data())
def test_the_same_run_and_resume_as_trainer_on_many_drawn_streams(
    setting: Setting, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    check_same_as_trainer(setting, data, tmp_path_factory.mktemp("hf-stream"))


# --- the bugs a new user met, one test each -------------------------------------------------


DEFAULTS = Setting(
    {"eval_strategy": "steps", "eval_steps": 3, "save_steps": 4, "seed": 1},
    train_size=30,
    one_eval_set=True,
    dropout=0.3,
    early_stopping=False,
)


@pytest.mark.parametrize("strategy", ["steps", "epoch"])
def test_one_eval_set_and_dropout_on_trainers_defaults(strategy: str, tmp_path: Path) -> None:
    """``eval_dataset=dataset``, Trainer's own sampler, a model with dropout: identical to
    Trainer (it crashed with OutOfTurnError after the first evaluation)."""
    setting = Setting({**DEFAULTS.arguments, "eval_strategy": strategy}, 30, True, 0.3, False)
    trainers = [setting.trained(plain, tmp_path / str(plain)) for plain in (True, False)]
    assert_same(*trainers)
    assert sum("eval_loss" in entry for entry in trainers[1].state.log_history) >= 2


WORKERS = {"dataloader_num_workers": 2, "dataloader_persistent_workers": True}


@pytest.mark.parametrize("workers", [{}, WORKERS], ids=["no-workers", "persistent-workers"])
@pytest.mark.parametrize("step", [2, 4, 8], ids=["mid-epoch", "epoch-end", "second-epoch-end"])
def test_a_resume_on_trainers_own_sampler_is_trainers_resume(
    step: int, workers: dict[str, Any], tmp_path: Path
) -> None:
    """Trainer resumes exactly inside an epoch on its seedable sampler; so does the wrapper
    (it raised 'a start inside an epoch needs a train sampler that repeats its epoch
    order'). 30 samples of batch 8: 4 steps per epoch. With persistent workers Trainer reads
    the resumed epoch through a copy of its loader, which draws a seed of its own."""
    arguments = {**DEFAULTS.arguments, "per_device_train_batch_size": 8, "save_steps": 2}
    setting = Setting({**arguments, **workers}, 30, True, 0.3, False)
    for plain in (True, False):
        setting.trainer(plain, tmp_path / f"whole-{plain}").train()
    resumed = []
    for plain in (True, False):
        trainer = setting.trainer(plain, tmp_path / f"rest-{plain}")
        trainer.train(
            resume_from_checkpoint=str(tmp_path / f"whole-{plain}" / f"checkpoint-{step}")
        )
        resumed.append(trainer)
    assert_same(*resumed)


class FailAtStep(TrainerCallback):
    """Raises its own error at the end of optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise KeyError("the step failed")


@pytest.mark.parametrize("stream", ["", *STREAMS])
def test_an_error_in_a_step_reaches_the_caller_as_itself(stream: str, tmp_path: Path) -> None:
    """Inside an epoch of Trainer's own sampler, or of a stream with workers: the shutdown
    raised over it before."""
    arguments = {**DEFAULTS.arguments, "max_steps": 10, **WORKERS} if stream else {}
    setting = replace(DEFAULTS, arguments={**DEFAULTS.arguments, **arguments}, stream=stream)
    trainer = setting.trainer(False, tmp_path)
    trainer.add_callback(FailAtStep(2))
    with pytest.raises(KeyError, match="the step failed") as error:
        trainer.train()
    assert error.value.__context__ is None and error.value.__cause__ is None


def test_early_stopping_ends_normally_as_trainer(tmp_path: Path) -> None:
    arguments = {
        **DEFAULTS.arguments,
        "eval_steps": 1,
        "save_steps": 1,
        "learning_rate": 5.0,  # diverges: the eval loss rises and early stopping stops
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
    }
    setting = Setting(arguments, 30, True, 0.0, True)
    trainers = [setting.trained(plain, tmp_path / str(plain)) for plain in (True, False)]
    assert_same(*trainers)
    assert trainers[1].state.global_step < trainers[1].state.max_steps  # it stopped early


def test_training_longer_on_resume_continues_as_trainer(tmp_path: Path) -> None:
    """num_train_epochs 2 -> 3 on resume: Trainer continues; so does the wrapper (it refused
    'the state belongs to another schedule'), from its own and from Trainer's checkpoint."""
    setting = Setting({**DEFAULTS.arguments, "num_train_epochs": 2}, 30, False, 0.3, False)
    for plain in (True, False):
        setting.trainer(plain, tmp_path / f"two-{plain}").train()
    resumed = []
    for plain, source in [(True, True), (False, False), (False, True)]:
        trainer = setting.trainer(plain, tmp_path / f"three-{plain}-{source}", num_train_epochs=3)
        trainer.train(resume_from_checkpoint=str(tmp_path / f"two-{source}" / "checkpoint-8"))
        resumed.append(trainer)
    assert_same(resumed[1], resumed[0])
    assert_same(resumed[2], resumed[0])


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("workers", [{}, WORKERS], ids=["no-workers", "persistent-workers"])
def test_a_stream_on_trainers_defaults_is_trainers_run(
    stream: str, workers: dict[str, Any], tmp_path: Path
) -> None:
    """One eval set, dropout, evaluation every 3 steps, resumed at step 4 from each trainer's
    checkpoint (the wrapper's saves the copies' states of a ``datasets`` stream)."""
    arguments = {**DEFAULTS.arguments, "max_steps": 10, **workers}
    setting = replace(DEFAULTS, arguments=arguments, stream=stream)
    whole = [setting.trained(plain, tmp_path / f"whole-{plain}") for plain in (True, False)]
    assert_same(*whole)
    assert sum("eval_loss" in entry for entry in whole[1].state.log_history) == 4  # 3 6 9 10
    resumed = []
    for plain, source in [(True, True), (False, False), (False, True)]:
        trainer = setting.trainer(plain, tmp_path / f"rest-{plain}-{source}")
        trainer.train(resume_from_checkpoint=str(tmp_path / f"whole-{source}" / "checkpoint-4"))
        resumed.append(trainer)
    assert_same(resumed[1], resumed[0])
    assert_same(resumed[2], resumed[0])
