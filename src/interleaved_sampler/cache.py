"""The evaluation cache: keeping the batches of a first pass and serving later passes.

The :class:`~interleaved_sampler.batching.CachingBatchSampler` decides *when*: it yields
only the batches to load and records, for every pass over a cached callback, whether it is
loaded (and kept) or served, and after how many loaded batches. :class:`PassCache` does
the *how*: it follows those records through the loaded stream, keeps copies of the
batches of first passes and yields copies of them in place of the served passes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from interleaved_sampler.batching import CachedPass
from interleaved_sampler.data import InterleavedBatch, map_tensors


def copy_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` that shares no memory with it, pinned if ``tensor`` is.

    Example:
        >>> original = torch.zeros(2)
        >>> copy = copy_tensor(original)
        >>> _ = copy.add_(1)
        >>> original
        tensor([0., 0.])
    """
    if tensor.is_pinned():
        return torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True).copy_(tensor)
    return tensor.clone()


class PassCache:
    """The batches of the first passes over cached callbacks, within one iteration.

    Args:
        batches_per_pass: batches of one pass, per callback.

    Example:
        >>> from collections import deque
        >>> from interleaved_sampler.schedule import TrainingProgress
        >>> done = TrainingProgress(0, 1, 2)
        >>> passes = deque([CachedPass(0, 1, done, served=False), CachedPass(0, 2, done, True)])
        >>> loaded = iter([torch.tensor([0]), torch.tensor([7]), torch.tensor([1])])
        >>> [batch.item() for batch in PassCache([1]).interleave(loaded, passes)]
        [0, 7, 7, 1]
    """

    def __init__(self, batches_per_pass: Sequence[int]) -> None:
        self.batches_per_pass = list(batches_per_pass)
        self.kept: dict[int, list[Any]] = {}
        self.nbytes = 0

    def interleave(self, loaded: Iterator[Any], passes: deque[CachedPass]) -> Iterator[Any]:
        """The loaded batches with the served passes inserted where ``passes`` places them.

        The kept batches are released when the iteration ends (or is dropped).

        Args:
            loaded: the batches the workers load, in order.
            passes: the records of the batch sampler that yields the loaded batches. A
                record is appended before the sampler yields the batch it precedes, so it
                is there when that batch arrives, and all are there when the stream ends.
        """
        keeping: list[Any] = []  # the pass being loaded and kept
        left = 0  # its batches still to come
        try:
            for count, batch in enumerate(loaded):
                while passes and passes[0].at == count:
                    cached = passes.popleft()
                    if cached.served:
                        yield from self._serve(cached)
                    else:
                        keeping = self.kept[cached.callback] = []
                        left = self.batches_per_pass[cached.callback]
                if left:
                    keeping.append(map_tensors(self._keep_tensor, batch))
                    left -= 1
                yield batch
            while passes:
                yield from self._serve(passes.popleft())
        finally:
            self.kept, self.nbytes = {}, 0

    def _keep_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        self.nbytes += tensor.nbytes
        return copy_tensor(tensor)

    def _serve(self, cached: CachedPass) -> Iterator[Any]:
        for batch in self.kept[cached.callback]:
            copy = map_tensors(copy_tensor, batch)  # tagged: its tags and indices copied too
            if isinstance(copy, InterleavedBatch):  # the tags of this pass
                copy = replace(copy, progress=cached.progress)
            yield copy
