"""``python -m interleaved_sampler demo``: evaluations, checkpoint, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interleaved_sampler.cli import main

TINY = ["--epochs", "2", "--batch-size", "64", "--eval-every", "7", "--seed", "3"]


def demo(capsys: pytest.CaptureFixture[str], checkpoint: Path, *options: str) -> list[str]:
    assert main(["demo", *TINY, "--checkpoint", str(checkpoint), *options]) == 0
    return capsys.readouterr().out.splitlines()


def evaluations(lines: list[str]) -> list[str]:
    """The metrics tables: a title line naming source and progress, then the table."""
    return [line for line in lines if line.startswith(("validation", "test", "  "))]


def final_metrics(lines: list[str]) -> str:
    (line,) = [line for line in lines if line.startswith("final metrics: ")]
    return line


def test_demo_evaluates_both_sets_at_their_intervals(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = demo(capsys, tmp_path / "run.pt", "--workers", "0")
    # 2 epochs of 2048 // 64 = 32 updates; validation (256 samples in batches of 64) after 7,
    # 14, ..., 63: 9 passes of 4 batches; test (512 in batches of 128) after 32, 64: 2 x 4
    assert lines[0] == "108 batches from update 0: 64 training, 44 evaluation"
    titles = [line.split(",")[0] + "," + line.split(",")[1] for line in lines if " after " in line]
    validation = [f"validation after epoch {u // 32}, update {u}" for u in range(7, 64, 7)]
    assert sorted(titles) == sorted(
        [*validation, "test after epoch 1, update 32", "test after epoch 2, update 64"]
    )
    assert "validation mae=" in final_metrics(lines) and "test mae=" in final_metrics(lines)


def test_stopped_and_resumed_demo_ends_exactly_like_an_uninterrupted_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    full = demo(capsys, tmp_path / "full.pt", "--workers", "0")
    first = demo(capsys, tmp_path / "part.pt", "--workers", "0", "--stop-after-updates", "20")
    assert "checkpoint: " + str(tmp_path / "part.pt") + " (epoch 0, update 20)" in first
    # an interrupted run says so and how to continue it exactly; it shows no final metrics
    stop = first.index("stopped at update 20 of 64 (--stop-after-updates); continue with:")
    assert first[stop + 1] == (
        "python -m interleaved_sampler demo --resume --epochs 2 --batch-size 64 --workers 0 "
        f"--seed 3 --eval-every 7 --checkpoint {tmp_path / 'part.pt'}"
    )
    assert first[stop + 2].startswith("latest metrics: validation mae=")
    assert not any(line.startswith("final metrics") for line in first)
    resumed = demo(capsys, tmp_path / "part.pt", "--workers", "2", "--resume")
    # validation after 21, 28, ..., 63 (7 passes of 4 batches), test after 32 and 64 (2 x 4)
    assert resumed[0] == "80 batches from update 20: 44 training, 36 evaluation"
    assert evaluations(first) + evaluations(resumed) == evaluations(full)
    assert final_metrics(resumed) == final_metrics(full)
    states = [torch.load(tmp_path / name, weights_only=True) for name in ("full.pt", "part.pt")]
    done = {"epoch": 2, "update": 64, "sample": 4096}
    assert states[0]["progress"] == states[1]["progress"] == done
    assert states[0]["metrics"] == states[1]["metrics"]  # bit for bit
    for name, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][name])


def test_resume_refuses_a_checkpoint_of_another_seed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    demo(capsys, tmp_path / "run.pt", "--workers", "0", "--stop-after-updates", "3")
    with pytest.raises(SystemExit, match="written with --seed 3"):
        main(["demo", *TINY[:-1], "4", "--checkpoint", str(tmp_path / "run.pt"), "--resume"])


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no checkpoint at"):
        main(["demo", "--checkpoint", str(tmp_path / "missing.pt"), "--resume"])
