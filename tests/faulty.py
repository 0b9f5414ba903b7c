"""Misbehaving samplers, datasets and collate functions for the error and fault tests.

Module level, so that workers started with ``spawn`` can unpickle them.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import Dataset, Sampler, get_worker_info


class LyingSampler(Sampler[int]):
    """Yields ``i % len(data_source)`` for ``i < actual`` (forever if ``actual`` is None),
    but reports ``len() == reported``. Its order is the same every epoch."""

    repeats_epoch_order = True

    def __init__(self, data_source: Sized, reported: int, actual: int | None) -> None:
        self.data_source = data_source
        self.reported = reported
        self.actual = actual

    def __len__(self) -> int:
        return self.reported

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        positions = itertools.count() if self.actual is None else range(self.actual)
        return (i % n for i in positions)


class NoDatasetSampler:
    """A sized iterable of indices that does not expose its dataset."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.length))


class BadLenSampler(Sampler[int]):
    """A sampler whose ``len()`` is not a valid length (negative or not an int)."""

    def __init__(self, data_source: Sized, length: Any) -> None:
        self.data_source = data_source
        self.length = length

    def __len__(self) -> int:
        return self.length  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))


class PidDataset(Dataset[tuple[int, int]]):
    """Item ``i`` is ``(i, pid of the process that loaded it)``."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, os.getpid()


class FailingDataset(PidDataset):
    """Raises ``ValueError`` for item ``fail_at``."""

    def __init__(self, length: int, fail_at: int) -> None:
        super().__init__(length)
        self.fail_at = fail_at

    def __getitem__(self, index: int) -> tuple[int, int]:
        if index == self.fail_at:
            raise ValueError(f"corrupt sample {index}")
        return super().__getitem__(index)


class KillingDataset(PidDataset):
    """Kills its worker process with SIGKILL when loading item ``kill_at`` (only in a worker)."""

    def __init__(self, length: int, kill_at: int) -> None:
        super().__init__(length)
        self.kill_at = kill_at

    def __getitem__(self, index: int) -> tuple[int, int]:
        if index == self.kill_at and get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(index)


class MixedDataset(Dataset[Any]):
    """Even items are ints, odd items are strings: ``default_collate`` cannot stack them."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> Any:
        return index if index % 2 == 0 else str(index)


class LockedDataset(PidDataset):
    """Holds a lock, which cannot be pickled."""

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.lock = threading.Lock()


def as_list(batch: list[Any]) -> list[Any]:
    """A collate function that keeps the samples as they are (no tensors: nothing is shared
    through file descriptors, which a killed worker would take with it)."""
    return batch


def failing_collate(batch: list[Any]) -> Any:
    raise RuntimeError(f"cannot collate {len(batch)} samples")
