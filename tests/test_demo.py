"""``python -m interleaved_sampler demo``: evaluations, checkpoint, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interleaved_sampler.cli import main

TINY = ["--epochs", "2", "--batch-size", "64", "--eval-every", "7", "--seed", "3"]


def demo(capsys: pytest.CaptureFixture[str], checkpoint: Path, *options: str) -> list[str]:
    return demo_with_bar(capsys, checkpoint, *options)[0]


def demo_with_bar(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, *options: str
) -> tuple[list[str], str]:
    """The demo's printed lines, and the last state of its progress bar (on stderr)."""
    assert main(["demo", *TINY, "--checkpoint", str(checkpoint), *options]) == 0
    out, err = capsys.readouterr()
    return out.splitlines(), err.split("\r")[-1]


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
    assert lines[0] == "108 batches: 64 training, 44 evaluation"
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
    # after batch 28 of the run: 20 updates and the 2 validation passes (4 batches) after 7, 14
    first = demo(capsys, tmp_path / "part.pt", "--workers", "0", "--stop-after-batches", "28")
    assert (
        f"checkpoint: {tmp_path / 'part.pt'} (after batch 28 of 108: epoch 0, update 20)" in first
    )
    # an interrupted run says so and how to continue it exactly; it shows no final metrics
    stop = first.index("stopped after batch 28 of 108 (--stop-after-batches); continue with:")
    assert first[stop + 1] == (
        "python -m interleaved_sampler demo --resume --epochs 2 --batch-size 64 --workers 0 "
        f"--seed 3 --eval-every 7 --checkpoint {tmp_path / 'part.pt'}"
    )
    assert first[stop + 2].startswith("latest metrics: validation mae=")
    assert not any(line.startswith("final metrics") for line in first)
    resumed = demo(capsys, tmp_path / "part.pt", "--workers", "2", "--resume")
    assert resumed[0] == "108 batches: 64 training, 44 evaluation; resuming after batch 28"
    assert evaluations(first) + evaluations(resumed) == evaluations(full)
    assert final_metrics(resumed) == final_metrics(full)
    assert_same_checkpoints(tmp_path / "full.pt", tmp_path / "part.pt")


def test_a_demo_stopped_inside_an_evaluation_pass_resumes_to_the_same_metrics(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    full = demo(capsys, tmp_path / "full.pt", "--workers", "0")
    # batches 1-7 train, 8-11 the first validation pass: stop after 2 of its 4 batches
    first = demo(capsys, tmp_path / "part.pt", "--workers", "0", "--stop-after-batches", "9")
    assert "stopped after batch 9 of 108 (--stop-after-batches); continue with:" in first
    assert evaluations(first) == [] and "latest metrics: none yet" in first
    saved = torch.load(tmp_path / "part.pt", weights_only=True)
    assert saved["loader"]["batches"] == 9 and len(saved["pass_errors"]) == 2
    resumed, bar = demo_with_bar(capsys, tmp_path / "part.pt", "--workers", "0", "--resume")
    assert resumed[0].endswith("; resuming after batch 9")
    assert "| 108/108 [" in bar  # the bar started at batch 9 and ends full
    assert evaluations(resumed) == evaluations(full)  # the first pass ends in the resumed run
    assert final_metrics(resumed) == final_metrics(full)
    assert_same_checkpoints(tmp_path / "full.pt", tmp_path / "part.pt")


def assert_same_checkpoints(full: Path, resumed: Path) -> None:
    """The checkpoints at the end of both runs: the same position, metrics and model."""
    states = [torch.load(path, weights_only=True) for path in (full, resumed)]
    assert states[0]["loader"] == states[1]["loader"]
    assert states[0]["loader"]["batches"] == 108
    assert states[0]["metrics"] == states[1]["metrics"]  # bit for bit
    assert states[0]["pass_errors"] == states[1]["pass_errors"] == []
    for name, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][name])


def test_resume_refuses_a_checkpoint_of_another_seed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    demo(capsys, tmp_path / "run.pt", "--workers", "0", "--stop-after-batches", "3")
    with pytest.raises(SystemExit, match="written with --seed 3"):
        main(["demo", *TINY[:-1], "4", "--checkpoint", str(tmp_path / "run.pt"), "--resume"])


def test_resume_with_more_epochs_trains_on_to_the_new_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    demo(capsys, tmp_path / "run.pt", "--workers", "0", "--stop-after-batches", "3")
    longer = ["--epochs", "3", "--workers", "0"]
    demo(capsys, tmp_path / "run.pt", *longer, "--resume")
    demo(capsys, tmp_path / "whole.pt", *longer)
    resumed, whole = (torch.load(tmp_path / f"{name}.pt") for name in ("run", "whole"))
    assert resumed["loader"]["position"] == whole["loader"]["position"]
    assert resumed["loader"]["position"]["update"] > 0


def test_resume_refuses_a_checkpoint_without_the_loader_state(tmp_path: Path) -> None:
    torch.save({"model": {}, "progress": {"update": 3}}, tmp_path / "old.pt")
    with pytest.raises(SystemExit, match="has no loader state; run without --resume"):
        main(["demo", "--checkpoint", str(tmp_path / "old.pt"), "--resume"])


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no checkpoint at"):
        main(["demo", "--checkpoint", str(tmp_path / "missing.pt"), "--resume"])
