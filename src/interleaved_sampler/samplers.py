"""Samplers and what the interleaved sampler needs to know about them."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler


class SeededRandomSampler(Sampler[int]):
    """A random permutation per epoch that is a function of ``(seed, epoch)`` only.

    Unlike ``torch.utils.data.RandomSampler``, epoch ``k`` has the same order in every
    process and after every restart, so a run can resume exactly inside an epoch.

    Args:
        data_source: the dataset to sample from (only its ``len()`` is used).
        seed: the base seed, in ``[0, 2**31)``; epoch ``k`` uses the permutation of torch's
            generator seeded with :func:`epoch_seed` ``(seed, k)``.
        num_replicas: number of shards (processes of a distributed run); 1 = no sharding.
        rank: the shard this sampler yields, in ``[0, num_replicas)``.
        drop_last: with sharding, drop the permutation's tail instead of padding it.

    Sharding follows ``DistributedSampler``: the epoch's permutation is padded by repeating
    its start up to a multiple of ``num_replicas`` (or, with ``drop_last``, cut down to one),
    and shard ``rank`` takes every ``num_replicas``-th index from position ``rank``. So every
    shard has the same length, and batch ``k`` of all shards together is batch ``k`` of the
    unsharded sampler with ``num_replicas`` times the batch size.

    Example:
        >>> sampler = SeededRandomSampler(range(5), seed=1)
        >>> sampler.set_epoch(3)
        >>> sorted(sampler) == [0, 1, 2, 3, 4] and list(sampler) == list(sampler)
        True
        >>> shards = [SeededRandomSampler(range(5), 1, num_replicas=2, rank=r) for r in (0, 1)]
        >>> [len(shard) for shard in shards]  # 5 indices padded to 6
        [3, 3]
    """

    repeats_epoch_order = True

    def __init__(
        self,
        data_source: Sized,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {seed}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.data_source = data_source
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of epoch ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        length, replicas = len(self.data_source), self.num_replicas
        return length // replicas if self.drop_last else -(-length // replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.data_source), generator=generator).tolist()
        if self.num_replicas == 1:  # unsharded: no copy
            return iter(order)
        total = len(self) * self.num_replicas
        while len(order) < total:  # pad by repeating the start, as DistributedSampler does
            order += order[: total - len(order)]
        return iter(order[self.rank : total : self.num_replicas])


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit generator seed for ``(seed, epoch)``: the splitmix64 mix of both, folded.

    torch's CPU generator keeps only the low 32 bits of a seed, so ``seed`` and ``epoch``
    are mixed rather than concatenated; nearby pairs give unrelated seeds.
    """
    mask = 2**64 - 1
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return (z ^ (z >> 32)) & 0xFFFFFFFF


def dataset_of(sampler: Any, role: str) -> Any:
    """The dataset a sampler indexes: its ``.data_source`` or ``.dataset``."""
    for attribute in ("data_source", "dataset"):
        dataset = getattr(sampler, attribute, None)
        if dataset is not None:
            return dataset
    raise TypeError(
        f"the {role} sampler {type(sampler).__name__} exposes no dataset, got neither "
        "`.data_source` nor `.dataset`; it needs one of them (as torch's samplers have)"
    )


def repeats_epoch_order(sampler: Any) -> bool:
    """Whether iterating ``sampler`` again (after ``set_epoch``) repeats an epoch's order.

    True for ``SequentialSampler``, ``DistributedSampler``, :class:`SeededRandomSampler` and
    any sampler with a true ``repeats_epoch_order`` attribute.
    """
    return isinstance(sampler, SequentialSampler | DistributedSampler) or bool(
        getattr(sampler, "repeats_epoch_order", False)
    )


def shuffles(sampler: Any) -> bool:
    """Whether ``sampler`` is known to yield a new order in every iteration: torch's
    ``RandomSampler`` and a ``DistributedSampler`` with ``shuffle=True`` (whose order moves
    with ``set_epoch``)."""
    return isinstance(sampler, RandomSampler) or (
        isinstance(sampler, DistributedSampler) and bool(sampler.shuffle)
    )
