"""The examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import interleaved_sampler

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(interleaved_sampler.__path__, "interleaved_sampler.")
    if name != "interleaved_sampler.__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_are_found() -> None:
    # a module list that came out empty would make the test above pass vacuously
    assert {"interleaved_sampler.data", "interleaved_sampler.plan"} <= set(MODULES)
    examples = doctest.DocTestFinder().find(importlib.import_module("interleaved_sampler.data"))
    assert any(test.name.endswith("InterleavedBatch") and test.examples for test in examples)
