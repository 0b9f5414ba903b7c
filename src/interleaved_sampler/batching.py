"""Turning the schedule into batches of global indices by iterating the real samplers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from torch.utils.data import Sampler

from interleaved_sampler.data import IndexBatch
from interleaved_sampler.schedule import Schedule

_END = object()


def _no_single_batch_size(batch_sampler: object) -> int:
    """Refuse a framework that reads ``batch_size`` to re-batch or re-shard the batches."""
    raise TypeError(
        f"{type(batch_sampler).__name__} has no single batch_size and must not be re-batched or "
        "re-sharded (it yields training batches and whole evaluation passes in schedule order, "
        "and shards through its per-source samplers). Accelerate: call "
        "accelerator.prepare(model, optimizer) without the loader and build the loader with "
        "per-rank samplers (DistributedSampler or SeededRandomSampler(num_replicas=..., "
        "rank=...)); Lightning: Trainer(use_distributed_sampler=False). "
        "See docs/frameworks.md"
    )


@dataclass(frozen=True)
class Source:
    """A sampler, where its dataset starts in the concatenation, and its expected length."""

    sampler: Any
    name: str
    offset: int
    length: int

    def describe(self) -> str:
        return f"the {self.name} sampler ({type(self.sampler).__name__})"

    def too_few(self, yielded: int, context: str) -> ValueError:
        return ValueError(
            f"{self.describe()} yielded only {yielded} indices {context}, but its len() is "
            f"{self.length}; len() must equal the number of indices one iteration yields"
        )

    def check_exhausted(self, indices: Iterator[int], context: str) -> None:
        if next(indices, _END) is not _END:
            raise ValueError(
                f"{self.describe()} yielded more than its len() = {self.length} indices "
                f"{context}; len() must equal the number of indices one iteration yields"
            )


class InterleavedBatchSampler(Sampler[list[int]]):
    """Yields the batches of global indices of a run, in the order the loop consumes them.

    Training batches come from the main sampler, iterated once per epoch (after
    ``set_epoch`` where it has one); after each update, every due callback gets one full
    pass. ``len()`` is exact and computed by the schedule, without iterating anything.

    Args:
        schedule: the run's schedule.
        main: the main (training) sampler's source.
        callbacks: one source per callback, in the order of ``schedule.callbacks``.

    Reading ``batch_size`` raises ``TypeError``: it is how Accelerate and Lightning detect
    a batch sampler they may re-batch or re-shard, which would break the schedule.
    """

    batch_size = property(_no_single_batch_size)

    def __init__(self, schedule: Schedule, main: Source, callbacks: Sequence[Source]) -> None:
        self.schedule = schedule
        self.main = main
        self.callbacks = list(callbacks)

    def __len__(self) -> int:
        return self.schedule.num_batches

    def __iter__(self) -> Iterator[IndexBatch]:
        schedule = self.schedule
        if schedule.evaluation:
            for callback in range(len(self.callbacks)):
                yield from self._callback_pass(callback)
            return
        structure = schedule.structure
        per_epoch, last_size = structure.updates_per_epoch, structure.last_batch_size
        update, end = schedule.start.update, schedule.end_update
        while update < end:
            epoch = update // per_epoch
            taken = (update - epoch * per_epoch) * structure.batch_size
            indices = self._main_epoch(epoch, skip=taken)
            last_of_epoch = (epoch + 1) * per_epoch - 1
            epoch_end = min(end, last_of_epoch + 1)
            while update < epoch_end:
                size = structure.batch_size if update != last_of_epoch else last_size
                batch = IndexBatch(islice(indices, size))
                taken += len(batch)
                if len(batch) != size:
                    raise self.main.too_few(taken, f"in epoch {epoch}")
                yield batch
                update += 1
                for callback in schedule.due_after(update):
                    yield from self._callback_pass(callback)
            if update % per_epoch == 0:
                self._finish_main_epoch(indices, taken, epoch)

    def _main_epoch(self, epoch: int, skip: int) -> Iterator[int]:
        set_epoch = getattr(self.main.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        indices: Iterator[int] = iter(self.main.sampler)
        skipped = sum(1 for _ in islice(indices, skip))
        if skipped != skip:
            raise self.main.too_few(skipped, f"in epoch {epoch} while skipping to the start")
        return indices

    def _finish_main_epoch(self, indices: Iterator[int], taken: int, epoch: int) -> None:
        """Consume the indices that drop_last drops and check the epoch had len() indices."""
        dropped = self.main.length - taken
        yielded = taken + sum(1 for _ in islice(indices, dropped))
        if yielded != self.main.length:
            raise self.main.too_few(yielded, f"in epoch {epoch}")
        self.main.check_exhausted(indices, f"in epoch {epoch}")

    def _callback_pass(self, callback: int) -> Iterator[IndexBatch]:
        source = self.callbacks[callback]
        batch_size = self.schedule.callbacks[callback].batch_size
        indices = iter(source.sampler)
        add_offset = source.offset.__add__
        for start in range(0, source.length, batch_size):
            size = min(batch_size, source.length - start)
            batch = IndexBatch(map(add_offset, islice(indices, size)))
            batch.source_index = callback + 1
            if len(batch) != size:
                raise source.too_few(start + len(batch), "in one pass")
            yield batch
        source.check_exhausted(indices, "in one pass")


class TaggedBatchSampler(Sampler[list[int]]):
    """The batches of an :class:`InterleavedBatchSampler`, each with its ``tag`` set.

    The tag (a :class:`~interleaved_sampler.schedule.BatchTag`, from the pure schedule)
    travels with the indices to the worker, and the collator turns it into an
    :class:`~interleaved_sampler.data.InterleavedBatch`.

    Args:
        batch_sampler: the run's batch sampler.
        names: the name of each source: ``"train"`` first, then one per callback.
    """

    batch_size = property(_no_single_batch_size)

    def __init__(self, batch_sampler: InterleavedBatchSampler, names: Sequence[str]) -> None:
        self.batch_sampler = batch_sampler
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[IndexBatch]:
        tags = self.batch_sampler.schedule.tags(self.names)
        for batch, tag in zip(self.batch_sampler, tags, strict=True):
            batch.tag = tag
            yield batch
