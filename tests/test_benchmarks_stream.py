"""benchmarks/stream_side_by_side.py runs (quick settings) and checks what it claims; no timings
are asserted."""

from __future__ import annotations

import pytest
from benchmark_scripts import check_main_variants, load, run_quick, table

pytest.importorskip("psutil")
pytest.importorskip("datasets")

VARIANTS = ["non-persistent", "persistent", "one pool"]


def check_output(lines: list[str]) -> None:
    # 24 updates, an evaluation every 8 (2 sets of 64 and 32 in batches of 16: 4 + 2 batches)
    same = (
        "same samples in every fit: yes (24 training batches, 18 evaluation batches; "
        "final weights bit-identical)"
    )
    check_main_variants(lines, "one pool", same, ("by the copies' state_dict",))


def test_quick_run_without_workers() -> None:
    lines = run_quick(load("stream_side_by_side").main, "0")
    check_output(lines)
    rows = table(lines)
    assert [rows[name][2] for name in VARIANTS] == ["0"] * 3  # no worker started


@pytest.mark.slow
def test_quick_run_with_spawn_workers() -> None:
    lines = run_quick(load("stream_side_by_side").main, "2")
    check_output(lines)
    rows = table(lines)
    # plain: the stream's pool and one per evaluation of each set (3 x 2); persistent: a
    # pool for the stream and one per set; one pool: one
    assert [rows[name][2] for name in VARIANTS] == ["14", "6", "2"]
