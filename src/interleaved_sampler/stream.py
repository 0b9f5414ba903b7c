"""Streams: an ``IterableDataset`` as the training source of an interleaved run.

The batch sampler cannot hand out indices of a stream. For training batch ``u`` it hands out
a :class:`StreamBatch` token instead: "the next ``size`` samples of copy ``u mod W``". Each
of the ``W`` workers iterates its own copy of the dataset (which shards itself by
``get_worker_info()``, as it does under a plain ``DataLoader``), so the token must reach the
worker whose id is its copy. Torch hands the batch sampler's items to the workers
round-robin (item ``s`` of an iteration to worker ``s mod W``: ``in_order=True`` and a
map-style dataset keep every worker active), so the batch sampler places the token of
update ``u`` on an item ``s`` with ``s mod W = u mod W``, filling the gap after evaluation
batches with :class:`EmptySlot` items that the loader drops in the main process. A worker
that receives another copy's token raises instead of loading wrong samples.

Everything a copy has consumed follows from the run's position by arithmetic
(:func:`copy_samples_before`); a worker brings its copy there by the dataset's own
``load_state_dict`` (from the :class:`CopyState` that came back with the copy's last
consumed batch) or else by replaying it.
"""

from __future__ import annotations

import copy as copying
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info
from torch.utils.data._utils.pin_memory import pin_memory

from interleaved_sampler.checks import describe
from interleaved_sampler.schedule import BatchTag


class Stream:
    """An ``IterableDataset`` as the training source of
    :class:`~interleaved_sampler.InterleavedSampler`, served by the run's one worker pool.

    Each worker of the loader iterates its own copy of ``dataset`` (which shards itself by
    ``torch.utils.data.get_worker_info()``, and by rank under DDP); with ``num_workers=0``
    the main process iterates one copy. Training batch ``u`` is ``batch_size`` consecutive
    samples of copy ``u mod W``, so the training batches are those of ``DataLoader(dataset,
    batch_size, num_workers=W, collate_fn=train_collator)``, in order, whatever evaluation
    passes come between. A copy that runs out starts its next iteration by itself (its
    ``i``-th iteration, from 0, runs after ``set_epoch(i)`` where the dataset has it), so
    every batch is full and the run is as long as ``max_updates``/``max_samples`` say.

    A copy iterates a deep copy of the dataset made when it starts an iteration, so what it
    does (``set_epoch``, ``load_state_dict``) reaches neither the dataset given here nor
    another copy: Hugging Face ``datasets`` keeps the epoch in shared memory.

    Args:
        dataset: the ``torch.utils.data.IterableDataset`` (e.g. a Hugging Face
            ``datasets.IterableDataset``).

    Example:
        >>> from torch.utils.data import IterableDataset
        >>> from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig
        >>> class Counting(IterableDataset):
        ...     def __iter__(self):
        ...         return iter(range(5))
        >>> run = InterleavedSampler(
        ...     Stream(Counting()), InterleavedSamplerConfig(batch_size=2, max_updates=4))
        >>> [batch.tolist() for batch in run.get_data_loader()]  # the copy restarts after 4
        [[0, 1], [2, 3], [4, 0], [1, 2]]
    """

    # a copy is brought to any position (by its state or by replaying it): a run resumes
    # inside the stream's one epoch
    repeats_epoch_order = True

    def __init__(self, dataset: IterableDataset[Any]) -> None:
        if not isinstance(dataset, IterableDataset):
            raise TypeError(
                f"Stream needs a torch.utils.data.IterableDataset, got {describe(dataset)}; "
                "a map-style dataset (with __getitem__ and __len__) is the training source "
                "through a sampler: InterleavedSampler(SeededRandomSampler(dataset), ...)"
            )
        self.dataset = dataset
        self._copy: _Copy | None = None  # this process's copy, made at its first batch

    def __repr__(self) -> str:
        return f"Stream({type(self.dataset).__name__})"

    def __getstate__(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "_copy": None}  # a worker makes its own copy

    def check_workers(self, num_workers: int) -> None:
        """Refuse more workers than the dataset has shards where it says how many (Hugging
        Face ``datasets``: ``num_shards``; worker ``w`` of ``W`` gets the shards ``w, w + W,
        ...``), before the run starts: a worker without a shard yields nothing (E46).

        Raises:
            ValueError: ``num_workers`` is more than the dataset's ``num_shards``.
        """
        shards = getattr(self.dataset, "num_shards", None)
        if isinstance(shards, int) and num_workers > shards:
            raise ValueError(
                f"num_workers={num_workers} is more than the train stream's num_shards="
                f"{shards} ({type(self.dataset).__name__}): the copies of {num_workers - shards} "
                f"worker(s) would get no shard and yield nothing; use at most {shards} workers, "
                "or a stream of more shards (e.g. to_iterable_dataset(num_shards=...))"
            )

    def load(self, batch: StreamBatch) -> tuple[list[Any], CopyState | None]:
        """The samples of ``batch`` from this process's copy, and the copy's state after
        them where the batch asks for it (``None`` for a dataset without
        ``state_dict``/``load_state_dict``).

        Raises:
            RuntimeError: the batch reached another copy's worker, or a loader with another
                number of workers than its batch sampler was built for.
            ValueError: a whole iteration of the copy yielded no sample.
        """
        copy = self._copy_for(batch)
        if copy.consumed != batch.first:
            copy.seek(batch.first, batch.resume)
        samples = copy.advance(batch.size, keep=True)
        return samples, copy.state() if batch.states else None

    def _copy_for(self, batch: StreamBatch) -> _Copy:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 0)
        if workers != batch.workers:
            raise RuntimeError(
                f"a batch of the train stream was built for a loader with num_workers="
                f"{batch.workers} but is loaded with num_workers={workers}: iterate the "
                "loader that get_data_loader(num_workers=...) (or get_loaders) returns, "
                "not sampler.batch_sampler in a DataLoader of your own"
            )
        if worker != batch.stream_copy:
            raise RuntimeError(
                f"training batch of stream copy {batch.stream_copy} reached worker {worker} (of "
                f"{workers}): the loader did not hand its batches to the workers round-robin "
                "in order, so the batch would hold another copy's samples; iterate the loader "
                "that get_data_loader() returns (in_order=True), without re-batching, "
                "re-sharding or reordering it"
            )
        if self._copy is None or self._copy.pid != os.getpid():
            self._copy = _Copy(self.dataset, worker)
        return self._copy


