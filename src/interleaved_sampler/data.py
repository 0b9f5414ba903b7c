"""The concatenated dataset and the collate dispatch: the *how* of loading a batch.

The batch sampler yields :class:`IndexBatch` objects: lists of global indices that know
which source (0 = training, ``i + 1`` = callback ``i``) they belong to. In a worker the
:class:`InterleavedDataset` loads such a batch from its source dataset in one call and
returns :class:`SourceSamples`; the :class:`InterleavedCollator` then applies that
source's collate function.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate
from torch.utils.data._utils.pin_memory import pin_memory

from interleaved_sampler.checks import name_of
from interleaved_sampler.config import source_names
from interleaved_sampler.schedule import BatchTag, TrainingProgress
from interleaved_sampler.stream import CopyState, EmptySlot, Stream, StreamBatch, StreamData

CollateFn = Callable[[list[Any]], Any]


def map_leaves(fn: Callable[[Any], Any], data: Any, is_leaf: Callable[[Any], bool]) -> Any:
    """``data`` with ``fn`` applied to every leaf in it, at any depth of mappings, lists,
    tuples (named tuples included) and dataclasses; containers are rebuilt, other objects
    kept as they are.

    Args:
        fn: what to make of each leaf.
        data: a collated batch.
        is_leaf: which objects are leaves (checked before looking inside a container).
    """
    if is_leaf(data):
        return fn(data)
    if isinstance(data, Mapping):
        items = {key: map_leaves(fn, value, is_leaf) for key, value in data.items()}
        try:
            return type(data)(items)  # type: ignore[call-arg]
        except TypeError:  # a mapping type that cannot be built from a dict
            return items
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a named tuple
        return type(data)(*(map_leaves(fn, value, is_leaf) for value in data))
    if isinstance(data, list | tuple):
        values = [map_leaves(fn, value, is_leaf) for value in data]
        try:
            return type(data)(values)
        except TypeError:  # a sequence type that cannot be built from a list
            return values if isinstance(data, list) else tuple(values)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        fields = dataclasses.fields(data)
        changes = {f.name: map_leaves(fn, getattr(data, f.name), is_leaf) for f in fields if f.init}
        return replace(data, **changes)
    return data


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], data: Any) -> Any:
    """``data`` with ``fn`` applied to every tensor in it (see :func:`map_leaves`).

    Example:
        >>> batch = {"x": torch.zeros(2), "meta": [torch.ones(1), "id"]}
        >>> map_tensors(lambda t: t + 1, batch)
        {'x': tensor([1., 1.]), 'meta': [tensor([2.]), 'id']}
    """
    return map_leaves(fn, data, lambda leaf: isinstance(leaf, torch.Tensor))


def move_data(data: Any, *args: Any, **kwargs: Any) -> Any:
    """``data`` with every tensor, and every other object with a ``to`` method, replaced by
    its ``.to(*args, **kwargs)`` (see :func:`map_leaves`)."""
    return map_leaves(lambda leaf: leaf.to(*args, **kwargs), data, _has_to)


def _has_to(data: Any) -> bool:
    return callable(getattr(data, "to", None)) and not isinstance(data, type)


class IndexBatch(list[int]):
    """Global indices of one batch, all from the source ``source_index``: 0 for the main
    (training) dataset (the class default, so training batches cost no more than a list),
    ``i + 1`` for callback ``i``."""

    source_index: int = 0
    tag: BatchTag | None = None  # set by the tagged batch sampler only


@dataclass(frozen=True)
class SourceSamples:
    """Loaded samples of one batch (what the source's collate function receives) and their
    source."""

    samples: Any
    source_index: int
    tag: BatchTag | None = None
    indices: list[int] | None = None  # dataset-local indices, for tagged batches only
    copy: CopyState | None = None  # a stream batch's copy after it (stateful datasets only)


class InterleavedDataset(Dataset[Any]):
    """The concatenation of the main dataset and every callback dataset.

    Global index ``offsets[s] + j`` is item ``j`` of source ``s``. A batch is loaded with one
    call to the source's ``__getitems__`` where it has one, else item by item. A training
    source that is a :class:`~interleaved_sampler.Stream` has no indices (length 0 here): its
    batches are :class:`~interleaved_sampler.stream.StreamBatch` tokens, loaded from this
    process's copy of the stream.

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
        self.names = list(names or source_names([None] * (len(self.datasets) - 1)))
        self.lengths = [dataset_length(dataset) for dataset in self.datasets]
        self.offsets = [sum(self.lengths[:i]) for i in range(len(self.datasets))]

    def __len__(self) -> int:
        return sum(self.lengths)

    def __getitem__(self, index: int) -> Any:
        source = bisect.bisect_right(self.offsets, index) - 1
        return self.datasets[source][index - self.offsets[source]]

    def __getitems__(self, indices: list[int]) -> SourceSamples | EmptySlot:
        if isinstance(indices, StreamBatch):
            stream: Stream = self.datasets[0]
            samples, copy = stream.load(indices)
            return SourceSamples(samples, 0, indices.tag, None, copy)
        if isinstance(indices, EmptySlot):
            return indices
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
            error.add_note(f"while loading a batch of {self.names[source]}: {_head(local)}")
            raise
        tag = getattr(indices, "tag", None)
        if tag is None:
            return SourceSamples(samples, source)
        return SourceSamples(samples, source, tag, local)


class InterleavedCollator:
    """Collates a batch with the collate function of the source it came from.

    Args:
        collate_fns: one per source (main first); ``None`` means ``default_collate``.
        names: the sources' names for error messages (default: ``train``, ``callback{i}``).
        tagged: return :class:`InterleavedBatch` objects; every batch must carry its tag.
    """

    def __init__(
        self,
        collate_fns: Sequence[CollateFn | None],
        names: Sequence[str] | None = None,
        tagged: bool = False,
    ) -> None:
        self.collate_fns: list[CollateFn] = [fn or default_collate for fn in collate_fns]
        self.names = list(names or source_names([None] * (len(self.collate_fns) - 1)))
        self.tagged = tagged

    def __call__(self, batch: SourceSamples | EmptySlot) -> Any:
        if isinstance(batch, EmptySlot):
            return batch
        if not isinstance(batch, SourceSamples):
            raise TypeError(
                "InterleavedCollator needs the SourceSamples that InterleavedDataset.__getitems__ "
                f"returns, got {type(batch).__name__}; use the DataLoader built by "
                "InterleavedSampler.get_data_loader"
            )
        collate_fn = self.collate_fns[batch.source_index]
        try:
            data = collate_fn(batch.samples)
        except Exception as error:
            error.add_note(
                f"while collating a batch of {self.names[batch.source_index]} with "
                f"{name_of(collate_fn)}",
            )
            raise
        if self.tagged:
            data = self._tagged(data, batch)
        return data if batch.copy is None else StreamData(data, batch.copy)

    def _tagged(self, data: Any, batch: SourceSamples) -> InterleavedBatch:
        if batch.tag is None:
            raise ValueError(
                "a tagged loader got a batch without its tag: something between the batch "
                "sampler and the workers re-batched the loader's batches into plain lists "
                "(e.g. a framework that shards or re-batches the DataLoader); iterate the "
                "loader that get_data_loader(tagged=True) returns as it is, and split the run "
                "over the ranks with InterleavedSampler(..., num_replicas=, rank=) instead"
            )
        return InterleavedBatch.create(data, batch.tag, batch.indices)


def dataset_length(dataset: Any) -> int:
    """A dataset's length in the concatenation: ``len()``, and 0 for a stream (no indices)."""
    return 0 if isinstance(dataset, Stream) else len(dataset)


@dataclass(frozen=True, eq=False)
class InterleavedBatch:
    """A collated batch with where it comes from and where the run stands: what a loader made
    with ``get_data_loader(tagged=True)`` yields.

    Args:
        data: the collated batch, as the source's collate function returns it.
        source: ``"train"`` or the callback's name (default ``"callback{i}"``).
        source_index: 0 for training batches, ``i + 1`` for callback ``i``.
        progress: the training work completed when the batch is handed out: for a training
            batch the work before it, for a callback pass the work at the update that
            triggered it (``TrainingProgress(0, 0, 0)`` in evaluation mode).
        batch_in_pass: position of the batch in its pass, from 0 (training batches: position
            in the epoch; a stream's, which has no epochs: the updates before it).
        batches_in_pass: number of batches of the pass (training batches: updates per epoch;
            a stream's: the run's updates).
        is_last_in_pass: whether this batch ends its pass (training batches: its epoch, or a
            stream's run).
        indices: the dataset-local indices of the batch's samples (``None`` for the training
            batches of a stream, which has no indices).
        part_size: in a run split over ranks (``num_replicas``), the samples of the global
            batch in this rank's part (0 for a padding part of an evaluation batch, whose one
            sample repeats one of another rank's); else the batch's size.
        global_batch_size: the samples of the global batch, over all ranks.

    A loss that DDP averages over ``W`` ranks equals the global batch's mean loss (also
    for a short last batch split unevenly) when each rank weighs its mean loss by
    ``part_size * W / global_batch_size`` (see ``docs/distributed.md``).

    A run resumes exactly after training batch ``b`` (and the passes that follow it) with
    ``InterleavedSamplerConfig(..., start_update=b.progress.update + 1)``.

    Example:
        >>> from torch.utils.data import SequentialSampler
        >>> from interleaved_sampler import (
        ...     InterleavedSampler, InterleavedSamplerConfig, SamplerIntervalConfig)
        >>> sampler = InterleavedSampler(
        ...     SequentialSampler(range(10, 20)),
        ...     InterleavedSamplerConfig(batch_size=5, max_updates=2),
        ...     callback_samplers=[SamplerIntervalConfig(
        ...         SequentialSampler(range(100, 103)), every_n_updates=2, name="val")],
        ... )
        >>> for b in sampler.get_data_loader(tagged=True):
        ...     print(b.source, b.progress.update, b.batch_in_pass, b.indices, b.data.tolist())
        train 0 0 [0, 1, 2, 3, 4] [10, 11, 12, 13, 14]
        train 1 1 [5, 6, 7, 8, 9] [15, 16, 17, 18, 19]
        val 2 0 [0, 1, 2] [100, 101, 102]
    """

    data: Any
    source: str
    source_index: int
    progress: TrainingProgress
    batch_in_pass: int
    batches_in_pass: int
    is_last_in_pass: bool
    indices: list[int] | None
    part_size: int
    global_batch_size: int

    @classmethod
    def create(cls, data: Any, tag: BatchTag, indices: list[int] | None) -> InterleavedBatch:
        """The batch of collated ``data`` whose samples are ``indices``, tagged with ``tag``."""
        return cls(
            data,
            tag.source,
            tag.source_index,
            tag.progress,
            tag.batch_in_pass,
            tag.batches_in_pass,
            tag.is_last_in_pass,
            indices,
            tag.part_size,
            tag.global_batch_size,
        )

    def pin_memory(self) -> InterleavedBatch:
        """A copy whose ``data`` is in pinned memory (the DataLoader's pin thread calls this)."""
        return replace(self, data=pin_memory(self.data))  # type: ignore[no-untyped-call]

    def to(self, *args: Any, **kwargs: Any) -> InterleavedBatch:
        """A copy whose ``data`` is moved by ``Tensor.to(*args, **kwargs)``, tags kept.

        Every tensor in ``data`` is moved, however nested in dicts, lists, tuples, named
        tuples and dataclasses; so are objects with a ``to`` method. This is what the
        device-transfer helpers of Lightning, Fabric and Accelerate call.

        Args:
            *args: the arguments of ``Tensor.to``, e.g. a device or a dtype.
            **kwargs: its keyword arguments, e.g. ``non_blocking=True``.

        Example:
            >>> import torch
            >>> from interleaved_sampler.schedule import BatchTag, TrainingProgress
            >>> tag = BatchTag("train", 0, TrainingProgress(0, 0, 0), 0, 1, 2, 2)
            >>> b = InterleavedBatch.create({"x": [torch.zeros(2)]}, tag, [0, 1])
            >>> moved = b.to("meta")
            >>> moved.data["x"][0].device, moved.source, moved.indices
            (device(type='meta'), 'train', [0, 1])
        """
        return replace(self, data=move_data(self.data, *args, **kwargs))


def _head(indices: list[int], shown: int = 8) -> str:
    """The first few dataset-local indices of a batch, for messages."""
    more = f", ... ({len(indices)} in all)" if len(indices) > shown else ""
    return f"dataset indices [{', '.join(map(str, indices[:shown]))}{more}]"
