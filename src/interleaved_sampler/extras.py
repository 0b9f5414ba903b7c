"""Optional dependencies: imported only by the commands and tools that need them.

``import interleaved_sampler`` needs torch and pydantic only. The command line's progress bar
and YAML files (extra ``cli``), timeline pictures (``plot``) and the benchmark (``bench``) need
more; :func:`require` imports such a module or says in one line which extra provides it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# module -> (the package that provides it, the extra that installs the package)
OPTIONAL = {
    "tqdm": ("tqdm", "cli"),
    "yaml": ("pyyaml", "cli"),
    "matplotlib": ("matplotlib", "plot"),
    "psutil": ("psutil", "bench"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def install_hint(extra: str) -> str:
    """How to install ``extra``, from a checkout and from a package index.

    Example:
        >>> install_hint("cli")
        "pip install -e '.[cli]' (in a checkout) or pip install 'interleaved-sampler[cli]'"
    """
    return (
        f"pip install -e '.[{extra}]' (in a checkout) or pip install 'interleaved-sampler[{extra}]'"
    )


def require(module: str, purpose: str) -> ModuleType:
    """Import the optional ``module``, or raise :class:`MissingExtraError` naming its extra.

    Args:
        module: a module of a package of :data:`OPTIONAL`, e.g. ``"matplotlib.figure"``.
        purpose: what needs it, e.g. ``"the demo's progress bar"``.

    Raises:
        MissingExtraError: the module is not installed.

    Example:
        >>> require("yaml", "reading YAML files").safe_load("batch_size: 32")
        {'batch_size': 32}
    """
    package, extra = OPTIONAL[module.partition(".")[0]]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{purpose} needs {package}: {install_hint(extra)}") from error
