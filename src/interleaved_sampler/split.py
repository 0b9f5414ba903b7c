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

from collections.abc import Iterator, Sequence
from itertools import takewhile
from typing import Any, Protocol

import torch

from interleaved_sampler.batching import InterleavedBatchSampler, Source
from interleaved_sampler.data import InterleavedBatch
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
        self.schedule: Schedule = loader.batch_sampler.schedule
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
            with torch.random.fork_rng(devices=[], enabled=self.loader.generator is None):
                self.iterator = iter(self.loader)
            self.places = self.schedule.places(position)
            self.upcoming = next(self.places, None)

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

    Each ``iter()`` draws from :attr:`generator` what a ``DataLoader`` iterator draws when
    it starts (the global generator if ``None``), so that a loop's random numbers (dropout)
    are those it draws with a plain ``DataLoader``; set it to the plain loader's
    ``generator``.
    """

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return self._run.schedule.updates_per_train_pass

    def __iter__(self) -> Iterator[Any]:
        draw_base_seed(self.generator)
        return self._epoch()

    def _epoch(self) -> Iterator[Any]:
        run, end = self._run, self._run.schedule.end_update
        place = run.peek()
        while True:
            if place is None:
                return
            if place.source_index != 0:
                raise run.out_of_turn("train", place)
            yield run.take()
            if place.is_last_in_pass or place.update + 1 == end:
                return  # the epoch's (or the run's) last: the passes due after it follow
            place = run.peek()


class PassLoader:
    """The passes over one evaluation set, one pass per ``iter()``: the next pass of the run
    over it (its remaining batches, after a resume inside it).

    ``len()`` is the batches of one pass. Asked for a batch while the run's next batch is
    not of a pass over this set, it raises :class:`OutOfTurnError`; :meth:`apart` serves a
    pass outside the run (a framework's own, e.g. a sanity check) in the main process.
    Each ``iter()`` and :meth:`apart` draws from :attr:`generator` what a ``DataLoader``
    iterator draws when it starts (see :class:`TrainLoader`).
    """

    def __init__(self, run: _Run, callback: int, batch_sampler: InterleavedBatchSampler) -> None:
        self._run, self.callback, self._batch_sampler = run, callback, batch_sampler
        self.generator: torch.Generator | None = None

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
        draw_base_seed(self.generator)
        return self._pass(place)

    def _pass(self, place: Place) -> Iterator[Any]:
        run, upcoming = self._run, place
        while True:
            yield run.take()
            if upcoming.is_last_in_pass:
                return
            upcoming = run.peek()  # type: ignore[assignment]  # a pass's batches follow

    def apart(self) -> Iterator[Any]:
        """One whole pass over this set loaded in the main process, outside the run: the
        run's position and the pool are not touched. For evaluations a framework runs that
        no schedule knows in advance (a sanity check, an evaluation a user asks for)."""
        draw_base_seed(self.generator)
        return self._apart()

    def _apart(self) -> Iterator[Any]:
        loader, sampler = self._run.loader, self._batch_sampler
        for indices in sampler.one_pass(self.callback):
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
        self._run.stop()
        loader = self._run.loader
        batches = loader.batch_sampler.batches_of(state)
        if skip_due_passes:
            batches += self._due_batches(batches)
        loader.load_position(
            batches, restart_epoch_order=restart_epoch_order, copies=state.get(STREAM_COPIES)
        )

    def load_update(self, update: int, *, restart_epoch_order: bool = False) -> None:
        """Continue the run right after training update ``update`` and the passes due
        there (a framework that resumes from its own counter, a checkpoint without this
        run's state, does not run the evaluation due at the point it saved); past the run's
        end, at its end.

        Args:
            update: the training updates done (batches, not optimizer steps).
            restart_epoch_order: see :meth:`InterleavedDataLoader.load_state_dict
                <interleaved_sampler.InterleavedDataLoader.load_state_dict>`.

        Raises:
            ValueError: ``update`` is before the run's start.
        """
        schedule = self._run.schedule
        if not schedule.start.update <= update:
            raise ValueError(
                f"update must be at or after the run's start ({schedule.start.update}), "
                f"got {update}"
            )
        update = min(update, schedule.end_update)
        position = Position(update, len(schedule.passes_after(update)))
        self._run.stop()
        self._run.loader.load_position(
            schedule.batches_at(position), restart_epoch_order=restart_epoch_order
        )

    def _due_batches(self, batches: int) -> int:
        """The batches of the passes due at the position after ``batches`` still to come."""
        schedule = self._run.schedule
        passes = schedule.places(schedule.seek(batches))
        return sum(1 for _ in takewhile(lambda place: place.source_index != 0, passes))
