"""Samplers and what the interleaved sampler needs to know about them."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DistributedSampler, Sampler, SequentialSampler


class SeededRandomSampler(Sampler[int]):
    """A random permutation per epoch that is a function of ``(seed, epoch)`` only.

    Unlike ``torch.utils.data.RandomSampler``, epoch ``k`` has the same order in every
    process and after every restart, so a run can resume exactly inside an epoch.

    Args:
        data_source: the dataset to sample from (only its ``len()`` is used).
        seed: the base seed, in ``[0, 2**31)``; epoch ``k`` uses the permutation of torch's
            generator seeded with :func:`epoch_seed` ``(seed, k)``.

    Example:
        >>> sampler = SeededRandomSampler(range(5), seed=1)
        >>> sampler.set_epoch(3)
        >>> sorted(sampler) == [0, 1, 2, 3, 4] and list(sampler) == list(sampler)
        True
    """

    repeats_epoch_order = True

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        if not 0 <= seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {seed}")
        self.data_source = data_source
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of epoch ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


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
