"""InterleavedTrainer against Trainer with the same arguments (examples/hf_trainer.py): real
Trainers on CPU, log_history and weights bit for bit; resume, 2 processes, refusals, the
worker processes started."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from helpers import torchrun
from torch.utils.data import IterableDataset
from torchrun_worker import load_example
from transformers import Trainer, TrainerCallback

from interleaved_sampler.integrations.transformers import STATE_FILE, InterleavedTrainer

ROOT = Path(__file__).resolve().parents[1]
example = load_example("hf_trainer")


def assert_same(a: Any, b: Any) -> None:
    assert example.history(a) == example.history(b)
    assert a.state.global_step == b.state.global_step
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), name


def eval_steps(trainer: Any) -> list[int]:
    return [entry["step"] for entry in trainer.state.log_history if "eval_a_loss" in entry]


@pytest.mark.parametrize(
    ("settings", "evaluations"),
    [
        ({}, [5, 10, 15, 20, 24]),  # every 5 steps and the last (12 steps per epoch)
        ({"eval_strategy": "epoch"}, [12, 24]),
        ({"accumulation": 2, "eval_steps": 2}, [2, 4, 6, 8, 10, 12]),  # 6 steps per epoch
        ({"accumulation": 5, "eval_steps": 2}, [2, 4, 6]),  # steps of 5, 5, 2 batches
        ({"max_steps": 7, "eval_steps": 3}, [3, 6, 7]),
        ({"max_steps": 7, "eval_strategy": "epoch"}, [7]),  # Trainer's epoch end at the stop
        ({"eval_batch_size": 5}, [5, 10, 15, 20, 24]),
    ],
    ids=["steps", "epoch", "accumulation", "short-step", "max-steps", "epoch-cut", "eval-batch"],
)
def test_the_same_log_history_and_weights_as_trainer(
    settings: dict[str, Any], evaluations: list[int], tmp_path: Path
) -> None:
    config = replace(example.RunConfig(output=tmp_path), **settings)
    interleaved = example.run(config)
    assert_same(interleaved, example.run(replace(config, plain=True)))
    assert eval_steps(interleaved) == evaluations


def test_the_final_step_of_a_short_accumulation_epoch_is_evaluated(tmp_path: Path) -> None:
    """12 batches with accumulation 5: steps of 5, 5 and 2 batches; eval_steps=3 falls on
    the third step, the end of epoch 1 (batch 12), and the last step (batch 24)."""
    config = example.RunConfig(output=tmp_path, accumulation=5, eval_steps=3)
    interleaved = example.run(config)
    assert_same(interleaved, example.run(replace(config, plain=True)))
    assert eval_steps(interleaved) == [3, 6]


@pytest.mark.slow  # Trainer's 24 spawned workers take about a minute on 2 cores
@pytest.mark.timeout(300)
@pytest.mark.parametrize("eval_sets", [1, 2])
def test_worker_processes_started_equal_dataloader_num_workers(
    eval_sets: int, tmp_path: Path
) -> None:
    config = example.RunConfig(output=tmp_path, workers=2, eval_sets=eval_sets)
    counts, trainers = [], []
    for trainer_class in (InterleavedTrainer, Trainer):
        watcher = WorkerWatcher()
        trainer = trainer_class(
            model=example.Regression(),
            args=example.arguments(config),
            train_dataset=example.regression(90, 0),
            eval_dataset=example.eval_sets(config),
            callbacks=[watcher],
        )
        trainer.train()
        counts.append(len(watcher.workers))
        trainers.append(trainer)
    assert counts == [2, 2 * (2 + eval_sets * 5)]  # Trainer: per epoch, per evaluation and set
    assert_same(*trainers)


class WorkerWatcher(TrainerCallback):
    """Records the DataLoader worker processes alive at every step and evaluation batch."""

    def __init__(self) -> None:
        self.workers: set[int] = set()

    def look(self) -> None:
        for child in psutil.Process().children(recursive=True):
            if "spawn_main" in " ".join(child.cmdline()):
                self.workers.add(child.pid)

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.look()

    def on_prediction_step(self, *args: Any, **kwargs: Any) -> None:
        self.look()


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("hf")
    config = example.RunConfig(output=folder, save_steps=4, eval_strategy="epoch")
    return folder, example.run(config)


@pytest.mark.parametrize("step", [4, 12, 16], ids=["mid-epoch", "epoch-end", "second-epoch"])
def test_resume_continues_exactly_from_the_saved_position(
    checkpointed: tuple[Path, Any], step: int, tmp_path: Path
) -> None:
    folder, uninterrupted = checkpointed
    checkpoint = folder / f"checkpoint-{step}"
    assert json.loads((checkpoint / STATE_FILE).read_text())["batches"] >= step
    rest = example.run(example.RunConfig(output=tmp_path, eval_strategy="epoch", resume=checkpoint))
    assert rest.state.global_step == 24
    for p, q in zip(rest.model.parameters(), uninterrupted.model.parameters(), strict=True):
        assert torch.equal(p, q)
    later = [e for e in example.history(uninterrupted) if e.get("step", 0) > step]
    resumed = [e for e in example.history(rest) if e.get("step", 0) > step]
    assert resumed[:-1] == later[:-1]  # the last entry sums up this train() call only


def test_ignore_data_skip_restarts_the_epochs_data_as_trainer_does(
    checkpointed: tuple[Path, Any], tmp_path: Path
) -> None:
    folder, _ = checkpointed
    config = example.RunConfig(
        output=tmp_path,
        eval_strategy="epoch",
        resume=folder / "checkpoint-16",
        ignore_data_skip=True,
    )
    interleaved = example.run(config)
    assert_same(interleaved, example.run(replace(config, plain=True)))


class EvaluateAtStep3(TrainerCallback):
    """A callback asking for an evaluation the schedule cannot know in advance."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step == 3:
            control.should_evaluate = True
        return control


