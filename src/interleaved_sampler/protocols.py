"""Structural types shared by the configuration and the sampler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class SizedIterable(Protocol):
    """What a sampler must be: iterable over ``int`` indices, with a ``len()``.

    Every torch sampler is one. To be used by the interleaved sampler it must also expose the
    dataset it indexes as ``.data_source`` or ``.dataset``.
    """

    def __iter__(self) -> Iterator[int]: ...

    def __len__(self) -> int: ...