class _Copy:
    """One process's copy of the stream: its iterations, one after another, as one endless
    sequence of samples, and how many of them were consumed."""

    def __init__(self, dataset: Any, index: int) -> None:
        self.dataset, self.index, self.pid = dataset, index, os.getpid()
        self.stateful = callable(getattr(dataset, "state_dict", None)) and callable(
            getattr(dataset, "load_state_dict", None)
        )
        self.consumed = 0  # samples taken from the copy, over all its iterations
        self.iteration = -1  # the iteration under way (-1: none started)
        self.working: Any = None  # the deep copy the iteration reads
        self.iterator: Iterator[Any] | None = None  # None: start the next iteration
        self.whole = True  # the iteration under way started at its beginning
        self.yielded = 0  # samples the iteration under way yielded

    def advance(self, count: int, keep: bool) -> list[Any]:
        """Take the next ``count`` samples (``keep``: return them), starting the next
        iteration whenever one ends."""
        kept: list[Any] = []
        while count:
            if self.iterator is None:
                self._start(self.iteration + 1)
            assert self.iterator is not None
            got = 0
            for sample in islice(self.iterator, count):
                got += 1
                if keep:
                    kept.append(sample)
            self.yielded, self.consumed, count = (
                self.yielded + got,
                self.consumed + got,
                count - got,
            )
            if count:  # the iteration ended
                if self.whole and not self.yielded:
                    raise ValueError(
                        f"copy {self.index} of the train stream ({type(self.dataset).__name__}) "
                        f"yielded no sample in a whole iteration (iteration {self.iteration}); "
                        "every copy must yield samples: a dataset that shards itself by "
                        "worker needs at least as many shards as num_workers (Hugging Face "
                        "datasets: num_shards >= num_workers)"
                    )
                self.iterator = None
        return kept

    def seek(self, consumed: int, state: CopyState | None) -> None:
        """Bring the copy to ``consumed`` samples: from ``state`` (the copy's state there),
        else by taking the samples in between (from the start if it is past them)."""
        if state is not None and self.stateful:
            self._start(state.iteration, state.state)
            self.consumed = consumed
            return
        if self.consumed > consumed:
            self.iteration, self.iterator, self.consumed = -1, None, 0
        self.advance(consumed - self.consumed, keep=False)

    def state(self) -> CopyState | None:
        if not self.stateful:
            return None
        return CopyState(self.index, self.consumed, self.iteration, self.working.state_dict())

    def _start(self, iteration: int, state: Any = None) -> None:
        try:
            working = copying.deepcopy(self.dataset)
        except Exception as error:
            raise TypeError(
                f"the train stream's dataset ({type(self.dataset).__name__}) cannot be deep-"
                f"copied, got {type(error).__name__}: {error}; each copy of a stream iterates "
                "a deep copy of it, so that set_epoch and load_state_dict reach no other copy: "
                "keep what cannot be copied (open files, locks) out of the dataset object, or "
                "create it in __iter__"
            ) from error
        set_epoch = getattr(working, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(iteration)
        if state is not None:
            working.load_state_dict(state)
        self.working, self.iterator = working, iter(working)
        self.iteration, self.whole, self.yielded = iteration, state is None, 0


class StreamBatch(list[int]):
    """The token of one training batch of a stream: the next ``size`` samples of copy
    ``copy`` (attribute ``stream_copy``), which has consumed ``first`` samples before it. An
    empty list (a stream has no indices); the worker whose id is ``copy`` loads it.

    Args:
        copy: the copy (and so the worker) the batch comes from.
        workers: the loader's ``num_workers`` the batch sampler was built for.
        first: the copy's samples consumed before this batch.
        size: the samples of the batch (this rank's).
        resume: the copy's state at ``first``, for the first batch of a copy in an
            iteration that resumes from a state.
        states: return the copy's state after the batch with it (for a loader that keeps
            them).
        tag: the batch's tag (tagged loaders only).
    """

    source_index = 0

    def __init__(
        self,
        copy: int,
        workers: int,
        first: int,
        size: int,
        resume: CopyState | None = None,
        states: bool = False,
        tag: BatchTag | None = None,
    ) -> None:
        super().__init__()
        self.stream_copy, self.workers, self.first, self.size = copy, workers, first, size
        self.resume, self.states, self.tag = resume, states, tag

    def __repr__(self) -> str:
        return f"StreamBatch(copy={self.stream_copy}, first={self.first}, size={self.size})"


class EmptySlot(list[int]):
    """A dispatch slot with nothing to load: it makes the next stream batch reach the worker
    of its copy. The worker returns it as it is and the loader drops it."""

    source_index = -1


@dataclass(frozen=True)
class CopyState:
    """Where one copy of a stream stands after a batch.

    Args:
        copy: the copy.
        consumed: the samples taken from it, over all its iterations.
        iteration: its iteration under way (0 first).
        state: its dataset's ``state_dict()`` there.
    """

    copy: int
    consumed: int
    iteration: int
    state: Any

    def as_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "iteration": self.iteration, "state": self.state}


