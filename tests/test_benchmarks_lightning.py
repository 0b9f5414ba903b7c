"""benchmarks/lightning_side_by_side.py runs (quick settings) and checks what it claims; no
timings are asserted."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import torch

pytest.importorskip("pytorch_lightning")
pytest.importorskip("psutil")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lightning_side_by_side.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lightning_side_by_side", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_quick(workers: str) -> list[str]:
    """The lines the script prints with ``--quick --workers workers``."""
    lines: list[str] = []
    load().main(["--quick", "--workers", workers], log=lines.append)
    return lines


def table(lines: list[str]) -> dict[str, list[str]]:
    """The printed table's rows below the header: first cell -> the other cells."""
    rows = [line.strip("|").split("|") for line in lines if line.startswith("| ")][1:]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows}


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
    lines = run_quick("0")
    check_output(lines)
    rows = table(lines)
    assert [rows[name][2] for name in list(rows)[:5]] == ["0"] * 5  # no worker started


@pytest.mark.slow
def test_quick_run_with_spawn_workers() -> None:
    lines = run_quick("2")
    check_output(lines)
    startups = {name: row[2] for name, row in table(lines).items()}
    # one pool for the wrapped fit; a pool per loader (train, two val sets) when persistent
    assert startups["wrapped"] == startups["wrapped, slow set-up"] == "2"
    assert startups["persistent"] == "6"
    assert int(startups["non-persistent"]) > 6


def test_a_fit_that_saw_other_samples_fails_the_check() -> None:
    script = load()
    seen, other = script.Seen(), script.Seen()
    seen.add("train", torch.tensor([[0, 1], [0, 2]]))
    other.add("train", torch.tensor([[0, 2], [0, 1]]))
    weights = {"w": torch.zeros(2)}
    run = script.Run("a", 1.0, 0.5, 0, 0, 1.0, 1.0, 0.0, seen, weights)
    script.check_same([run, replace(run, variant="b")])
    with pytest.raises(script.SampleMismatchError, match="b saw other samples than a"):
        script.check_same([run, replace(run, variant="b", seen=other)])
    with pytest.raises(script.SampleMismatchError, match="other weights"):
        script.check_same([run, replace(run, variant="b", weights={"w": torch.ones(2)})])
