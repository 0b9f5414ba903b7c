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
        seed: the base seed; epoch ``k`` uses the permutation seeded by ``seed * 2**32 + k``.

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
        generator = torch.Generator().manual_seed(self.seed * 2**32 + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


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
