"""benchmarks/lightning_side_by_side.py runs (quick settings) and checks what it claims; no
timings are asserted."""

from __future__ import annotations

import pytest
from benchmark_scripts import load, run_quick, table

pytest.importorskip("pytorch_lightning")
pytest.importorskip("psutil")


def check_output(lines: list[str]) -> None:
    variants = ["non-persistent", "persistent", "wrapped"]
    slow = ["persistent, slow set-up", "wrapped, slow set-up"]
    expected = [
        *variants,
        *slow,
        "worker-bound limit",
        "pool start-up (time to first batch, apart)",
    ]
    assert list(table(lines)) == expected
    same = [line for line in lines if line.startswith("same samples in every fit: yes")]
    # 24 updates, a validation every 8 (2 sets: 4 + 2 batches), sanity: 2 + 2 batches
    assert same == [
        "same samples in every fit: yes (24 training batches, 18 validation batches, "
        "4 sanity-check batches; final weights bit-identical)"
    ]
    assert any(line.startswith("- non-persistent / wrapped, wall time: **") for line in lines)
    assert any("the overlap saved" in line for line in lines)


def test_quick_run_without_workers() -> None:
    lines = run_quick(load("lightning_side_by_side").main, "0")
    check_output(lines)
    rows = table(lines)
    assert [rows[name][2] for name in list(rows)[:5]] == ["0"] * 5  # no worker started


@pytest.mark.slow
def test_quick_run_with_spawn_workers() -> None:
    lines = run_quick(load("lightning_side_by_side").main, "2")
    check_output(lines)
    startups = {name: row[2] for name, row in table(lines).items()}
    # one pool for the wrapped fit; a pool per loader (train, two val sets) when persistent
    assert startups["wrapped"] == startups["wrapped, slow set-up"] == "2"
    assert startups["persistent"] == "6"
    assert int(startups["non-persistent"]) > 6


def test_quick_run_with_shuffle_true_measures_the_pause() -> None:
    """--shuffle 1: a shuffle=True train loader; the wrapped fit is non-persistent's run bit
    for bit (its epoch orders taken where Lightning's loader takes them), and a fit with a
    SeededRandomSampler shows what the pause before each epoch costs."""
    lines: list[str] = []
    load("lightning_side_by_side").main(
        ["--quick", "--workers", "0", "--shuffle", "1"], log=lines.append
    )
    assert "wrapped, SeededRandomSampler" in table(lines)
    assert any("the persistent fits saw their own epoch orders" in line for line in lines)
    assert any(line.startswith("- the pause before each epoch's first batches") for line in lines)
