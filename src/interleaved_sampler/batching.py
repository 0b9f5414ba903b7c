"""Turning the schedule into batches of global indices by iterating the real samplers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Protocol

from torch.utils.data import Sampler

from interleaved_sampler.agreement import RankFacts, Ranks, ranks_for
from interleaved_sampler.data import IndexBatch
from interleaved_sampler.samplers import (
    StridedOrder,
    draws_from_global_rng,
    repeats_epoch_order,
    sampler_identity,
    shard_of,
    strided_order,
)
from interleaved_sampler.schedule import (
    NOTHING_DONE,
    BatchTag,
    CallbackPass,
    Position,
    Schedule,
    TrainingProgress,
    TrainingSpan,
)
from interleaved_sampler.sharding import UNSHARDED, Sharding
from interleaved_sampler.state import (
    PER_RANK_REPLICAS,
    STREAM,
    STREAM_COPIES,
    make_state,
    read_state,
)
from interleaved_sampler.stream import (
    CopyState,
    EmptySlot,
    Stream,
    StreamBatch,
    read_copy_states,
    stream_processes,
)

_END = object()


def _no_single_batch_size(batch_sampler: object) -> int:
    """Refuse a framework that reads ``batch_size`` to re-batch or re-shard the batches."""
    raise TypeError(
        f"{type(batch_sampler).__name__} has no single batch_size and must not be re-batched or "
        "re-sharded (it yields training batches and whole evaluation passes in schedule order, "
        "and splits every global batch over the ranks itself). Accelerate: call "
        "accelerator.prepare(model, optimizer) without the loader and build the sampler with "
        "InterleavedSampler(..., num_replicas=accelerator.num_processes, "
        "rank=accelerator.process_index); Lightning: Trainer(use_distributed_sampler=False). "
        "See docs/frameworks.md"
    )


@dataclass(frozen=True)
class Source:
    """One dataset of the run: its sampler, name, place in the concatenation and length.

    Args:
        sampler: the sampler of the dataset.
        name: ``"train"`` or the callback's name.
        dataset: the dataset (the sampler's ``.data_source`` or ``.dataset``).
        offset: where the dataset starts in the concatenation of all datasets.
        length: the sampler's ``len()``.
        collate_fn: the collate function of its batches (``None``: ``default_collate``).
    """

    sampler: Any
    name: str
    dataset: Any
    offset: int
    length: int
    collate_fn: Callable[[list[Any]], Any] | None = None
    split: str = "strided"

    def describe(self) -> str:
        return f"the {self.name} sampler ({type(self.sampler).__name__})"

    def too_few(self, yielded: int, context: str, used: int | None = None) -> ValueError:
        """The error for a sampler that ran out early; ``used``: indices an epoch uses."""
        expected = f"its len() is {self.length}"
        if used is not None and used != self.length:
            expected = f"the epoch uses {used} of its len() = {self.length}"
        return ValueError(
            f"{self.describe()} yielded only {yielded} indices {context}, but {expected}; "
            "len() must equal the number of indices one iteration yields"
        )

    def iterate_from(
        self, position: int, context: str, ranks: Ranks | None = None
    ) -> Iterator[int]:
        """The sampler's indices from ``position`` on (after ``set_epoch``, where it has one).

        Uses the sampler's ``iter_from`` where it has one; else skips the first indices
        without loading any data. With ``ranks`` (a global run's group), a sampler that
        draws its order from the global random generator takes rank 0's order.
        """
        iter_from = getattr(self.sampler, "iter_from", None)
        if iter_from is not None:
            return iter(iter_from(position))
        indices: Iterator[int] = (
            ranks.rank_zero_order(self.sampler)
            if ranks is not None and draws_from_global_rng(self.sampler)
            else iter(self.sampler)
        )
        skipped = sum(1 for _ in islice(indices, position))
        if skipped != position:
            raise self.too_few(skipped, f"{context} while skipping to the resume position")
        return indices

    def reader(
        self,
        position: int,
        sharding: Sharding,
        context: str,
        used: int | None = None,
        chunk: int | None = None,
        ranks: Ranks | None = None,
        order: Iterator[int] | None = None,
    ) -> PartReader:
        """A reader of this rank's parts of the global batches of one iteration (an epoch or
        a pass) of the sampler, from ``position`` on.

        Args:
            position: where in the iteration's order the first batch to read starts.
            sharding: which part of each global batch this rank reads.
            context: where the reading happens, for error messages.
            used: the indices an epoch uses (main sampler), for error messages.
            chunk: split batches into contiguous chunks of this size (else strided).
            ranks: the group of a global run (see :meth:`iterate_from`).
            order: the iteration's indices, already started (:class:`Orders`); read from
                its start (``position`` 0).
        """
        if order is not None:
            return _WholeBatchReader(self, order, sharding, context, used, chunk)
        strided = strided_order(self.sampler)
        if strided is not None and chunk is None:
            return _StridedReader(self, strided, position, sharding)
        indices = self.iterate_from(position, context, ranks)
        return _WholeBatchReader(self, indices, sharding, context, used, chunk)


class PartReader(Protocol):
    """Reads this rank's part of each global batch of one iteration of a sampler, in order."""

    def read(self, first: int, size: int) -> IndexBatch:
        """The part of the global batch at positions ``[first, first + size)`` of the order
        (global indices: the source's offset added)."""
        ...

    def check_exhausted(self) -> None:
        """Raise if the sampler yields more indices than its ``len()`` (callbacks only)."""
        ...


class _WholeBatchReader:
    """Reads every global batch whole from the sampler's iterator and keeps this rank's part.

    For samplers that can only be iterated: every rank requests exactly the indices the
    run without sharding requests, so a sampler that draws random numbers lazily stays in
    step on all ranks.
    """

    def __init__(
        self,
        source: Source,
        indices: Iterator[int],
        sharding: Sharding,
        context: str,
        used: int | None,
        chunk: int | None = None,
    ) -> None:
        self.source, self.indices, self.sharding = source, indices, sharding
        self.context, self.used, self.chunk = context, used, chunk

    def read(self, first: int, size: int) -> IndexBatch:
        batch = list(islice(self.indices, size))
        if len(batch) != size:
            raise self.source.too_few(first + len(batch), self.context, used=self.used)
        if self.sharding.is_sharded:
            part = (
                self.sharding.part(first, size)
                if self.chunk is None
                else self.sharding.chunk(first, size, self.chunk)
            )
            batch = batch[part.start - first : part.stop - first : part.step]
        if self.source.offset:
            return IndexBatch(map(self.source.offset.__add__, batch))
        return IndexBatch(batch)

    def check_exhausted(self) -> None:
        if next(self.indices, _END) is not _END:
            raise ValueError(
                f"{self.source.describe()} yielded more than its len() = {self.source.length} "
                "indices in one pass; len() must equal the number of indices one iteration "
                "yields"
            )


class _StridedReader:
    """Reads only this rank's positions of the order: one strided read (``rank``,
    ``rank + num_replicas``, ...) for samplers whose order can be read at any position."""

    def __init__(
        self,
        source: Source,
        order: StridedOrder,
        position: int,
        sharding: Sharding,
    ) -> None:
        self.source, self.order, self.sharding = source, order, sharding
        start = min(sharding.first_position(position), source.length)
        self.indices = order(start, sharding.num_replicas)

    def read(self, first: int, size: int) -> IndexBatch:
        if self.sharding.pads(first, size):
            indices: Iterator[int] = self.order(self.sharding.part(first, size).start, 1)
            size = 1
        else:
            indices, size = self.indices, len(self.sharding.part(first, size))
        if self.source.offset:
            return IndexBatch(map(self.source.offset.__add__, islice(indices, size)))
        return IndexBatch(islice(indices, size))

    def check_exhausted(self) -> None:
        """Nothing to check: the order's length is the sampler's by construction."""


class Orders:
    """The orders of the samplers that draw theirs when an iteration starts, each started by
    the code that stands for its source's plain loader, when that loader would start it.

    torch's ``RandomSampler`` draws its seed (or, with a ``generator``, its permutation)
    when its iteration starts, so its order depends on the random numbers drawn before that
    moment. A split loader (:mod:`interleaved_sampler.split`) starts its source's next
    iteration with :meth:`start` where a plain ``DataLoader`` starts it (in ``iter()`` with
    workers, at the first batch without); the batch sampler reads that order, and its
    iteration stops before an iteration not started yet (the loader resumes it then).
    Sources whose sampler repeats its order (:func:`repeats_epoch_order`) need none of this.

    Args:
        sources: the run's sources (the main one first).

    Example:
        >>> from torch.utils.data import RandomSampler
        >>> orders = Orders([Source(RandomSampler(range(4)), "train", range(4), 0, 4)])
        >>> orders.needed(0), orders.is_started(0)
        (True, False)
        >>> orders.start(0)  # RandomSampler draws its seed now
        >>> sorted(orders.take(0))
        [0, 1, 2, 3]
    """

    def __init__(self, sources: Sequence[Source]) -> None:
        self._samplers = [source.sampler for source in sources]
        self._started: dict[int, Iterator[int]] = {}  # source index -> an order not read yet
        self._last: dict[int, Iterator[int]] = {}  # source index -> its last order started

    def needed(self, source_index: int) -> bool:
        """Whether the source's iterations are started here: its sampler does not repeat its
        order."""
        return not repeats_epoch_order(self._samplers[source_index])

    def is_started(self, source_index: int) -> bool:
        """Whether the source's next iteration is started and not yet taken for reading."""
        return source_index in self._started

    def start(self, source_index: int, epoch: int | None = None) -> None:
        """Start the source's next iteration now (after ``set_epoch(epoch)`` where ``epoch``
        is given and the sampler has it): its first index is drawn, and with it whatever the
        sampler draws when it starts."""
        sampler = self._samplers[source_index]
        set_epoch = getattr(sampler, "set_epoch", None)
        if epoch is not None and set_epoch is not None:
            set_epoch(epoch)
        indices: Iterator[int] = iter(sampler)
        first = next(indices, None)
        order = indices if first is None else chain((first,), indices)
        self._started[source_index] = self._last[source_index] = order

    def take(self, source_index: int) -> Iterator[int]:
        """The started order of the source's next iteration, to read."""
        return self._started.pop(source_index)

    def finish(self, source_index: int) -> None:
        """Iterate the source's last started order to its end, as torch's ``BatchSampler``
        does after the last batch of an iteration (a ``RandomSampler`` with a ``generator``
        draws there once more). Call it once the batch sampler has read what it needs."""
        order = self._last.pop(source_index, None)
        for _ in order or ():
            pass


class InterleavedBatchSampler(Sampler[list[int]]):
    """Yields the batches of global indices of a run, in the order the loop consumes them.

    Training batches come from the main sampler, iterated once per epoch (after
    ``set_epoch`` where it has one) for exactly the indices the epoch uses; after each
    update, every due callback gets one full pass. ``len()`` is exact and computed by the
    schedule, without iterating anything.

    A stream's training batches are :class:`~interleaved_sampler.stream.StreamBatch` tokens
    (training batch ``u`` from copy ``u mod W``, ``W = max(1, workers)``); with ``W > 1``
    each is preceded by the :class:`~interleaved_sampler.stream.EmptySlot` items that make
    torch's round-robin hand it to the worker of its copy (not counted by ``len()``, dropped
    by the loader).

    It implements the state protocol: :meth:`state_dict` is the position after the batches
    it has produced, and :meth:`load_state_dict` makes the next ``iter()`` continue from
    such a position.

    With :attr:`orders` set (split loaders set it), the iterations of samplers that do not
    repeat their order are started by the loaders (see :class:`Orders`), and an iteration
    of the batch sampler stops (:attr:`paused`) before one not started yet; the next
    ``iter()`` continues there, reading on in the epoch's order.

    Args:
        schedule: the run's schedule.
        sources: the main (training) source, then one per callback in the order of
            ``schedule.callbacks``.
        tagged: attach its :class:`~interleaved_sampler.schedule.BatchTag` to every batch.
        sharding: which part of every global batch this rank yields (default: all of it).
        workers: the ``num_workers`` of the loader it is iterated in (streams only: each
            worker has its own copy of the stream).

    The library's loader (:class:`~interleaved_sampler.InterleavedDataLoader`) sets
    :attr:`served` before each of its iterations: it serves what the batch sampler leaves to
    it (the cached passes, the empty dispatch slots, the stream copies' states, which the
    workers then return with the stream batches). In another loader (torchdata's
    ``StatefulDataLoader``) a stream's batches come bare, and a stream with
    ``workers > 1`` is refused (its empty slots would reach the loop).

    In a global run (``sharding`` over several ranks) with ``torch.distributed``
    initialized over that many processes, the first iteration is a collective: the ranks
    compare their runs (:meth:`Ranks.agree <interleaved_sampler.agreement.Ranks.agree>`)
    and raise the same ``ValueError`` on every rank when they differ; a sampler that draws
    its order from the global random generator takes rank 0's order in every iteration.

    Reading ``batch_size`` raises ``TypeError``: it is how Accelerate and Lightning detect
    a batch sampler they may re-batch or re-shard, which would break the schedule.
    """

    batch_size = property(_no_single_batch_size)

    def __init__(
        self,
        schedule: Schedule,
        sources: Sequence[Source],
        tagged: bool = False,
        sharding: Sharding = UNSHARDED,
        workers: int = 0,
    ) -> None:
        self.schedule = schedule
        self.sources = list(sources)
        self.tagged = tagged
        self.sharding = sharding
        self.workers = workers
        self.served = False  # set by the library's loader for its next iteration
        self.copies = max(1, workers) if schedule.structure.stream else 1
        self.names = [source.name for source in self.sources]
        self.fingerprint = schedule.fingerprint(self.names)
        self.fingerprint["samplers"] = [sampler_identity(source.sampler) for source in sources]
        per_rank = [(shard_of(source.sampler) or (1, 0))[0] for source in self.sources]
        if max(per_rank) > 1:  # per-rank samplers: the schedule is this rank's alone
            self.fingerprint[PER_RANK_REPLICAS] = per_rank
        if schedule.structure.stream:  # the copies' positions depend on both
            processes = stream_processes(sharding.num_replicas)
            self.fingerprint[STREAM] = {"workers": workers, "processes": processes}
        self.ranks = ranks_for(sharding, self.sources)
        self._agreed = self.ranks is None
        self._produced = 0
        self._resume_at = 0
        self._restart_epoch_order = False
        self._resume_copies: list[CopyState | None] = [None] * self.copies
        self.orders: Orders | None = None
        # the training source's reader when the iteration paused
        self._paused: _EpochReader | _StreamReader | None = None

    def __len__(self) -> int:
        return self.schedule.num_batches

    def __iter__(self) -> Iterator[IndexBatch | StreamBatch | EmptySlot]:
        # The resume position is taken when the first batch is asked for, not at iter():
        # DataLoader iterators call iter() on their batch sampler twice when they start.
        if not self._agreed:
            assert self.ranks is not None
            self.ranks.agree(RankFacts.of(self, self.ranks.rank))
            self._agreed = True
        start, self._resume_at = self._resume_at, 0
        restart, self._restart_epoch_order = self._restart_epoch_order, False
        copies, self._resume_copies = self._resume_copies, [None] * self.copies
        served, self.served = self.served, False  # the loader sets it for each iteration
        if self.copies > 1 and not served:
            raise TypeError(
                f"the batch sampler of a loader over a stream with num_workers={self.workers} "
                "hands out empty dispatch slots (so that each stream batch reaches the worker "
                "of its copy) that only that loader drops: iterate the loader that "
                "get_data_loader() or get_loaders() returns; another loader over it "
                "(torchdata's StatefulDataLoader) works with num_workers 0 or 1"
            )
        self._produced = start
        epoch, self._paused = self._paused, None
        if epoch is None:
            if start:  # a position kept at shutdown is checked when a run resumes from it
                self.check_resumable(self.schedule.seek(start), restart)
            epoch = self._training_reader(restart, copies, served)
        slots = 0  # items yielded: torch hands item s to worker s mod num_workers
        for step in self.schedule.steps(self.schedule.seek(start)):
            if not self._is_started(step, epoch):
                self._resume_at, self._paused = self._produced, epoch
                return
            if isinstance(step, TrainingSpan):
                batches = epoch.batches(step, self.tagged)
            else:
                batches = self._callback_pass(step)
            for batch in batches:
                if isinstance(batch, StreamBatch):  # to the worker of its copy
                    for _ in range((batch.stream_copy - slots) % self.copies):
                        slots += 1
                        yield EmptySlot()
                self._produced += 1
                slots += 1
                yield batch

    def _training_reader(
        self, restart: bool, copies: list[CopyState | None], served: bool
    ) -> _EpochReader | _StreamReader:
        source = self.sources[0]
        if isinstance(source.sampler, Stream):  # copy states for the loader that keeps them
            return _StreamReader(self, copies, states=served)
        return _EpochReader(source, self.schedule, self.sharding, restart, self.ranks, self.orders)

    @property
    def paused(self) -> bool:
        """Whether the last iteration stopped before an iteration of a sampler that its
        loader has not started yet (see :class:`Orders`)."""
        return self._paused is not None

    def _is_started(
        self, step: TrainingSpan | CallbackPass, epoch: _EpochReader | _StreamReader
    ) -> bool:
        """Whether the samplers' iterations that ``step`` opens are started (or need not be)."""
        orders = self.orders
        if orders is None:
            return True
        if isinstance(step, TrainingSpan):
            opens = step.first_update // self.schedule.structure.updates_per_epoch != epoch.epoch
            return not opens or not orders.needed(0) or orders.is_started(0)
        index = step.callback + 1
        return bool(step.first_batch) or not orders.needed(index) or orders.is_started(index)

    @property
    def resume_position(self) -> int:
        """The batches before the position the next ``iter()`` starts at (0: the start)."""
        return self._resume_at

    @property
    def resume_copies(self) -> list[CopyState | None]:
        """A stream's copies' states at the position the next ``iter()`` starts at, where
        known (one per copy; ``None``: replayed to it)."""
        return list(self._resume_copies)

    def state_dict(self) -> dict[str, Any]:
        """The position after the batches produced so far (plain, JSON-able data)."""
        return self.state_at(self._produced)

    def state_at(self, batches: int) -> dict[str, Any]:
        """The state of the position after the first ``batches`` batches of the run."""
        return make_state(self.fingerprint, self.schedule, self.names, batches)

    def load_state_dict(self, state: dict[str, Any], *, restart_epoch_order: bool = False) -> None:
        """Make the next ``iter()`` continue right after the position ``state`` names.

        Args:
            state: a state of :meth:`state_dict` (of a loader or batch sampler of this run).
            restart_epoch_order: at a position inside an epoch whose train sampler does not
                repeat its order (torch's ``RandomSampler``), continue the epoch with the
                first indices of a new iteration of the sampler instead of raising: what a
                loader without state does (the epoch's order is new, not exact).

        Raises:
            ValueError: ``state`` belongs to other data or samplers or version, or it is a
                position inside an epoch (or a pass) whose sampler does not repeat its
                order.
        """
        self.load_position(
            self.batches_of(state),
            restart_epoch_order=restart_epoch_order,
            copies=_stream_records(state),
        )

    def load_position(
        self, batches: int, *, restart_epoch_order: bool = False, copies: object = None
    ) -> None:
        """Make the next ``iter()`` continue after the first ``batches`` batches of the run
        (what :meth:`load_state_dict` does with the position of a state).

        Args:
            batches: the batches of the run before the position.
            restart_epoch_order: see :meth:`load_state_dict`.
            copies: a stream's copies' records at the position (a state's ``"stream"``
                entry), to bring each copy there by its dataset's ``load_state_dict``
                instead of replaying it; ``None``: replay.
        """
        position = self.schedule.seek(batches)
        self.check_resumable(position, restart_epoch_order)
        states: list[CopyState | None] = [None] * self.copies
        if self.schedule.structure.stream:
            states = read_copy_states(copies, position.update, self.copies, self._stream_size)
        self.resume_at(batches, restart_epoch_order, states)

    def batches_of(self, state: dict[str, Any]) -> int:
        """The batches of this run before the position ``state`` names (see
        :func:`~interleaved_sampler.state.read_state` for the errors)."""
        return read_state(state, self.fingerprint, self.schedule, self.names)

    def resume_at(
        self,
        batches: int,
        restart_epoch_order: bool = False,
        copies: Sequence[CopyState | None] | None = None,
    ) -> None:
        """Make the next ``iter()`` continue after the first ``batches`` batches of the run,
        without checking now that the samplers can replay them (the iteration checks);
        ``copies``: a stream's copies' states there, where known."""
        self._resume_at = self._produced = batches
        self._restart_epoch_order = restart_epoch_order
        self._resume_copies = list(copies or [None] * self.copies)
        self._paused = None

    @property
    def _stream_size(self) -> int:
        """The samples of this rank's part of a training batch of a stream."""
        return self.schedule.structure.batch_size // self.sharding.num_replicas

    def check_resumable(self, position: Position, restart_epoch_order: bool = False) -> None:
        """Raise unless the samplers can replay what a run from ``position`` skips (the
        train sampler's need not with ``restart_epoch_order``)."""
        schedule = self.schedule
        per_epoch = schedule.structure.updates_per_epoch
        main = self.sources[0].sampler
        inside_epoch = not schedule.evaluation and position.update % per_epoch != 0
        replays = repeats_epoch_order(main) or restart_epoch_order
        if inside_epoch and position.update < schedule.end_update and not replays:
            raise ValueError(
                "a start inside an epoch needs a train sampler that repeats its epoch order "
                "(else the skipped indices are not the ones already trained on), got "
                f"{type(main).__name__} and a start at update {position.update} "
                f"({per_epoch} updates per epoch); use SeededRandomSampler, SequentialSampler "
                "or DistributedSampler, or start at an epoch boundary "
                f"(start_epoch={position.update // per_epoch})"
            )
        if position.batch_in_pass:
            callback = schedule.passes_after(position.update)[position.passes_done]
            source = self.sources[callback + 1]
            if not repeats_epoch_order(source.sampler):
                raise ValueError(
                    f"a resume inside a pass needs a callback sampler that repeats its order, "
                    f"got {source.describe()} at batch {position.batch_in_pass} of its pass; "
                    "use SequentialSampler or DistributedSampler (or a sampler with "
                    "repeats_epoch_order = True), or resume at a pass boundary"
                )

    def one_pass(self, callback: int) -> Iterator[IndexBatch]:
        """The batches of one whole pass over callback ``callback``, outside the run (its
        tags, if tagged, say no training work is done)."""
        return self._callback_pass(CallbackPass(callback, NOTHING_DONE))

    def _callback_pass(self, step: CallbackPass) -> Iterator[IndexBatch]:
        source = self.sources[step.callback + 1]
        plan = self.schedule.callbacks[step.callback]
        size, length = plan.batch_size, source.length
        replicas = self.sharding.num_replicas
        chunk = -(-size // replicas) if source.split == "contiguous" else None
        orders, index = self.orders, step.callback + 1
        order = (
            orders.take(index) if orders and not step.first_batch and orders.needed(index) else None
        )
        reader = source.reader(
            step.first_batch * size,
            self.sharding,
            "in one pass",
            chunk=chunk,
            ranks=self.ranks,
            order=order,
        )
        for position in range(step.first_batch, plan.batches_per_pass):
            first, wanted = position * size, min(size, length - position * size)
            batch = reader.read(first, wanted)
            batch.source_index = step.callback + 1
            if self.tagged:
                batch.tag = BatchTag(
                    source.name,
                    step.callback + 1,
                    step.progress,
                    position,
                    plan.batches_per_pass,
                    self.sharding.held(first, wanted, chunk),
                    wanted,
                )
            yield batch
        reader.check_exhausted()


@dataclass(frozen=True)
class CachedPass:
    """A pass over a cached callback, placed among the batches an iteration loads.

    Args:
        callback: the callback's index.
        at: batches of the iteration loaded before the pass.
        progress: the training work completed when the pass runs.
        served: ``False``: the pass is loaded (its batches are the next ones loaded) and
            kept; ``True``: it is served from the kept batches, nothing is loaded.
    """

    callback: int
    at: int
    progress: TrainingProgress
    served: bool


class CachingBatchSampler(InterleavedBatchSampler):
    """An :class:`InterleavedBatchSampler` that yields only the batches to load.

    In each iteration, the first whole pass over a cached callback is yielded (to be loaded
    and kept); every later pass is not: its sampler is still iterated, to check that it
    yields the same indices, and a :class:`CachedPass` in :attr:`passes` tells the loader
    where to serve it. The batches it yields and the passes it records together are the
    run of an :class:`InterleavedBatchSampler`; ``len()`` and the state protocol count
    both. Only the loader that serves the left-out passes iterates it (it sets
    :attr:`served` for each iteration); any other iteration raises ``TypeError``.

    Args:
        schedule: the run's schedule.
        sources: the main source, then one per callback.
        cached: the indices of the cached callbacks.
        tagged: attach its :class:`~interleaved_sampler.schedule.BatchTag` to every batch.
        sharding: which part of every global batch this rank yields (default: all of it).
        workers: the ``num_workers`` of the loader (streams only).

    Example:
        >>> from torch.utils.data import SequentialSampler
        >>> from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig
        >>> from interleaved_sampler import SamplerIntervalConfig
        >>> run = InterleavedSampler(
        ...     SequentialSampler(range(4)),
        ...     InterleavedSamplerConfig(batch_size=2, max_updates=2),
        ...     callback_samplers=[SamplerIntervalConfig(
        ...         SequentialSampler(range(3)), every_n_updates=1, batch_size=3, cache=True)],
        ... )
        >>> sampler = CachingBatchSampler(run.schedule, run.sources, cached={0})
        >>> sampler.served = True  # what its loader sets: it serves the passes left out
        >>> [list(batch) for batch in sampler], len(sampler)
        ([[0, 1], [4, 5, 6], [2, 3]], 4)
        >>> [(p.at, p.served) for p in sampler.passes]
        [(1, False), (3, True)]
    """

    def __init__(
        self,
        schedule: Schedule,
        sources: Sequence[Source],
        cached: set[int] | frozenset[int],
        tagged: bool = False,
        sharding: Sharding = UNSHARDED,
        workers: int = 0,
    ) -> None:
        super().__init__(schedule, sources, tagged, sharding, workers)
        self.cached = frozenset(cached)
        # One queue for the sampler's lifetime: a loader holds it while iterating.
        self.passes: deque[CachedPass] = deque()
        self._first_passes: dict[int, list[IndexBatch]] = {}
        self._loaded = 0

    def __iter__(self) -> Iterator[IndexBatch | StreamBatch | EmptySlot]:
        if not self.served:
            raise TypeError(
                "a run with cached callbacks (cache=True) serves their later passes from the "
                "loader of get_data_loader(), which keeps them: iterate that loader, not its "
                "batch sampler in another loader (torchdata's StatefulDataLoader would "
                "silently miss those passes); or set cache=False"
            )
        self.passes.clear()
        self._first_passes, self._loaded = {}, 0
        for batch in super().__iter__():
            if not isinstance(batch, EmptySlot):  # the loader drops them before the cache
                self._loaded += 1
            yield batch

    def _callback_pass(self, step: CallbackPass) -> Iterator[IndexBatch]:
        if step.callback not in self.cached or step.first_batch:  # a resumed pass: not whole
            return super()._callback_pass(step)
        first = self._first_passes.get(step.callback)
        if first is None:
            return self._keep(step)
        self._check_same(step, first)
        self.passes.append(CachedPass(step.callback, self._loaded, step.progress, served=True))
        self._produced += len(first)
        return iter(())

    def _keep(self, step: CallbackPass) -> Iterator[IndexBatch]:
        self.passes.append(CachedPass(step.callback, self._loaded, step.progress, served=False))
        first = self._first_passes[step.callback] = []
        for batch in super()._callback_pass(step):
            first.append(batch)
            yield batch

    def _check_same(self, step: CallbackPass, first: list[IndexBatch]) -> None:
        source = self.sources[step.callback + 1]
        batches = super()._callback_pass(step)
        for position, (batch, kept) in enumerate(zip(batches, first, strict=True)):
            if batch != kept:
                now, then = ([i - source.offset for i in b[:8]] for b in (batch, kept))
                raise ValueError(
                    f"{source.describe()} has cache=True but yielded other indices in a later "
                    f"pass (after update {step.progress.update}) than in its first: batch "
                    f"{position} starts {now}, was {then}; a cached callback needs a sampler "
                    "that yields the same indices in every pass (no shuffling): use a "
                    "sequential one, or cache=False"
                )


class _EpochReader:
    """Reads the main sampler for the training spans of a run, one epoch at a time.

    An epoch's order is opened once (after ``set_epoch``) and read for exactly the indices
    the epoch uses: never one that drop_last drops, never one past them. An order taken from
    ``orders`` (its loader started it) is read to its end where torch's ``BatchSampler``
    reads past the epoch's indices (a short last batch), the loader doing the rest. An epoch
    restarted inside (``restart_order``) is read from the start of a new iteration, in whole
    batches, as a fresh loader reads it.
    """

    def __init__(
        self,
        source: Source,
        schedule: Schedule,
        sharding: Sharding,
        restart_order: bool,
        ranks: Ranks | None = None,
        orders: Orders | None = None,
    ) -> None:
        self.source = source
        self.ranks = ranks
        self.structure = schedule.structure
        self.sharding = sharding
        self.orders = orders if orders is not None and orders.needed(0) else None
        # the first epoch opened reads a sampler that cannot replay its order from its start
        self.restart_order = restart_order and not repeats_epoch_order(source.sampler)
        self.epoch = -1
        self.shift = 0  # batches of the epoch done before its order (re)started
        self.reader: PartReader | None = None

    def batches(self, span: TrainingSpan, tagged: bool) -> Iterator[IndexBatch]:
        structure = self.structure
        per_epoch, size = structure.updates_per_epoch, structure.batch_size
        epoch, first = divmod(span.first_update, per_epoch)
        reader = self.reader if epoch == self.epoch else self._open(epoch, first)
        assert reader is not None
        last = per_epoch - 1
        for position in range(first, first + span.stop_update - span.first_update):
            at = position - self.shift  # the batch's place in the order read
            wanted = size if at != last else structure.last_batch_size
            batch = reader.read(at * size, wanted)
            if at == last and wanted < size and self.orders is not None:
                self.orders.finish(0)  # BatchSampler's short last batch reads past the end
            if tagged:
                progress = structure.progress_at(epoch * per_epoch + position)
                batch.tag = BatchTag(
                    self.source.name, 0, progress, position, per_epoch, len(batch), wanted
                )
            yield batch

    def _open(self, epoch: int, first: int) -> PartReader:
        self.epoch, self.shift = epoch, 0
        if self.restart_order:
            self.shift, self.restart_order = first, False
        order = None
        if self.orders is not None:
            order = self.orders.take(0)  # set_epoch was called where it was started
        else:
            set_epoch = getattr(self.source.sampler, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)
        self.reader = self.source.reader(
            (first - self.shift) * self.structure.batch_size,
            self.sharding,
            f"in epoch {epoch}",
            used=self.structure.samples_per_epoch,
            ranks=self.ranks,
            order=order,
        )
        return self.reader


class _StreamReader:
    """The training batches of a stream: tokens that the worker of their copy loads.

    Training batch ``u`` is the next ``size`` samples of copy ``u mod copies``, which gave
    ``u div copies`` batches before it; the first batch of each copy in an iteration
    carries the copy's state there, where known.
    """

    def __init__(
        self, sampler: InterleavedBatchSampler, copies: Sequence[CopyState | None], states: bool
    ) -> None:
        self.name, self.schedule = sampler.sources[0].name, sampler.schedule
        self.workers, self.copies, self.states = sampler.workers, sampler.copies, states
        self.size = sampler._stream_size
        self.pending = {state.copy: state for state in copies if state is not None}
        self.epoch = 0  # a stream's one epoch

    def batches(self, span: TrainingSpan, tagged: bool) -> Iterator[StreamBatch]:
        structure, per_pass = self.schedule.structure, self.schedule.updates_per_train_pass
        for update in range(span.first_update, span.stop_update):
            copy, before = update % self.copies, update // self.copies
            resume = self.pending.pop(copy, None)
            batch = StreamBatch(
                copy, self.workers, before * self.size, self.size, resume, self.states
            )
            if tagged:
                progress = structure.progress_at(update)
                batch.tag = BatchTag(
                    self.name, 0, progress, update, per_pass, self.size, structure.batch_size
                )
            yield batch


def _stream_records(state: object) -> object:
    """A state's records of a stream's copies (``None`` if it has none)."""
    return state.get(STREAM_COPIES) if isinstance(state, Mapping) else None
