"""Split loaders over one pool: a train loader and one loader per evaluation set, for code that
wants separate loaders (a framework's ``train_dataloader``/``val_dataloader``, a loop with two
loaders), all reading the run's ONE ``DataLoader`` iterator.

The run's order is fixed by the schedule, so the loaders must be asked in that order: each
knows by arithmetic (:meth:`~interleaved_sampler.schedule.Schedule.places`) which source the
next batch of the run comes from, and a loader asked out of turn raises
:class:`OutOfTurnError` without loading anything. Nothing is buffered beyond the
``DataLoader``'s own prefetching and no batch is loaded twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, takewhile
from typing import Any, Protocol

import torch

from interleaved_sampler.batching import InterleavedBatchSampler, Orders, Source
from interleaved_sampler.data import IndexBatch, InterleavedBatch
from interleaved_sampler.loader import InterleavedDataLoader
from interleaved_sampler.schedule import Place, Position, Schedule
from interleaved_sampler.sharding import Sharding
from interleaved_sampler.state import STREAM_COPIES


class RunParts(Protocol):
    """What the split loaders read of a run (an :class:`~interleaved_sampler.InterleavedSampler`
    has it): its schedule, its sources and their names, and how it is split over ranks."""

    @property
    def schedule(self) -> Schedule: ...

    @property
    def sources(self) -> Sequence[Source]: ...

    @property
    def source_names(self) -> Sequence[str]: ...

    @property
    def sharding(self) -> Sharding: ...


class OutOfTurnError(RuntimeError):
    """A split loader was asked for a batch while the run's next batch belongs to another."""


class _Run:
    """The one loader of the run, its iterator and the place of the next batch: what the split
    loaders share. It holds no reference to them, so dropping the loaders frees the pool at
    once (no reference cycle left to the garbage collector, whose late join of live workers
    stalls)."""

    def __init__(self, loader: InterleavedDataLoader, names: Sequence[str], tagged: bool) -> None:
        self.loader, self.names, self.tagged = loader, names, tagged
        batch_sampler = loader.batch_sampler
        self.schedule: Schedule = batch_sampler.schedule
        self.orders = batch_sampler.orders = Orders(batch_sampler.sources)
        self.started_epoch = -1  # the last epoch whose train order a loader started
        self.iterated: set[int] = set()  # sources whose loader was iterated
        self.iterator: Iterator[InterleavedBatch] | None = None
        self.places: Iterator[Place] = iter(())
        self.upcoming: Place | None = None

    def peek(self) -> Place | None:
        """The place of the run's next batch (``None``: the run is over); starts the pool."""
        if self.iterator is None:
            self.start()
        return self.upcoming

    def start(self) -> None:
        """Start the loader's iterator (its workers begin prefetching) at its position.

        The iterator draws its workers' base seed from the loader's generator; from the
        global one it draws in a fork of it, so that the global random numbers are those
        of the plain loaders the split loaders stand for (each draws in its ``iter()``)."""
        if self.iterator is None:
            position = self.schedule.seek(self.loader.batches_consumed)
            self.started_epoch = -1  # a (re)start opens its first epoch anew
            self._iterate()
            self.places = self.schedule.places(position)
            self.upcoming = next(self.places, None)

    def _iterate(self) -> None:
        """Iterate the pool's loader. A new iterator draws its workers' base seed in
        ``_apart`` of the generator; a persistent one iterating again draws nothing, and its
        prefetching may read an order a loader started, whose draws stay (a ``RandomSampler``
        with a ``generator`` reads its order to the end there)."""
        loader = self.loader
        if loader.persistent_workers and getattr(loader, "_iterator", None) is not None:
            self.iterator = iter(loader)
            return
        with _apart(loader.generator):
            self.iterator = iter(loader)

    def opens_order(self, source_index: int) -> bool:
        """Whether the run's next batch opens an iteration of the source whose order a loader
        must start (:class:`Orders`: its sampler draws its order when it starts)."""
        place = self.peek()
        if place is None or place.source_index != source_index:
            return False
        if not self.orders.needed(source_index):
            return False
        if source_index:
            return not place.batch_in_pass
        return place.update // place.batches_in_pass != self.started_epoch

    def start_order(self, source_index: int) -> None:
        """Start the order that the run's next batch opens (see :meth:`opens_order`), and let
        the pool load on if it paused for it."""
        place = self.peek()
        assert place is not None
        epoch = place.update // place.batches_in_pass if source_index == 0 else None
        self.orders.start(source_index, epoch)
        if epoch is not None:
            self.started_epoch = epoch
        if self.loader.batch_sampler.paused:  # every batch before the pause was taken
            self._iterate()  # the same workers load on (persistent_workers)

    def iteration(
        self,
        source_index: int,
        generator: torch.Generator | None,
        num_workers: int,
        persistent: bool,
        batches: Callable[[bool], Iterator[Any]],
    ) -> Iterator[Any]:
        """Start a split loader's iteration as a plain ``DataLoader``'s ``iter()`` starts: it
        draws its workers' base seed from ``generator`` (a ``persistent`` one with workers:
        in its first ``iter()`` only); with workers it then starts its sampler's iteration
        (they prefetch), without workers that starts at the first batch. Returns
        ``batches(started)``."""
        prefetches = num_workers > 0 and self.opens_order(source_index)
        if not (persistent and num_workers and source_index in self.iterated):
            draw_base_seed(generator)  # a persistent loader's iterator draws it once
        self.iterated.add(source_index)
        if prefetches:
            self.start_order(source_index)
        return batches(prefetches)

    def take(self) -> Any:
        """The next batch of the run (the caller checked its place)."""
        assert self.iterator is not None
        batch = next(self.iterator)
        self.upcoming = next(self.places, None)
        return batch if self.tagged else batch.data

    def stop(self) -> None:
        """Shut the iterator's workers down now; the next start continues where it stopped."""
        iterator, self.iterator = self.iterator, None
        if iterator is None:
            return
        self.loader.keep_position()
        self.upcoming, self.places = None, iter(())
        self.loader.shutdown_workers()

    def out_of_turn(self, asked: str, place: Place | None) -> OutOfTurnError:
        return OutOfTurnError(
            f"the {asked} loader was asked for a batch, but the run's next batch is "
            f"{self.describe(place)}: the loop asks the loaders in another order than the "
            "schedule yields them (it skipped, added or moved an evaluation). Build the "
            "schedule with the evaluation points the loop uses (see docs/frameworks.md for "
            "each framework's settings), or ask the loaders in the schedule's order"
        )

    def describe(self, place: Place | None) -> str:
        if place is None:
            return "none (the run is over)"
        if place.source_index == 0:
            per_epoch = place.batches_in_pass
            return (
                f"a training batch (batch {place.batch_in_pass + 1} of {per_epoch} of epoch "
                f"{place.update // per_epoch}, update {place.update + 1})"
            )
        return (
            f"batch {place.batch_in_pass + 1} of {place.batches_in_pass} of the pass over "
            f"{self.names[place.source_index]!r} due after update {place.update}"
        )


