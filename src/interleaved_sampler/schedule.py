"""The *when* of an interleaved run: a pure, torch-free model of the schedule.

Everything here is arithmetic on counters. Given the main sampler's length, the
configuration and each callback's pass length, it answers: how an epoch splits into
updates, where a resumed run starts, after which update training stops, which callbacks
are due after an update, and how many batches the whole run yields. Nothing here touches
a sampler or a dataset.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig


@dataclass(frozen=True)
class TrainingProgress:
    """Training work completed: epochs, updates and samples.

    Example:
        >>> TrainingProgress(epoch=1, update=10, sample=320).update
        10
    """

    epoch: int
    update: int
    sample: int


NOTHING_DONE = TrainingProgress(0, 0, 0)


# The updates of a stream's one "epoch": more than any run makes, so a stream never ends an
# epoch, and every counter of a stream run is that of an endless epoch of full batches.
STREAM_UPDATES = 2**62


@dataclass(frozen=True)
class EpochStructure:
    """How one epoch of the main sampler splits into updates.

    Args:
        sampler_len: number of indices the main sampler yields per epoch (``L``).
        batch_size: the training batch size in use (``B``; see :meth:`create`).
        drop_last: whether the last incomplete batch of an epoch is dropped (``D``).
        stream: the training source is a stream (see :meth:`for_stream`).

    Example:
        >>> s = EpochStructure.create(sampler_len=10, batch_size=4, drop_last=False)
        >>> s.samples_per_epoch, s.updates_per_epoch, s.last_batch_size
        (10, 3, 2)
    """

    sampler_len: int
    batch_size: int
    drop_last: bool
    stream: bool = False

    @classmethod
    def create(cls, sampler_len: int | None, batch_size: int, drop_last: bool) -> EpochStructure:
        """Build the structure; with ``drop_last`` and ``0 < L < B`` the batch size is ``L``;
        ``sampler_len=None``: a stream (:meth:`for_stream`)."""
        if sampler_len is None:
            return cls.for_stream(batch_size)
        if drop_last and 0 < sampler_len < batch_size:
            batch_size = sampler_len
        return cls(sampler_len, batch_size, drop_last)

    @classmethod
    def for_stream(cls, batch_size: int) -> EpochStructure:
        """A stream's: no epochs (one epoch of :data:`STREAM_UPDATES` full batches, more than
        any run makes), so epoch stays 0 and update ``u`` has trained on ``u * B`` samples.

        Example:
            >>> s = EpochStructure.for_stream(batch_size=4)
            >>> s.progress_at(10), s.updates_to_reach(41)
            (TrainingProgress(epoch=0, update=10, sample=40), 11)
        """
        return cls(STREAM_UPDATES * batch_size, batch_size, True, stream=True)

    @property
    def samples_per_epoch(self) -> int:
        """``S``: samples trained on per epoch."""
        if self.drop_last:
            return self.sampler_len // self.batch_size * self.batch_size
        return self.sampler_len

    @property
    def updates_per_epoch(self) -> int:
        """``U``: updates (training batches) per epoch."""
        return -(-self.samples_per_epoch // self.batch_size)

    @property
    def last_batch_size(self) -> int:
        """Size of the last batch of an epoch (smaller than ``B`` only without drop_last)."""
        return self.samples_per_epoch - (self.updates_per_epoch - 1) * self.batch_size

    def progress_at(self, update: int) -> TrainingProgress:
        """The counters after ``update`` completed updates from the very beginning."""
        epoch, position = divmod(update, self.updates_per_epoch)
        return TrainingProgress(
            epoch, update, epoch * self.samples_per_epoch + position * self.batch_size
        )

    def updates_to_reach(self, sample: int) -> int:
        """The fewest updates after which at least ``sample`` samples were trained on."""
        epoch, rest = divmod(sample, self.samples_per_epoch)
        return epoch * self.updates_per_epoch + -(-rest // self.batch_size)


class DueRule(Protocol):
    """When a callback is due: after which updates it runs a pass."""

    @property
    def field(self) -> str:
        """The configuration field of the rule (``every_n_epochs``, ...)."""
        ...

    @property
    def setting(self) -> int | str:
        """The rule's value as plain data, short whatever the run's length: the interval
        (epochs, updates or samples), or a digest of the updates given."""
        ...

    def next_due(self, structure: EpochStructure, update: int) -> int:
        """The first update after update number ``update`` (>= 0) after which a pass runs."""
        ...

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        """How many updates ``u`` with ``first < u <= last`` are due."""
        ...


@dataclass(frozen=True)
class EveryNEpochs:
    """Due after an update that ends an epoch whose number is a multiple of ``n``."""

    n: int
    field: ClassVar[str] = "every_n_epochs"

    @property
    def setting(self) -> int:
        return self.n

    def _period(self, structure: EpochStructure) -> int:
        return self.n * structure.updates_per_epoch

    def next_due(self, structure: EpochStructure, update: int) -> int:
        period = self._period(structure)
        return (update // period + 1) * period

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        period = self._period(structure)
        return last // period - first // period


@dataclass(frozen=True)
class EveryNUpdates:
    """Due after every update whose number is a multiple of ``n``."""

    n: int
    field: ClassVar[str] = "every_n_updates"

    @property
    def setting(self) -> int:
        return self.n

    def next_due(self, structure: EpochStructure, update: int) -> int:
        return (update // self.n + 1) * self.n

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        return last // self.n - first // self.n


@dataclass(frozen=True)
class EveryNSamples:
    """Due after an update that reaches or crosses a multiple of ``n`` samples."""

    n: int
    field: ClassVar[str] = "every_n_samples"

    @property
    def setting(self) -> int:
        return self.n

    def next_due(self, structure: EpochStructure, update: int) -> int:
        # The update that reaches or crosses the next multiple of n.
        next_multiple = (structure.progress_at(update).sample // self.n + 1) * self.n
        return structure.updates_to_reach(next_multiple)

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        # An update of b samples crosses at least one multiple if b >= n and at most one if
        # b <= n. Full batches (size B) and an epoch's short last batch (size r) are counted
        # separately; the crossings of short batches are a sum of floors over epochs.
        n, size, short = self.n, structure.batch_size, structure.last_batch_size
        crossings = (
            structure.progress_at(last).sample // n - structure.progress_at(first).sample // n
        )
        updates_per_epoch, samples_per_epoch = (
            structure.updates_per_epoch,
            structure.samples_per_epoch,
        )
        first_epoch_end, last_epoch_end = (
            first // updates_per_epoch + 1,
            last // updates_per_epoch,
        )
        shorts = max(0, last_epoch_end - first_epoch_end + 1) if short < size else 0
        short_crossings = 0
        if shorts:
            # The short batch ending epoch k covers samples (k*S - r, k*S].
            short_crossings = floor_sum(
                shorts, n, samples_per_epoch, samples_per_epoch * first_epoch_end
            ) - floor_sum(shorts, n, samples_per_epoch, samples_per_epoch * first_epoch_end - short)
        fulls = last - first - shorts
        full_due = fulls if size >= n else crossings - short_crossings
        short_due = shorts if short >= n else short_crossings
        return full_due + short_due


@dataclass(frozen=True)
class AtUpdates:
    """Due after each of the given updates: evaluation points that are not periodic in updates
    (a framework's own, e.g. the ends of epochs whose length is not a multiple of an
    interval). ``next_due`` and ``count`` are bisections.

    Args:
        updates: the update numbers (>= 1), strictly increasing.

    Example:
        >>> structure = EpochStructure.create(sampler_len=10, batch_size=2, drop_last=True)
        >>> rule = AtUpdates((3, 5, 8))
        >>> rule.next_due(structure, 3), rule.count(structure, 0, 5)
        (5, 2)
    """

    updates: tuple[int, ...]
    field: ClassVar[str] = "at_updates"

    @property
    def setting(self) -> str:
        digest = hashlib.sha256(repr(self.updates).encode()).hexdigest()[:16]
        return f"{len(self.updates)} updates, sha256 {digest}"

    def next_due(self, structure: EpochStructure, update: int) -> int:
        after = bisect.bisect_right(self.updates, update)
        return self.updates[after] if after < len(self.updates) else NEVER

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        return bisect.bisect_right(self.updates, last) - bisect.bisect_right(self.updates, first)


# The next due update of a rule that is never due again: after any run's end.
NEVER = 2**63


def floor_sum(count: int, divisor: int, slope: int, offset: int) -> int:
    """``sum(floor((slope*i + offset) / divisor) for i in range(count))`` in O(log) steps.

    Requires ``count >= 0``, ``divisor >= 1`` and ``slope, offset >= 0``.

    Example:
        >>> floor_sum(5, 3, 2, 1) == sum((2 * i + 1) // 3 for i in range(5))
        True
    """
    total = 0
    while count:
        total += slope // divisor * (count * (count - 1) // 2) + offset // divisor * count
        slope, offset = slope % divisor, offset % divisor
        top = slope * count + offset
        if top < divisor:
            break
        count, offset, divisor, slope = top // divisor, top % divisor, slope, divisor
    return total


def due_rule(callback: SamplerIntervalConfig) -> DueRule:
    """The due rule of a callback configuration (exactly one ``every_n_*`` is set)."""
    if callback.every_n_epochs is not None:
        return EveryNEpochs(callback.every_n_epochs)
    if callback.every_n_updates is not None:
        return EveryNUpdates(callback.every_n_updates)
    if callback.at_updates is not None:
        return AtUpdates(tuple(callback.at_updates))
    assert callback.every_n_samples is not None
    return EveryNSamples(callback.every_n_samples)


@dataclass(frozen=True)
class CallbackPlan:
    """One callback's due rule and the shape of one pass over it."""

    rule: DueRule
    pass_len: int
    batch_size: int

    @classmethod
    def create(
        cls, callback: SamplerIntervalConfig, pass_len: int, main_batch_size: int
    ) -> CallbackPlan:
        """The plan of ``callback`` with passes of ``pass_len`` indices; batches of its own
        ``batch_size`` or else ``main_batch_size`` (the main batch size in use)."""
        return cls(due_rule(callback), pass_len, callback.batch_size or main_batch_size)

    @property
    def batches_per_pass(self) -> int:
        return -(-self.pass_len // self.batch_size)


@dataclass(frozen=True)
class BatchTag:
    """Where one batch of a run stands: its source, the training progress, its place in its pass.

    Args:
        source: ``"train"`` or the callback's name.
        source_index: 0 for training batches, ``i + 1`` for callback ``i``.
        progress: training work completed when the batch is handed out: for a training batch
            the work before it, for a pass the work at the update that triggered it (all 0 in
            evaluation mode).
        batch_in_pass: position of the batch in its pass (training: in its epoch), from 0.
        batches_in_pass: batches of the pass (training: updates per epoch).
        part_size: the samples of the global batch in this rank's part of it (the whole
            batch's in a run that is not split over ranks; 0 for a padding part, whose one
            sample repeats one of another rank's).
        global_batch_size: the samples of the global batch (of all ranks together).

    Example:
        >>> tag = BatchTag("val", 1, TrainingProgress(0, 8, 256), 1, 2, 3, 6)
        >>> tag.is_last_in_pass
        True
    """

    source: str
    source_index: int
    progress: TrainingProgress
    batch_in_pass: int
    batches_in_pass: int
    part_size: int
    global_batch_size: int

    @property
    def is_last_in_pass(self) -> bool:
        """Whether this is the last batch of its pass (training: of its epoch)."""
        return self.batch_in_pass == self.batches_in_pass - 1


@dataclass(frozen=True)
class TrainingSpan:
    """Consecutive training batches inside one epoch, with no pass between them.

    Args:
        first_update: updates completed before its first batch.
        stop_update: updates completed after its last batch (``> first_update``).
    """

    first_update: int
    stop_update: int


@dataclass(frozen=True)
class CallbackPass:
    """One pass over callback ``callback``, run right after ``progress.update`` updates.

    Args:
        callback: the callback's index.
        progress: the training work completed when the pass runs (all 0 in evaluation mode).
        first_batch: batches of the pass yielded before (0, unless a run resumes inside it).
    """

    callback: int
    progress: TrainingProgress
    first_batch: int = 0


Step = TrainingSpan | CallbackPass


class Place(NamedTuple):
    """Where one batch of a run stands, known without loading it.

    Args:
        source_index: 0 for a training batch, ``i + 1`` for a batch of a pass over callback
            ``i``.
        update: a training batch: the updates before it; a pass: the update it follows.
        batch_in_pass: its position in its pass (training: in its epoch), from 0.
        batches_in_pass: the batches of its pass (training: updates per epoch).
    """

    source_index: int
    update: int
    batch_in_pass: int
    batches_in_pass: int

    @property
    def is_last_in_pass(self) -> bool:
        return self.batch_in_pass == self.batches_in_pass - 1


@dataclass(frozen=True)
class Position:
    """A place between two batches of a run.

    Args:
        update: training updates completed.
        passes_done: of the passes due after update ``update`` (evaluation mode: of all the
            callbacks), how many are complete.
        batch_in_pass: batches of the next of those passes already yielded.
    """

    update: int
    passes_done: int = 0
    batch_in_pass: int = 0


def start_progress(config: InterleavedSamplerConfig, structure: EpochStructure) -> TrainingProgress:
    """Where a run starts: the counters implied by the configuration's ``start_*``.

    Raises:
        ValueError: the main sampler is empty, or ``start_sample`` does not fall on an
            update boundary of the epochs.
    """
    if structure.sampler_len == 0:
        raise ValueError(
            "the main (train) sampler is empty, got len() == 0; a training run needs at least "
            "one index per epoch: use evaluation=True (or a max_* = 0) for evaluation only"
        )
    if config.start_epoch is not None:
        return structure.progress_at(config.start_epoch * structure.updates_per_epoch)
    if config.start_update is not None:
        return structure.progress_at(config.start_update)
    if config.start_sample is not None:
        progress = structure.progress_at(structure.updates_to_reach(config.start_sample))
        if progress.sample != config.start_sample:
            below = structure.progress_at(progress.update - 1)
            raise ValueError(
                f"start_sample={config.start_sample} is not on an update boundary: epochs have "
                f"{structure.samples_per_epoch} samples in {structure.updates_per_epoch} updates "
                f"of batch_size={structure.batch_size} (drop_last={structure.drop_last}); "
                f"nearest valid values: {below.sample} or {progress.sample} (the same as "
                f"start_update={below.update} or start_update={progress.update})"
            )
        return progress
    return NOTHING_DONE


def check_stream_config(
    config: InterleavedSamplerConfig, callbacks: Sequence[CallbackPlan]
) -> None:
    """Refuse the settings that count epochs in a run whose training source is a stream,
    which has none.

    Raises:
        ValueError: ``max_epochs`` or ``start_epoch`` is set, or a callback is due
            ``every_n_epochs``; the message names the field, its value and what to use.
    """
    instead = {
        "max_epochs": "bound the run with max_updates or max_samples",
        "start_epoch": "start with start_update or start_sample, or resume from a state",
    }
    for field, use in instead.items():
        value = getattr(config, field)
        if value is not None:
            raise ValueError(
                f"{field}={value} is not valid with a Stream training source: a stream has no "
                f"epochs; {use}"
            )
    for i, callback in enumerate(callbacks):
        if isinstance(callback.rule, EveryNEpochs):
            raise ValueError(
                f"callback_samplers[{i}] has every_n_epochs={callback.rule.n}, which is not "
                "valid with a Stream training source: a stream has no epochs; use "
                "every_n_updates, every_n_samples or at_updates"
            )


def stop_update(config: InterleavedSamplerConfig, structure: EpochStructure) -> int:
    """The update count at which the first configured ``max_*`` limit is reached."""
    limits = []
    if config.max_epochs is not None:
        limits.append(config.max_epochs * structure.updates_per_epoch)
    if config.max_updates is not None:
        limits.append(config.max_updates)
    if config.max_samples is not None:
        limits.append(structure.updates_to_reach(config.max_samples))
    return min(limits)


@dataclass(frozen=True)
class Schedule:
    """The complete schedule of a run: training updates and the callback passes between them.

    Build it with :meth:`create`. In evaluation mode ``evaluation`` is true and the run is
    one pass over each callback. Otherwise the run trains from ``start.update`` completed
    updates until ``end_update`` completed updates, with the due passes after each update.

    Example:
        >>> from interleaved_sampler.config import InterleavedSamplerConfig
        >>> config = InterleavedSamplerConfig(batch_size=4, max_epochs=2)
        >>> plan = CallbackPlan(EveryNUpdates(3), pass_len=5, batch_size=4)
        >>> schedule = Schedule.create(config, sampler_len=10, callbacks=[plan])
        >>> schedule.train_batches, schedule.num_batches  # 4 updates, 1 pass of 2 batches
        (4, 6)
    """

    structure: EpochStructure
    callbacks: tuple[CallbackPlan, ...]
    evaluation: bool
    start: TrainingProgress
    end_update: int

    @classmethod
    def create(
        cls,
        config: InterleavedSamplerConfig,
        sampler_len: int | None,
        callbacks: Sequence[CallbackPlan] = (),
    ) -> Schedule:
        """Compute the schedule of a run (``sampler_len=None``: the training source is a
        stream); see :func:`start_progress` and :func:`check_stream_config` for the errors."""
        structure = EpochStructure.create(sampler_len, config.batch_size, config.drop_last)
        if structure.stream:
            check_stream_config(config, callbacks)
        if config.is_evaluation_run:
            return cls(structure, tuple(callbacks), True, NOTHING_DONE, 0)
        start = start_progress(config, structure)
        end = max(start.update, stop_update(config, structure))
        return cls(structure, tuple(callbacks), False, start, end)

    @classmethod
    def for_configs(
        cls,
        config: InterleavedSamplerConfig,
        sampler_len: int | None,
        callbacks: Sequence[tuple[SamplerIntervalConfig, int]] = (),
    ) -> Schedule:
        """The schedule of a run described by its configs and each callback's pass length.

        Args:
            config: the main sampler's configuration.
            sampler_len: indices the main sampler yields per epoch (``None``: a stream).
            callbacks: each callback's configuration with its sampler's ``len()``.
        """
        structure = EpochStructure.create(sampler_len, config.batch_size, config.drop_last)
        plans = [
            CallbackPlan.create(callback, pass_len, structure.batch_size)
            for callback, pass_len in callbacks
        ]
        return cls.create(config, sampler_len, plans)

    @property
    def train_batches(self) -> int:
        """Number of training batches the run yields."""
        return self.end_update - self.start.update

    @property
    def updates_per_train_pass(self) -> int:
        """The training batches of one pass over the training source: an epoch's updates, or
        for a stream (which has no epochs) the run's, from update 0 to its end."""
        return self.end_update if self.structure.stream else self.structure.updates_per_epoch

    def fingerprint(self, names: Sequence[str]) -> dict[str, Any]:
        """What gives a position of this run its meaning, as plain data: the epoch structure
        and each callback's name and pass shape. Not the run's start or end, nor when the
        callbacks are due: a position stays meaningful in a run that is longer, shorter or
        evaluates at other points.

        Args:
            names: the name of each source: the main one first, then one per callback.
        """
        structure = self.structure
        return {
            "sampler_len": None if structure.stream else structure.sampler_len,
            "batch_size": structure.batch_size,
            "drop_last": structure.drop_last,
            "evaluation": self.evaluation,
            "callbacks": [
                {"name": name, "pass_len": callback.pass_len, "batch_size": callback.batch_size}
                for name, callback in zip(names[1:], self.callbacks, strict=True)
            ],
        }

    def layout(self, names: Sequence[str]) -> dict[str, Any]:
        """The fingerprint together with the run's start, end and due rules: what version 1
        states (interleaved-sampler 0.3) recorded, whose position is a batch count and so
        means something in exactly this run only."""
        layout = self.fingerprint(names)
        layout.update(start_update=self.start.update, end_update=self.end_update)
        for callback, plan in zip(layout["callbacks"], self.callbacks, strict=True):
            callback[plan.rule.field] = plan.rule.setting
        return layout

    @property
    def first_position(self) -> Position:
        """Where the run starts: before its first batch."""
        return Position(self.start.update)

    def passes_after(self, update: int) -> list[int]:
        """The callbacks that run a pass right after update ``update``, in order.

        In evaluation mode that is every callback, "after" update 0. A training run has no
        passes after its start position: those belong to the run that made the updates.
        """
        if self.evaluation:
            return list(range(len(self.callbacks))) if update == 0 else []
        if update == self.start.update:
            return []
        return [
            i
            for i, callback in enumerate(self.callbacks)
            if callback.rule.next_due(self.structure, update - 1) == update
        ]

    def passes(self, callback: int) -> int:
        """How many passes over callback ``callback`` the run makes."""
        if self.evaluation:
            return 1
        rule = self.callbacks[callback].rule
        return rule.count(self.structure, self.start.update, self.end_update)

    def batches_before(self, update: int) -> int:
        """Batches of the run before training batch ``update`` (the one that completes update
        ``update + 1``): the training batches from the start, and every pass due up to update
        ``update``. ``batches_before(end_update)`` is the whole training run."""
        first = self.start.update
        return (update - first) + sum(
            callback.rule.count(self.structure, first, update) * callback.batches_per_pass
            for callback in self.callbacks
        )

    @property
    def num_batches(self) -> int:
        """Exact number of batches of the run, computed without iterating anything."""
        if self.evaluation:
            return sum(callback.batches_per_pass for callback in self.callbacks)
        return self.batches_before(self.end_update)

    def batches_at(self, position: Position) -> int:
        """The batches of the run before ``position`` (the inverse of :meth:`seek`).

        Example:
            >>> from interleaved_sampler.config import InterleavedSamplerConfig
            >>> plan = CallbackPlan(EveryNUpdates(2), pass_len=5, batch_size=4)
            >>> config = InterleavedSamplerConfig(batch_size=4, max_updates=4)
            >>> schedule = Schedule.create(config, sampler_len=16, callbacks=[plan])
            >>> schedule.batches_at(Position(update=2, passes_done=0, batch_in_pass=1))
            3
        """
        update, due = position.update, self.passes_after(position.update)
        before = 0
        if not self.evaluation and update > self.start.update:
            before = self.batches_before(update - 1) + 1
        passes = sum(self.callbacks[i].batches_per_pass for i in due[: position.passes_done])
        return before + passes + position.batch_in_pass

    def seek(self, batches: int) -> Position:
        """The position right after the first ``batches`` batches of the run, by arithmetic.

        A binary search over the updates (:meth:`batches_before` is closed form), then a
        walk over the few passes that follow one update.

        Raises:
            ValueError: ``batches`` is not in ``[0, num_batches]``.

        Example:
            >>> from interleaved_sampler.config import InterleavedSamplerConfig
            >>> plan = CallbackPlan(EveryNUpdates(2), pass_len=5, batch_size=4)
            >>> config = InterleavedSamplerConfig(batch_size=4, max_updates=4)
            >>> schedule = Schedule.create(config, sampler_len=16, callbacks=[plan])
            >>> schedule.seek(3)  # train, train, pass batch 0: inside the pass after update 2
            Position(update=2, passes_done=0, batch_in_pass=1)
        """
        if not 0 <= batches <= self.num_batches:
            raise ValueError(
                f"a position must be in [0, {self.num_batches}] batches (the run's length), "
                f"got {batches}"
            )
        if self.evaluation:
            return self._position_in_passes(0, batches)
        low, high = self.start.update, self.end_update
        while low < high:  # the last training batch that starts at or before `batches`
            middle = (low + high + 1) // 2
            if self.batches_before(middle) <= batches:
                low = middle
            else:
                high = middle - 1
        rest = batches - self.batches_before(low)
        if rest == 0:
            return Position(low, len(self.passes_after(low)))
        return self._position_in_passes(low + 1, rest - 1)

    def _position_in_passes(self, update: int, batches: int) -> Position:
        """The position ``batches`` batches into the passes that follow update ``update``."""
        due = self.passes_after(update)
        for done, callback in enumerate(due):
            size = self.callbacks[callback].batches_per_pass
            if batches < size:
                return Position(update, done, batches)
            batches -= size
        return Position(update, len(due))

    def places(self, start: Position | None = None) -> Iterator[Place]:
        """The place of every batch of the run from ``start`` on (:meth:`steps`, batch by
        batch).

        Example:
            >>> from interleaved_sampler.config import InterleavedSamplerConfig
            >>> plan = CallbackPlan(EveryNUpdates(2), pass_len=3, batch_size=2)
            >>> config = InterleavedSamplerConfig(batch_size=2, max_updates=2)
            >>> schedule = Schedule.create(config, sampler_len=4, callbacks=[plan])
            >>> [(p.source_index, p.update, p.batch_in_pass) for p in schedule.places()]
            [(0, 0, 0), (0, 1, 1), (1, 2, 0), (1, 2, 1)]
        """
        per_epoch, per_pass = self.structure.updates_per_epoch, self.updates_per_train_pass
        for step in self.steps(start):
            if isinstance(step, TrainingSpan):
                for update in range(step.first_update, step.stop_update):
                    yield Place(0, update, update % per_epoch, per_pass)
            else:
                batches = self.callbacks[step.callback].batches_per_pass
                for batch in range(step.first_batch, batches):
                    yield Place(step.callback + 1, step.progress.update, batch, batches)

    def steps(self, start: Position | None = None) -> Iterator[Step]:
        """The run from ``start`` (default: its beginning) as training spans and passes.

        This is the one walk of the schedule: the batch sampler, the tags and the plan all
        follow it. Each rule's next due update is computed in closed form, so the walk costs
        one step per span and pass, not per update.
        """
        position = start or self.first_position
        update, structure = position.update, self.structure
        progress = structure.progress_at(update) if not self.evaluation else NOTHING_DONE
        for i, callback in enumerate(self.passes_after(update)[position.passes_done :]):
            yield CallbackPass(callback, progress, position.batch_in_pass if i == 0 else 0)
        if self.evaluation:
            return
        rules = [callback.rule for callback in self.callbacks]
        next_due = [rule.next_due(structure, update) for rule in rules]
        per_epoch = structure.updates_per_epoch
        while update < self.end_update:
            epoch_end = (update // per_epoch + 1) * per_epoch
            stop = min(self.end_update, epoch_end, *next_due)
            yield TrainingSpan(update, stop)
            update = stop
            for i, due in enumerate(next_due):
                if due == update:
                    yield CallbackPass(i, structure.progress_at(update))
                    next_due[i] = rules[i].next_due(structure, update)
