"""The *when* of an interleaved run: a pure, torch-free model of the schedule.

Everything here is arithmetic on counters. Given the main sampler's length, the
configuration and each callback's pass length, it answers: how an epoch splits into
updates, where a resumed run starts, after which update training stops, which callbacks
are due after an update, and how many batches the whole run yields. Nothing here touches
a sampler or a dataset.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

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


@dataclass(frozen=True)
class EpochStructure:
    """How one epoch of the main sampler splits into updates.

    Args:
        sampler_len: number of indices the main sampler yields per epoch (``L``).
        batch_size: the training batch size in use (``B``; see :meth:`create`).
        drop_last: whether the last incomplete batch of an epoch is dropped (``D``).

    Example:
        >>> s = EpochStructure.create(sampler_len=10, batch_size=4, drop_last=False)
        >>> s.samples_per_epoch, s.updates_per_epoch, s.last_batch_size
        (10, 3, 2)
    """

    sampler_len: int
    batch_size: int
    drop_last: bool

    @classmethod
    def create(cls, sampler_len: int, batch_size: int, drop_last: bool) -> EpochStructure:
        """Build the structure; with ``drop_last`` and ``0 < L < B`` the batch size is ``L``."""
        if drop_last and 0 < sampler_len < batch_size:
            batch_size = sampler_len
        return cls(sampler_len, batch_size, drop_last)

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
    def n(self) -> int:
        """The interval length (epochs, updates or samples)."""
        ...

    def is_due(self, structure: EpochStructure, update: int) -> bool:
        """Whether a pass runs right after update number ``update`` (>= 1)."""
        ...

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        """How many updates ``u`` with ``first < u <= last`` are due."""
        ...


@dataclass(frozen=True)
class EveryNEpochs:
    """Due after an update that ends an epoch whose number is a multiple of ``n``."""

    n: int

    def _period(self, structure: EpochStructure) -> int:
        return self.n * structure.updates_per_epoch

    def is_due(self, structure: EpochStructure, update: int) -> bool:
        return update % self._period(structure) == 0

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        period = self._period(structure)
        return last // period - first // period


@dataclass(frozen=True)
class EveryNUpdates:
    """Due after every update whose number is a multiple of ``n``."""

    n: int

    def is_due(self, structure: EpochStructure, update: int) -> bool:
        return update % self.n == 0

    def count(self, structure: EpochStructure, first: int, last: int) -> int:
        return last // self.n - first // self.n


@dataclass(frozen=True)
class EveryNSamples:
    """Due after an update that reaches or crosses a multiple of ``n`` samples."""

    n: int

    def is_due(self, structure: EpochStructure, update: int) -> bool:
        before = structure.progress_at(update - 1).sample
        return before // self.n < structure.progress_at(update).sample // self.n

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

    Example:
        >>> tag = BatchTag("val", 1, TrainingProgress(0, 8, 256), 1, 2)
        >>> tag.is_last_in_pass
        True
    """

    source: str
    source_index: int
    progress: TrainingProgress
    batch_in_pass: int
    batches_in_pass: int

    @property
    def is_last_in_pass(self) -> bool:
        """Whether this is the last batch of its pass (training: of its epoch)."""
        return self.batch_in_pass == self.batches_in_pass - 1


@dataclass(frozen=True)
class Firing:
    """A callback pass, run right after ``progress.update`` updates (0 in evaluation mode)."""

    callback: int
    progress: TrainingProgress


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
    return TrainingProgress(0, 0, 0)


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
        sampler_len: int,
        callbacks: Sequence[CallbackPlan] = (),
    ) -> Schedule:
        """Compute the schedule of a run; see :func:`start_progress` for the errors."""
        structure = EpochStructure.create(sampler_len, config.batch_size, config.drop_last)
        if config.is_evaluation_run:
            return cls(structure, tuple(callbacks), True, TrainingProgress(0, 0, 0), 0)
        start = start_progress(config, structure)
        end = max(start.update, stop_update(config, structure))
        return cls(structure, tuple(callbacks), False, start, end)

    @classmethod
    def for_configs(
        cls,
        config: InterleavedSamplerConfig,
        sampler_len: int,
        callbacks: Sequence[tuple[SamplerIntervalConfig, int]] = (),
    ) -> Schedule:
        """The schedule of a run described by its configs and each callback's pass length.

        Args:
            config: the main sampler's configuration.
            sampler_len: indices the main sampler yields per epoch.
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

    def due_after(self, update: int) -> list[int]:
        """Indices of the callbacks that run a pass right after update ``update``."""
        return [
            i
            for i, callback in enumerate(self.callbacks)
            if callback.rule.is_due(self.structure, update)
        ]

    def passes(self, callback: int) -> int:
        """How many passes over callback ``callback`` the run makes."""
        if self.evaluation:
            return 1
        rule = self.callbacks[callback].rule
        return rule.count(self.structure, self.start.update, self.end_update)

    @property
    def num_batches(self) -> int:
        """Exact number of batches of the run, computed without iterating anything."""
        return self.train_batches + sum(
            self.passes(i) * callback.batches_per_pass for i, callback in enumerate(self.callbacks)
        )

    def firings(self) -> Iterator[Firing]:
        """Every callback pass of the run, in order (iterates updates: for plans and tests)."""
        if self.evaluation:
            for i in range(len(self.callbacks)):
                yield Firing(i, TrainingProgress(0, 0, 0))
            return
        for update in range(self.start.update + 1, self.end_update + 1):
            for i in self.due_after(update):
                yield Firing(i, self.structure.progress_at(update))

    def tags(self, names: Sequence[str]) -> Iterator[BatchTag]:
        """The :class:`BatchTag` of every batch of the run, in the order of the batches.

        Args:
            names: the name of each source: the main one first, then one per callback.
        """
        if self.evaluation:
            for i in range(len(self.callbacks)):
                yield from self._pass_tags(i, names[i + 1], TrainingProgress(0, 0, 0))
            return
        structure = self.structure
        per_epoch = structure.updates_per_epoch
        for update in range(self.start.update, self.end_update):
            yield BatchTag(
                names[0], 0, structure.progress_at(update), update % per_epoch, per_epoch
            )
            for i in self.due_after(update + 1):
                yield from self._pass_tags(i, names[i + 1], structure.progress_at(update + 1))

    def _pass_tags(
        self, callback: int, name: str, progress: TrainingProgress
    ) -> Iterator[BatchTag]:
        batches = self.callbacks[callback].batches_per_pass
        for position in range(batches):
            yield BatchTag(name, callback + 1, progress, position, batches)
