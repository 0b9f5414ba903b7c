"""The package without extras: what ``import interleaved_sampler`` loads, and the command line
when an optional dependency is missing (``--help`` works, a command says which extra to install).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from interleaved_sampler import __version__
from interleaved_sampler.cli import main

OPTIONAL = ("matplotlib", "psutil", "tqdm", "yaml")


# Runs in a fresh interpreter: which modules does importing the library add to torch's?
# (torch itself imports tqdm when it is installed.) Then, with the optional modules made
# unimportable, the library and the command line still import.
IMPORTS = """
import json, sys
import pydantic, torch
before = set(sys.modules)
import interleaved_sampler
added = sorted(set(sys.modules) - before)
for name in %r:
    sys.modules[name] = None
import interleaved_sampler.cli
print(json.dumps(added))
"""


def test_importing_the_library_imports_no_optional_dependency() -> None:
    code = IMPORTS % (OPTIONAL,)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    added = {name.partition(".")[0] for name in json.loads(result.stdout)}
    assert "interleaved_sampler" in added
    assert added.isdisjoint(OPTIONAL)


@pytest.fixture
def without_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every optional dependency fail to import, as after ``pip install .``."""
    for name in [*OPTIONAL, "matplotlib.figure"]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("command", [[], ["demo"], ["plan"], ["bench"]])
def test_help_works_without_extras(
    without_extras: None, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m interleaved_sampler" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"python -m interleaved_sampler {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "package", "extra"),
    [
        (["demo"], "tqdm", "cli"),
        (["plan", "--config", "docs/plan_example.yaml"], "pyyaml", "cli"),
        (
            ["plan", "--length=8", "--batch-size=2", "--max-epochs=1", "--plot=x.png"],
            "matplotlib",
            "plot",
        ),
        (["bench"], "psutil", "bench"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    without_extras: None,
    argv: list[str],
    package: str,
    extra: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    config = Path(__file__).parent.parent / "docs" / "plan_example.yaml"
    argv = [str(config) if arg == "docs/plan_example.yaml" else arg for arg in argv]
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"{argv[0]}: ") and f" needs {package}: " in err
    assert (
        f"pip install -e '.[{extra}]'" in err
        and f"pip install 'interleaved-sampler[{extra}]'" in err
    )
    assert not list(tmp_path.iterdir())  # stopped before writing anything
