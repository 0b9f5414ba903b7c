"""The concatenated dataset and the collate dispatch: the *how* of loading a batch.

The batch sampler yields :class:`IndexBatch` objects: lists of global indices that know
which source (0 = training, ``i + 1`` = callback ``i``) they belong to. In a worker the
:class:`InterleavedDataset` loads such a batch from its source dataset in one call and
returns :class:`SourceSamples`; the :class:`InterleavedCollator` then applies that
source's collate function.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from interleaved_sampler.checks import add_source_note, name_of

CollateFn = Callable[[list[Any]], Any]


class IndexBatch(list[int]):
    """Global indices of one batch, all from the source ``source_index``.

    Args:
        indices: the global indices.
        source_index: 0 for the main (training) dataset, ``i + 1`` for callback ``i``.
    """

    source_index: int

    def __init__(self, indices: Any = (), source_index: int = 0) -> None:
        super().__init__(indices)
        self.source_index = source_index


@dataclass(frozen=True)
class SourceSamples:
    """Loaded samples of one batch (what the source's collate function receives) and their
    source."""

    samples: Any
    source_index: int


def source_names(num_callbacks: int) -> list[str]:
    return ["train", *(f"callback{i}" for i in range(num_callbacks))]


class InterleavedDataset(Dataset[Any]):
    """The concatenation of the main dataset and every callback dataset.

    Global index ``offsets[s] + j`` is item ``j`` of source ``s``. A batch is loaded with one
    call to the source's ``__getitems__`` where it has one, else item by item.

    Args:
        datasets: the main dataset first, then one per callback.
        names: the sources' names for error messages (default: ``train``, ``callback{i}``).

    Example:
        >>> ds = InterleavedDataset([list("abc"), list("xy")])
        >>> ds.offsets, ds[3], len(ds)
        ([0, 3], 'x', 5)
    """

    def __init__(self, datasets: Sequence[Any], names: Sequence[str] | None = None) -> None:
        self.datasets = list(datasets)
        self.names = list(names or source_names(len(self.datasets) - 1))
        self.lengths = [len(dataset) for dataset in self.datasets]
        self.offsets = [sum(self.lengths[:i]) for i in range(len(self.datasets))]

    def __len__(self) -> int:
        return sum(self.lengths)

    def __getitem__(self, index: int) -> Any:
        source = bisect.bisect_right(self.offsets, index) - 1
        return self.datasets[source][index - self.offsets[source]]

    def __getitems__(self, indices: list[int]) -> SourceSamples:
        source = getattr(indices, "source_index", None)
        if source is None:
            source = bisect.bisect_right(self.offsets, indices[0]) - 1
        offset, length = self.offsets[source], self.lengths[source]
        local = [index - offset for index in indices]
        if local and not (min(local) >= 0 and max(local) < length):
            bad = next(i for i in local if not 0 <= i < length)
            raise IndexError(
                f"the sampler of {self.names[source]} yielded an index outside its dataset, "
                f"got {bad}; valid: 0..{length - 1} (the dataset has length {length})"
            )
        dataset = self.datasets[source]
        getitems = getattr(dataset, "__getitems__", None)
        try:
            samples = getitems(local) if getitems else [dataset[i] for i in local]
        except Exception as error:
            add_source_note(error, f"while loading a batch of {self.names[source]}: {_head(local)}")
            raise
        return SourceSamples(samples, source)


class InterleavedCollator:
    """Collates a batch with the collate function of the source it came from.

    Args:
        collate_fns: one per source (main first); ``None`` means ``default_collate``.
        names: the sources' names for error messages (default: ``train``, ``callback{i}``).
    """

    def __init__(
        self, collate_fns: Sequence[CollateFn | None], names: Sequence[str] | None = None
    ) -> None:
        self.collate_fns: list[CollateFn] = [fn or default_collate for fn in collate_fns]
        self.names = list(names or source_names(len(self.collate_fns) - 1))

    def __call__(self, batch: SourceSamples) -> Any:
        if not isinstance(batch, SourceSamples):
            raise TypeError(
                "InterleavedCollator needs the SourceSamples that InterleavedDataset.__getitems__ "
                f"returns, got {type(batch).__name__}; use the DataLoader built by "
                "InterleavedSampler.get_data_loader"
            )
        collate_fn = self.collate_fns[batch.source_index]
        try:
            return collate_fn(batch.samples)
        except Exception as error:
            add_source_note(
                error,
                f"while collating a batch of {self.names[batch.source_index]} with "
                f"{name_of(collate_fn)}",
            )
            raise


def _head(indices: list[int], shown: int = 8) -> str:
    """The first few dataset-local indices of a batch, for messages."""
    more = f", ... ({len(indices)} in all)" if len(indices) > shown else ""
    return f"dataset indices [{', '.join(map(str, indices[:shown]))}{more}]"
