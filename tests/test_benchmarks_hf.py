"""benchmarks/hf_trainer_side_by_side.py runs (quick settings) and checks what it claims; no
timings are asserted."""

from __future__ import annotations

import pytest
from benchmark_scripts import check_main_variants, load, run_quick, table

pytest.importorskip("transformers")
pytest.importorskip("psutil")

VARIANTS = ["non-persistent", "persistent", "interleaved"]


def check_output(lines: list[str]) -> None:
    # 24 steps, an evaluation every 8 (2 sets of 64 and 32 in batches of 16: 4 + 2 batches)
    same = (
        "same samples in every fit: yes (24 training batches, 18 evaluation batches; "
        "final weights bit-identical, the same eval losses)"
    )
    check_main_variants(lines, "interleaved", same)


def test_quick_run_without_workers() -> None:
    lines = run_quick(load("hf_trainer_side_by_side").main, "0")
    check_output(lines)
    rows = table(lines)
    assert [rows[name][2] for name in VARIANTS] == ["0"] * 3  # no worker started


@pytest.mark.slow
def test_quick_run_with_spawn_workers() -> None:
    lines = run_quick(load("hf_trainer_side_by_side").main, "2")
    check_output(lines)
    rows = table(lines)
    # Trainer: a pool per epoch (2 started) and per evaluation of each set (3 x 2);
    # persistent: one per loader (train, two eval sets); InterleavedTrainer: one
    assert [rows[name][2] for name in VARIANTS] == ["16", "6", "2"]


@pytest.mark.slow
def test_quick_run_over_a_stream_with_spawn_workers() -> None:
    lines = run_quick(load("hf_trainer_side_by_side").main, "2", "--stream")
    check_output(lines)
    rows = table(lines)
    # Trainer: one pool for the stream's one epoch (2 workers started) and one per
    # evaluation of each set (3 x 2 x 2); persistent: one per loader; InterleavedTrainer: one
    assert [rows[name][2] for name in VARIANTS] == ["14", "6", "2"]
