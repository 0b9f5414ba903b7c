"""benchmarks/gpu_side_by_side.py runs its small configuration (on the CPU here; on a GPU
where there is one) and prints what it measured; no timings are asserted."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from benchmark_scripts import load, table

pytest.importorskip("pytorch_lightning")
pytest.importorskip("psutil")

VARIANTS = ["non-persistent", "persistent", "interleaved", "lightning", "lightning wrapped"]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load("gpu_side_by_side")


def test_help_names_the_options(script: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--small", "--start-method", "--pin-memory", "--no-non-blocking"):
        assert option in out


def test_small_run_with_a_forked_worker(script: ModuleType) -> None:
    lines: list[str] = []
    script.main(["--small", "--workers", "1", "--start-method", "fork"], log=lines.append)
    rows = table(lines)
    assert list(rows) == [
        *VARIANTS,
        "worker-bound limit",
        "pool start-up (time to first batch, apart)",
    ]
    # 24 updates of 16 over 256 samples (2 epochs started); after updates 8, 16 and 24 an
    # evaluation of 64 and 32 samples in batches of 16 (4 + 2 batches)
    same = [line for line in lines if line.startswith("same samples in every run: yes (")]
    assert len(same) == 1
    sources = ["train: 24 batches, 384 samples", "val0: 12 batches, 192 samples"]
    for source in [*sources, "val1: 6 batches, 96 samples"]:
        assert source in same[0]
    assert ("final weights bit-identical" in same[0]) is not torch.cuda.is_available()
    # a pool per epoch and per pass of each set; a pool per loader; one pool
    assert [rows[name][2] for name in VARIANTS] == ["8", "3", "1", "8", "1"]
    for name in VARIANTS:
        busy, idle, to_eval, to_train, waits = rows[name][7:]
        assert float(busy) > 0 and 0 <= float(idle.rstrip("%")) <= 100
        sums = [float(cell.split()[0]) for cell in (to_eval, to_train)]
        assert sum(sums) == pytest.approx(float(waits), abs=2e-3)
    # every run switches 8 times: into both sets 3 times, back to training twice
    first = next(i for i, line in enumerate(lines) if line.startswith("waits at each switch"))
    kinds = {}
    for line in lines[first + 1 :]:
        name, listed = line.removeprefix("- ").split(": ")
        kinds[name] = [wait.split()[0] for wait in listed.split(", ")]
    assert kinds == {name: ["E", "E", "T", "E", "E", "T", "E", "E"] for name in VARIANTS}
    ratios = ["non-persistent / interleaved", "lightning / lightning wrapped"]
    for label in ratios:
        assert any(line.startswith(f"- {label}, switch waits: **") for line in lines), label