@contextmanager
def _apart(generator: torch.Generator | None) -> Iterator[None]:
    """Random numbers drawn inside do not move ``generator`` (the global one if ``None``):
    the pool's own iterator starts there, and the split loaders draw what plain loaders
    draw instead."""
    if generator is None:
        with torch.random.fork_rng(devices=[]):
            yield
        return
    state = generator.get_state()
    try:
        yield
    finally:
        generator.set_state(state)


def draw_base_seed(generator: torch.Generator | None) -> None:
    """Draw what a ``DataLoader`` iterator draws when it starts (its workers' base seed:
    one int64 from ``generator``, the global generator if ``None``)."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)


class TrainLoader:
    """The training batches of the run, one epoch per ``iter()``.

    ``len()`` is the updates per epoch (the last epoch may be cut by ``max_*``). An epoch's
    iterator ends after the epoch's last training batch (or the run's), before the passes
    due after it, which the evaluation loaders yield. A :class:`~interleaved_sampler.Stream`
    has no epochs: one ``iter()`` is the whole run, and ``len()`` its updates. Asked for a
    batch while a pass is due, it raises :class:`OutOfTurnError`. Build it with
    :meth:`InterleavedSampler.get_loaders <interleaved_sampler.InterleavedSampler.get_loaders>`.

    The loop's random numbers (dropout) are those it draws with the plain ``DataLoader``
    this one stands for, whose :attr:`generator`, :attr:`num_workers` and
    :attr:`persistent_workers` it takes (set them to the plain loader's): each ``iter()``
    draws from :attr:`generator` (the global generator if ``None``) what a ``DataLoader``
    iterator draws when it starts (a persistent one: its first only), and a
    train sampler that draws its order when its iteration starts (torch's
    ``RandomSampler``) starts the epoch's iteration where that loader would: in ``iter()``
    with workers (they prefetch), at the first batch without. The pool loads the passes
    before an epoch meanwhile and pauses before the epoch's first batches until then (see
    :class:`~interleaved_sampler.batching.Orders`).
    """

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.generator: torch.Generator | None = None
        self.num_workers: int = run.loader.num_workers
        self.persistent_workers = False

    def __len__(self) -> int:
        return self._run.schedule.updates_per_train_pass

    def __iter__(self) -> Iterator[Any]:
        run = self._run
        return run.iteration(
            0, self.generator, self.num_workers, self.persistent_workers, self._epoch
        )

    def _epoch(self, started: bool) -> Iterator[Any]:
        run, end = self._run, self._run.schedule.end_update
        if not started and run.opens_order(0):
            run.start_order(0)  # at the first batch, as a loader without workers
        place = run.peek()
        while True:
            if place is None:
                return
            if place.source_index != 0:
                raise run.out_of_turn("train", place)
            batch = run.take()
            if place.is_last_in_pass and self.num_workers:
                run.orders.finish(0)  # a prefetching loader reads its order to the end first
            yield batch
            if place.is_last_in_pass or place.update + 1 == end:
                if place.is_last_in_pass and not self.num_workers:
                    run.orders.finish(0)  # asked past the epoch's end, as a for loop asks
                return  # the epoch's (or the run's) last: the passes due after it follow
            place = run.peek()


class PassLoader:
    """The passes over one evaluation set, one pass per ``iter()``: the next pass of the run
    over it (its remaining batches, after a resume inside it).

    ``len()`` is the batches of one pass. Asked for a batch while the run's next batch is
    not of a pass over this set, it raises :class:`OutOfTurnError`; :meth:`apart` serves a
    pass outside the run (a framework's own, e.g. a sanity check) in the main process.
    Each ``iter()`` and :meth:`apart` draws what the plain loader it stands for draws
    when it starts, and where (:attr:`generator`, :attr:`num_workers`,
    :attr:`persistent_workers`: see :class:`TrainLoader`).
    """

    def __init__(self, run: _Run, callback: int, batch_sampler: InterleavedBatchSampler) -> None:
        self._run, self.callback, self._batch_sampler = run, callback, batch_sampler
        self.generator: torch.Generator | None = None
        self.num_workers: int = run.loader.num_workers
        self.persistent_workers = False

    @property
    def name(self) -> str:
        return self._run.names[self.callback + 1]

    def __len__(self) -> int:
        return self._run.schedule.callbacks[self.callback].batches_per_pass

    def __iter__(self) -> Iterator[Any]:
        run = self._run
        place = run.peek()
        if place is None or place.source_index != self.callback + 1:
            raise run.out_of_turn(f"evaluation ({self.name!r})", place)
        source = self.callback + 1
        persistent = self.persistent_workers
        return run.iteration(source, self.generator, self.num_workers, persistent, self._pass)

    def _pass(self, started: bool) -> Iterator[Any]:
        run = self._run
        if not started and run.opens_order(self.callback + 1):
            run.start_order(self.callback + 1)  # at the first batch, as without workers
        upcoming = run.peek()
        while upcoming is not None:  # a pass's batches follow each other
            yield run.take()
            if upcoming.is_last_in_pass:
                return
            upcoming = run.peek()

    def apart(self) -> Iterator[Any]:
        """One whole pass over this set loaded in the main process, outside the run: the
        run's position and the pool are not touched. For evaluations a framework runs that
        no schedule knows in advance (a sanity check, an evaluation a user asks for)."""
        draw_base_seed(self.generator)
        batches = self._batch_sampler.one_pass(self.callback)
        if self.num_workers:  # a prefetching loader starts its sampler in iter()
            first = next(batches, None)
            batches = chain([first] if first is not None else [], batches)
        return self._apart(batches)

    def _apart(self, batches: Iterator[IndexBatch]) -> Iterator[Any]:
        loader = self._run.loader
        for indices in batches:
            batch = loader.collate_fn(loader.dataset.__getitems__(indices))  # type: ignore[attr-defined]
            yield batch if self._run.tagged else batch.data


class InterleavedLoaders:
    """Split loaders of one run over one worker pool: :attr:`train` and :attr:`evaluation`
    (name -> :class:`PassLoader`, in callback order).

    All of them read the one ``DataLoader`` iterator of the run, started by the first batch
    any of them is asked for (or :meth:`start`), so one pool serves the whole run and
    prefetches across every switch between training and evaluation. Each asked in the
    schedule's order yields exactly the batches of ``get_data_loader()``. It has the state
    protocol, with the position of the whole run; :meth:`close` shuts the pool down.

    Build it with :meth:`InterleavedSampler.get_loaders
    <interleaved_sampler.InterleavedSampler.get_loaders>`.

    Args:
        sampler: the run (its schedule, sources, their names and sharding).
        loader: the run's tagged loader (``sampler.get_data_loader(tagged=True, ...)``).
        tagged: the split loaders yield :class:`~interleaved_sampler.InterleavedBatch`
            objects (else the bare collated batches).

    Example:
        >>> from torch.utils.data import SequentialSampler
        >>> from interleaved_sampler import (
        ...     InterleavedSampler, InterleavedSamplerConfig, SamplerIntervalConfig)
        >>> sampler = InterleavedSampler(
        ...     SequentialSampler(range(10, 16)),
        ...     InterleavedSamplerConfig(batch_size=2, max_epochs=2),
        ...     callback_samplers=[SamplerIntervalConfig(
        ...         SequentialSampler(range(90, 93)), every_n_epochs=1, name="val")],
        ... )
        >>> loaders = sampler.get_loaders()
        >>> for epoch in range(2):
        ...     print([b.tolist() for b in loaders.train], [b.tolist() for b in
        ...           loaders.evaluation["val"]])
        [[10, 11], [12, 13], [14, 15]] [[90, 91], [92]]
        [[10, 11], [12, 13], [14, 15]] [[90, 91], [92]]
    """

    def __init__(
        self, sampler: RunParts, loader: InterleavedDataLoader, tagged: bool = False
    ) -> None:
        self._run = _Run(loader, sampler.source_names, tagged)
        passes = InterleavedBatchSampler(
            sampler.schedule, sampler.sources, tagged=True, sharding=sampler.sharding
        )
        self.train = TrainLoader(self._run)
        names = sampler.source_names[1:]
        self.evaluation = {name: PassLoader(self._run, i, passes) for i, name in enumerate(names)}

    @property
    def loader(self) -> InterleavedDataLoader:
        """The one loader of the run."""
        return self._run.loader

    @property
    def next_place(self) -> Place | None:
        """Where the run's next batch comes from (``None``: the run is over), by arithmetic:
        nothing is loaded, but the pool starts if it has not."""
        return self._run.peek()

    def start(self) -> None:
        """Start the pool now (its workers begin loading the next batches), e.g. while a
        framework sets itself up."""
        self._run.start()

    def close(self) -> None:
        """Shut the pool down now (the position is kept: the next batch asked for starts a
        new one there)."""
        self._run.stop()

    def state_dict(self) -> dict[str, Any]:
        """The position of the whole run after the batches the loop received."""
        return self._run.loader.state_dict()

    def load_state_dict(
        self,
        state: dict[str, Any],
        *,
        restart_epoch_order: bool = False,
        skip_due_passes: bool = False,
    ) -> None:
        """Continue the run right after the position ``state`` names (a running pool is shut
        down; the next batch asked for starts one there).

        Args:
            state: a state of :meth:`state_dict`.
            restart_epoch_order: see :meth:`InterleavedDataLoader.load_state_dict
                <interleaved_sampler.InterleavedDataLoader.load_state_dict>`.
            skip_due_passes: skip, without loading them, the passes due at the position
                that are still to come: for a framework that does not run, after a resume,
                the evaluation due at the point it saved.
        """
        batches = self._run.loader.batch_sampler.batches_of(state)
        copies = state.get(STREAM_COPIES)
        self._load_position(batches, restart_epoch_order, skip_due_passes, copies)

    def load_update(
        self, update: int, *, restart_epoch_order: bool = False, skip_due_passes: bool = False
    ) -> None:
        """Continue the run right after training update ``update`` (before the passes due
        there): for a framework's checkpoint that records its own progress counters, not
        this library's state. A position past the run's end is the end.

        Args:
            update: training batches done.
            restart_epoch_order: see :meth:`load_state_dict`.
            skip_due_passes: see :meth:`load_state_dict`.
        """
        schedule = self._run.schedule
        if update < schedule.start.update:
            raise ValueError(
                f"update must be at or after the run's start ({schedule.start.update}), "
                f"got {update}"
            )
        if update > schedule.end_update:
            batches = schedule.num_batches
        else:
            batches = schedule.batches_at(Position(update))
        self._load_position(batches, restart_epoch_order, skip_due_passes)

    def _load_position(
        self, batches: int, restart_epoch_order: bool, skip_due: bool, copies: object = None
    ) -> None:
        self._run.stop()
        if skip_due:
            batches += self._due_batches(batches)
        self._run.loader.load_position(
            batches, restart_epoch_order=restart_epoch_order, copies=copies
        )

    def _due_batches(self, batches: int) -> int:
        """The batches of the passes due at the position after ``batches`` still to come."""
        schedule = self._run.schedule
        passes = schedule.places(schedule.seek(batches))
        return sum(1 for _ in takewhile(lambda place: place.source_index != 0, passes))
