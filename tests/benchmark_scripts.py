"""Loading the side-by-side benchmark scripts of ``benchmarks/`` and reading what they print
(shared by their smoke tests)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as module ``name``; ``benchmarks/`` goes on
    ``sys.path`` (where spawned workers find it too), for the scripts' ``side_by_side``."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_quick(main: Callable[..., object], workers: str, *flags: str) -> list[str]:
    """The lines a script's ``main`` prints with ``--quick --workers workers`` and ``flags``."""
    lines: list[str] = []
    main(["--quick", "--workers", workers, *flags], log=lines.append)
    return lines


def table(lines: list[str]) -> dict[str, list[str]]:
    """The printed table's rows below the header: first cell -> the other cells."""
    rows = [line.strip("|").split("|") for line in lines if line.startswith("| ")][1:]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows}


def check_main_variants(lines: list[str], ours: str, same: str, also: tuple[str, ...] = ()) -> None:
    """What a side-by-side script with the variants ``non-persistent``, ``persistent`` and
    ``ours`` prints: the table's rows, the line ``same`` (every fit saw the same samples),
    the ratios to ``ours`` and the ratio lines ``also``."""
    variants = ["non-persistent", "persistent", ours]
    rows = ["worker-bound limit", "pool start-up (time to first batch, apart)"]
    assert list(table(lines)) == [*variants, *rows]
    assert [line for line in lines if line.startswith("same samples in every fit: yes")] == [same]
    for label in (
        f"non-persistent / {ours}, wall time",
        f"persistent / {ours}, wall time",
        f"{ours} / persistent, peak memory",
        f"{ours} - worker-bound limit",
        *also,
    ):
        assert any(line.startswith(f"- {label}: **") for line in lines), label
