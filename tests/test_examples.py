"""The examples run and do what their docstrings say (on tiny settings)."""

from __future__ import annotations

import importlib.util
import runpy
from pathlib import Path
from types import ModuleType

import pytest
from torchrun_worker import load_example

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("workers", ["0", "2"])
def test_train_loop_evaluates_on_schedule_and_learns(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    accuracy = load("train_loop").main(["--epochs", "2", "--val-every", "20", "--workers", workers])
    lines = capsys.readouterr().out.splitlines()
    # 1024 / 32 = 32 updates per epoch: val after 20, 40, 60; test after 32 and 64
    events = [(line.split()[4], int(line.split()[3])) for line in lines]
    assert events == [("val", 20), ("test", 32), ("val", 40), ("val", 60), ("test", 64)]
    assert set(accuracy) == {"val", "test"}
    assert min(accuracy.values()) > 0.9  # two well separated blobs


# 18 updates per epoch, 4 val batches after every 10th update: batch 9 is inside the first
# epoch, 12 inside a pass, 22 at the epoch's end, 40 inside the third pass
@pytest.mark.parametrize("stop_after", ["9", "12", "22", "40"])
def test_resume_example_matches_the_uninterrupted_run(
    stop_after: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--epochs", "3", "--stop-after", stop_after, "--workers", "0"]
    assert load("resume").main(argv) == 0
    out = capsys.readouterr().out
    assert f"stopped after {stop_after} of 74 batches" in out
    assert "stopped + resumed == uninterrupted: log True, weights True" in out


def test_quickstart() -> None:
    main = runpy.run_path(str(EXAMPLES / "quickstart.py"))["main"]
    kinds = main(num_workers=0)
    # 6 updates per epoch (100 // 16); val (3 batches) after updates 4, 8, 12; test (1 batch)
    # after updates 6 and 12
    train, val, test = ["train"], ["val"] * 3, ["test"]
    epoch1 = train * 4 + val + train * 2 + test
    epoch2 = train * 2 + val + train * 4 + val + test
    assert kinds == epoch1 + epoch2


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("stop_after", ["5", "21"])  # after an evaluation batch, at the end
def test_torchdata_example_resumes_exactly(
    workers: str, stop_after: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load("torchdata_resume").main(["--stop-after", stop_after, "--workers", workers])
    out = capsys.readouterr().out
    assert f"21 batches (12 training, 9 evaluation); stopped after {stop_after}" in out


def test_lightning_example_cli(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = load_example("lightning_train").main(["--epochs", "1", "--val-every", "4"])
    assert outcome.global_step == 12
    assert "update   4  val mse" in capsys.readouterr().out


def test_accelerate_example_cli(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = load_example("accelerate_train").main(["--epochs", "1", "--val-every", "4"])
    assert outcome.updates == 12
    assert "update   4  val mse" in capsys.readouterr().out


def test_lightning_datamodule_example_cli(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = load_example("lightning_datamodule").main(["--epochs", "1"])
    assert outcome.global_step == 12
    out = capsys.readouterr().out
    assert "step   4  val_loss/dataloader_idx_0" in out and "global_step 12" in out


def test_hf_trainer_example_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trainer = load_example("hf_trainer").main(["--output", str(tmp_path), "--epochs", "1"])
    assert trainer.state.global_step == 12
    out = capsys.readouterr().out
    assert "step   5  eval_a_loss" in out and "global_step 12" in out
