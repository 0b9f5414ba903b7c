"""The examples run and do what their docstrings say."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart() -> None:
    main = runpy.run_path(str(EXAMPLES / "quickstart.py"))["main"]
    kinds = main(num_workers=0)
    # 6 updates per epoch (100 // 16); val (3 batches) after updates 4, 8, 12; test (1 batch)
    # after updates 6 and 12
    train, val, test = ["train"], ["val"] * 3, ["test"]
    epoch1 = train * 4 + val + train * 2 + test
    epoch2 = train * 2 + val + train * 4 + val + test
    assert kinds == epoch1 + epoch2