@dataclass(frozen=True)
class StreamData:
    """A loaded stream batch on its way to the main process with its copy's state after it
    (the loader records the state once the loop consumes the batch, and unwraps it)."""

    data: Any
    state: CopyState

    def pin_memory(self) -> StreamData:
        """A copy whose ``data`` is in pinned memory (the DataLoader's pin thread calls this)."""
        return replace(self, data=pin_memory(self.data))  # type: ignore[no-untyped-call]


def copy_samples_before(update: int, copy: int, copies: int, size: int) -> int:
    """The samples copy ``copy`` of ``copies`` gave to the first ``update`` training batches
    of ``size`` samples (batch ``u`` comes from copy ``u mod copies``).

    Example:
        >>> [copy_samples_before(5, c, copies=2, size=4) for c in (0, 1)]  # 3 and 2 batches
        [12, 8]
    """
    return max(0, -(-(update - copy) // copies)) * size


def read_copy_states(
    records: object, update: int, copies: int, size: int
) -> list[CopyState | None]:
    """The copies' states saved with a position after ``update`` training batches.

    Args:
        records: the state's ``"stream"`` entry: one record (or ``None``) per copy.
        update: the training batches before the position.
        copies: the copies of this run.
        size: the samples of a training batch (this rank's).

    Raises:
        ValueError: the records are not one per copy, or disagree with the position.
    """
    if records is None:
        return [None] * copies
    if not isinstance(records, Sequence) or len(records) != copies:
        raise ValueError(
            f"the state's stream entry must hold one record (or None) per copy of the stream "
            f"({copies}), got {describe(records)}"
        )
    states: list[CopyState | None] = []
    for copy, record in enumerate(records):
        if record is None:
            states.append(None)
            continue
        keys = {"consumed", "iteration", "state"}
        if not isinstance(record, Mapping) or not keys <= set(record):
            raise ValueError(
                f"the state's stream record of copy {copy} must be a dict with the keys "
                f"{', '.join(sorted(keys))}, got {describe(record)}"
            )
        expected = copy_samples_before(update, copy, copies, size)
        if record["consumed"] != expected:
            raise ValueError(
                f"the state's stream record of copy {copy} is after {record['consumed']!r} "
                f"samples, but its position (after update {update}) has {expected} from that "
                "copy: the record belongs to another position"
            )
        states.append(CopyState(copy, expected, record["iteration"], record["state"]))
    return states


def stream_processes(num_replicas: int) -> int:
    """The processes of a run over a stream, each with its own copies: ``num_replicas``
    of a global run, else the size of the default process group (1 without one)."""
    if num_replicas > 1:
        return num_replicas
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