def test_unplanned_evaluations_are_served_apart(tmp_path: Path) -> None:
    results = []
    for plain in (False, True):
        trainer_class = Trainer if plain else InterleavedTrainer
        trainer = trainer_class(
            model=example.Regression(),
            args=replace_args(
                example.arguments(example.RunConfig(output=tmp_path)), eval_on_start=True
            ),
            train_dataset=example.regression(90, 0),
            eval_dataset={"a": example.regression(7, 1), "b": example.regression(12, 2)},
            callbacks=[EvaluateAtStep3()],
        )
        trainer.train()
        results.append(trainer)
    assert eval_steps(results[0]) == [0, 3, 5, 10, 15, 20, 24]
    assert_same(*results)
    after = [untimed(trainer.evaluate()) for trainer in results]  # Trainer's own, after train
    assert after[0] == after[1]


def untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not any(t in k for t in example.TIMINGS)}


def replace_args(args: Any, **changes: Any) -> Any:
    for key, value in changes.items():
        setattr(args, key, value)
    return args


class Stream(IterableDataset[dict[str, torch.Tensor]]):
    def __iter__(self) -> Any:
        return iter(example.regression(4, 0))


@pytest.mark.parametrize("eval_dataset", ["one", "dict"])
def test_an_iterable_eval_dataset_is_refused(eval_dataset: str, tmp_path: Path) -> None:
    evaluation = Stream() if eval_dataset == "one" else {"a": Stream()}
    name = "eval_dataset" if eval_dataset == "one" else r"eval_dataset\['a'\]"
    args = example.arguments(example.RunConfig(output=tmp_path, max_steps=4))
    with pytest.raises(TypeError, match=rf"IterableDataset as {name} \(Stream\)"):
        InterleavedTrainer(
            model=example.Regression(),
            args=args,
            train_dataset=example.regression(8, 0),
            eval_dataset=evaluation,
        )


def test_an_iterable_train_dataset_on_several_processes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trainer dispatches a stream's batches from process 0; one pool per process cannot."""
    args = example.arguments(example.RunConfig(output=tmp_path, max_steps=4))
    monkeypatch.setattr(type(args), "world_size", property(lambda self: 2))
    with pytest.raises(ValueError, match=r"IterableDataset train set \(Stream\) in one process"):
        InterleavedTrainer(
            model=example.Regression(),
            args=args,
            train_dataset=Stream(),
            eval_dataset=example.regression(4, 1),
        )


def test_split_batches_is_refused(tmp_path: Path) -> None:
    args = example.arguments(example.RunConfig(output=tmp_path))
    args.accelerator_config.split_batches = True
    with pytest.raises(ValueError, match=r"accelerator_config.split_batches=True"):
        InterleavedTrainer(
            model=example.Regression(),
            args=args,
            train_dataset=example.regression(8, 0),
            eval_dataset=example.regression(4, 1),
        )


def test_importing_the_library_does_not_import_transformers() -> None:
    code = "import sys, interleaved_sampler; print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_evaluate_exactly_as_one(tmp_path: Path) -> None:
    """Eval sets of 7 and 12 samples, eval batch 2 per process, learning rate 0 (the same
    weights at every evaluation): 2 processes give exactly one process's eval losses, where
    Trainer's own 2-process losses count the padding duplicates."""
    arguments = ["--learning-rate", "0", "--json"]
    histories = {}
    for trainer in ("interleaved", "plain"):
        out = tmp_path / trainer
        extra = ["--plain"] if trainer == "plain" else []
        torchrun(
            ROOT / "examples" / "hf_trainer.py", ["--output", str(out), *arguments, *extra], 240
        )
        histories[trainer] = json.loads((out / "history.json").read_text())
    one = example.run(example.RunConfig(output=tmp_path / "one", learning_rate=0.0, plain=True))
    for name in ("a", "b"):
        losses = {
            trainer: [e[f"eval_{name}_loss"] for e in history if f"eval_{name}_loss" in e]
            for trainer, history in histories.items()
        }
        single = [e[f"eval_{name}_loss"] for e in example.history(one) if f"eval_{name}_loss" in e]
        assert set(losses["interleaved"]) == {single[0]}  # every evaluation: the same weights
        if name == "a":  # 7 samples: padded to 8 over 2 processes x batch 2
            assert set(losses["plain"]) != {single[0]}  # Trainer's own counts the padding
