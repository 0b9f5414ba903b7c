"""One global schedule across ranks: how each global batch splits into per-rank parts.

Pure arithmetic, like :mod:`interleaved_sampler.schedule`: the schedule is the global run
(global samplers, global batch sizes), and :class:`Sharding` says which positions of each
global batch rank ``rank`` of ``num_replicas`` loads. :func:`check_sharding` refuses, at
construction, the runs in which some rank would get an uneven full batch or an empty
training batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from interleaved_sampler.schedule import Schedule


@dataclass(frozen=True)
class Sharding:
    """Rank ``rank`` of ``num_replicas`` takes every ``num_replicas``-th position of each
    global batch, from its own offset (the strided split).

    So the parts of the ranks are disjoint and together are the global batch; a full batch
    (its size a multiple of ``num_replicas``) splits evenly and a short one into parts whose
    sizes differ by at most one. A batch shorter than ``num_replicas`` would leave the ranks
    past its end empty: they get one position of the batch instead (padding, for evaluation
    passes only; ``gather_by_index`` drops the repeats). With full batches, the positions a
    rank reads over a whole epoch are ``rank, rank + num_replicas, ...``: one strided read
    of the order, which is what :class:`~interleaved_sampler.SeededRandomSampler` computes
    directly.

    Args:
        num_replicas: the number of ranks (processes) the run is split over.
        rank: this rank, in ``[0, num_replicas)``.

    Example:
        >>> Sharding(4, 1).part(first=8, size=8)  # positions 8..15 of the epoch's order
        range(9, 16, 4)
        >>> Sharding(4, 3).part(first=8, size=2)  # a short batch: rank 3 repeats position 9
        range(9, 10)
    """

    num_replicas: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        for field, value in (("num_replicas", self.num_replicas), ("rank", self.rank)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{field} must be an int, got {value!r} ({type(value).__name__})")
        if self.num_replicas < 1:
            raise ValueError(
                f"num_replicas must be >= 1 (the number of ranks), got {self.num_replicas}"
            )
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(
                f"rank must be in [0, num_replicas={self.num_replicas}), got {self.rank}"
            )

    @property
    def is_sharded(self) -> bool:
        return self.num_replicas > 1

    def part(self, first: int, size: int) -> range:
        """The positions this rank loads of the global batch ``[first, first + size)``."""
        start = self.first_position(first)
        if start < first + size:
            return range(start, first + size, self.num_replicas)
        return self._padding(first, size)

    def chunk(self, first: int, size: int, per_rank: int) -> range:
        """The positions this rank loads of the global batch ``[first, first + size)`` when
        batches are split into contiguous chunks of ``per_rank`` (rank ``r`` takes the
        ``r``-th chunk; past the batch's end it gets one position of the batch: padding).

        Example:
            >>> Sharding(3, 1).chunk(first=6, size=5, per_rank=2), Sharding(3, 2).chunk(6, 3, 2)
            (range(8, 10), range(8, 9))
        """
        start = first + self.rank * per_rank
        if start < first + size:
            return range(start, min(start + per_rank, first + size))
        return self._padding(first, size)

    def held(self, first: int, size: int, per_rank: int | None = None) -> int:
        """How many samples of the global batch ``[first, first + size)`` this rank's part
        holds: its size, or 0 for a padding part (see :meth:`part` and, with ``per_rank``,
        :meth:`chunk`).

        Example:
            >>> [Sharding(2, rank).held(first=8, size=3) for rank in (0, 1)]  # 2 + 1
            [2, 1]
            >>> Sharding(4, 3).held(first=8, size=2)  # padding
            0
        """
        if per_rank is None:
            return len(range(self.first_position(first), first + size, self.num_replicas))
        start = first + self.rank * per_rank
        return len(range(start, min(start + per_rank, first + size)))

    def pads(self, first: int, size: int) -> bool:
        """Whether this rank's (strided) part of the batch ``[first, first + size)`` is
        padding."""
        return self.first_position(first) >= first + size

    def first_position(self, position: int) -> int:
        """This rank's first position at or after ``position`` (where its strided read of an
        order resumes)."""
        return position + (self.rank - position) % self.num_replicas

    def _padding(self, first: int, size: int) -> range:
        """One position of the batch, for a rank past its end."""
        padding = first + self.rank % size
        return range(padding, padding + 1)


UNSHARDED = Sharding()


@dataclass(frozen=True)
class _BatchSize:
    """A batch size the run yields: which configuration field sets it, and whether it is a
    full batch (split evenly) or a short one (training: must leave no rank empty)."""

    field: str
    size: int
    full: bool
    what: str

    def works_with(self, replicas: int) -> bool:
        return self.size % replicas == 0 if self.full else self.size >= replicas


def check_sharding(
    schedule: Schedule,
    names: Sequence[str],
    own_batch_sizes: Sequence[bool],
    num_replicas: int,
) -> None:
    """Refuse a run that cannot be split over ``num_replicas`` ranks.

    Every full batch the run yields must split evenly (its size a multiple of
    ``num_replicas``), and every short training batch must leave no rank empty (at least
    ``num_replicas`` samples); short evaluation batches are padded instead. Only the
    batches the run actually yields count (a callback that never runs, or an epoch end
    that ``max_*`` cuts off, imposes nothing).

    Args:
        schedule: the global run.
        names: the sources' names, main first.
        own_batch_sizes: per callback, whether it sets its own ``batch_size`` (else it
            uses the main one).
        num_replicas: the number of ranks.

    Raises:
        ValueError: naming the field, its value, ``num_replicas`` and the valid values.
    """
    sizes = list(_batch_sizes(schedule, names, own_batch_sizes))
    broken = [size for size in sizes if not size.works_with(num_replicas)]
    if not broken:
        return
    first = broken[0]
    valid = [w for w in range(1, min(s.size for s in sizes) + 1) if _all_work(sizes, w)]
    if first.full:
        problem = (
            f"{first.field}={first.size} must be a multiple of num_replicas={num_replicas} "
            f"(every rank loads an equal part): it is the size of {first.what}"
        )
    else:
        problem = (
            f"{first.what} has {first.size} sample{'s' if first.size != 1 else ''}, fewer than "
            f"num_replicas={num_replicas}: some rank would get an empty training batch"
        )
    raise ValueError(
        f"{problem}; valid num_replicas for this run: {_listed(valid)}; or change "
        f"{first.field}" + ("" if first.full else " or set drop_last=True (drops that batch)")
    )


def _all_work(sizes: Sequence[_BatchSize], replicas: int) -> bool:
    return all(size.works_with(replicas) for size in sizes)


def _listed(values: Sequence[int]) -> str:
    if len(values) <= 12:
        return ", ".join(map(str, values))
    return ", ".join(map(str, values[:12])) + f", ... ({len(values)} in all)"


def _batch_sizes(
    schedule: Schedule, names: Sequence[str], own_batch_sizes: Sequence[bool]
) -> Iterator[_BatchSize]:
    """The sizes of the batches the run yields, with what sets them."""
    structure = schedule.structure
    if not schedule.evaluation and schedule.train_batches:
        per_epoch, start, end = (
            structure.updates_per_epoch,
            schedule.start.update,
            schedule.end_update,
        )
        epoch_ends = end // per_epoch - start // per_epoch  # last batches of an epoch yielded
        short = structure.last_batch_size
        fulls = schedule.train_batches - (epoch_ends if short < structure.batch_size else 0)
        what = "every training batch"
        if structure.drop_last and structure.batch_size == structure.sampler_len:
            what += f" (drop_last=True with {structure.sampler_len} training samples)"
        if fulls:
            yield _BatchSize("batch_size", structure.batch_size, True, what)
        if short < structure.batch_size and epoch_ends:
            yield _BatchSize(
                "batch_size",
                short,
                False,
                f"the last training batch of each epoch ({structure.sampler_len} training "
                f"samples in batches of batch_size={structure.batch_size}, drop_last=False)",
            )
    callbacks = zip(schedule.callbacks, names[1:], own_batch_sizes, strict=True)
    for i, (plan, name, own) in enumerate(callbacks):
        if plan.pass_len >= plan.batch_size and schedule.passes(i):
            field = f"callback_samplers[{i}].batch_size" if own else "batch_size"
            yield _BatchSize(
                field,
                plan.batch_size,
                True,
                f"the batches of the {name} passes ({plan.pass_len} samples"
                + ("" if own else f"; callback_samplers[{i}] sets no batch_size of its own")
                + ")",
            )
