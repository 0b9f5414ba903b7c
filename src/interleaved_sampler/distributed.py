"""Multi-process runs (torch.distributed): one schedule on every rank, exact evaluation.

The interleaved schedule is a function of the configuration and the *lengths* of the
samplers only (see :mod:`interleaved_sampler.schedule`). With one global run
(``InterleavedSampler(..., num_replicas=W, rank=r)``), or with ``DistributedSampler`` (or a
sharded :class:`~interleaved_sampler.SeededRandomSampler`) on every rank, every rank yields
the same sequence of training batches and callback passes, and no rank waits forever in a
collective, provided the ranks build the same run. :func:`check_same_schedule` verifies
that (a global run does it by itself at its first iteration, see
:mod:`interleaved_sampler.agreement`); :func:`gather_by_index` turns the per-rank results of
an evaluation pass into exactly the single-process result.

Without an initialized process group both work in the one process (no communication).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import torch
import torch.distributed as dist

from interleaved_sampler.agreement import RankFacts, Ranks, communication_device

if TYPE_CHECKING:
    from interleaved_sampler.sampler import InterleavedSampler


def check_same_schedule(sampler: InterleavedSampler, group: Any = None) -> None:
    """Check that every rank of ``group`` has the same run and correctly sharded samplers.

    A collective: call it on every rank of ``group``, once, after building the sampler (one
    ``all_gather`` of a digest per rank; a second one, only on a mismatch, names what
    differs). It raises on every rank, with the same message, if the ranks' runs differ
    (samplers of another type, seed or length, datasets of other lengths, different
    configurations or start positions), or if a sampler that shards (it has
    ``num_replicas`` and ``rank``, like ``DistributedSampler``) does not shard over exactly
    this group: ``num_replicas`` must be the group's size and ``rank`` this process's rank
    in it, each rank a different shard. Without an initialized process group it checks
    this process's samplers alone. With nccl, set the rank's CUDA device
    (``torch.cuda.set_device``) first.

    A global run (``InterleavedSampler(..., num_replicas=W)`` with ``torch.distributed``
    initialized over ``W`` processes) runs the same check by itself at its first
    iteration; call this one for per-rank samplers, to check earlier, or over another
    group than the default one.

    Args:
        sampler: this rank's interleaved sampler.
        group: the process group the samplers shard over (``None``: the whole world). In
            tensor- or pipeline-parallel runs, pass the data-parallel group.

    Raises:
        ValueError: the runs differ between ranks, or a sampler's sharding does not
            match the group.

    Example:
        >>> from torch.utils.data import DistributedSampler
        >>> from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig
        >>> train = DistributedSampler(range(10), num_replicas=1, rank=0)  # world size 1
        >>> config = InterleavedSamplerConfig(batch_size=2, max_epochs=1)
        >>> sampler = InterleavedSampler(train, config)
        >>> check_same_schedule(sampler)  # passes; raises ValueError on a mismatch
    """
    ranks = Ranks.of_group(group)
    ranks.agree(RankFacts.of(sampler.batch_sampler, ranks.rank))


@overload
def gather_by_index(
    values: torch.Tensor, indices: torch.Tensor | Sequence[int], group: Any = None
) -> torch.Tensor: ...


@overload
def gather_by_index(
    values: Mapping[str, torch.Tensor], indices: torch.Tensor | Sequence[int], group: Any = None
) -> dict[str, torch.Tensor]: ...


def gather_by_index(
    values: torch.Tensor | Mapping[str, torch.Tensor],
    indices: torch.Tensor | Sequence[int],
    group: Any = None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Gather per-sample results from every rank: one row per dataset index, in index order.

    Each rank passes the results of the samples it evaluated and those samples' indices in
    the dataset. Every rank gets back the rows of all ranks, sorted by dataset index, with
    repeated indices (``DistributedSampler`` pads a shard by repeating samples) kept once,
    so a metric computed from the result is exactly the single-process metric. If the
    gathered indices are ``0..N-1`` (as with ``DistributedSampler`` without ``drop_last``),
    row ``i`` belongs to sample ``i``. A collective: call it on every rank of ``group``;
    ranks may hold different numbers of samples (also none). Without an initialized process
    group it sorts and deduplicates this process's rows.

    Communication runs on the current CUDA device for the ``nccl`` backend and on the CPU
    otherwise (``gloo``); the result is on the device of ``values`` (without autograd
    history when gathered from several ranks). Every rank must pass
    the same kind of ``values`` (the same keys, dtypes and trailing shapes); a mismatch, or
    ``indices`` of the wrong length, raises ``ValueError`` on every rank.

    Args:
        values: a tensor, or a mapping of names to tensors, whose first dimension is this
            rank's samples.
        indices: the dataset index of each of those samples (ints or an integer tensor).
        group: the process group to gather over (``None``: the whole world).

    Returns:
        ``values`` of all ranks (a tensor, or a dict with the same keys), one row per
        distinct dataset index, in ascending index order.

    Example:
        >>> errors = torch.tensor([0.5, 0.25, 0.5])  # sample 2 twice: a padding duplicate
        >>> gather_by_index(errors, [2, 0, 2])  # on 2 ranks: the rows of both, sorted
        tensor([0.2500, 0.5000])
        >>> gather_by_index({"error": errors, "index": torch.tensor([2, 0, 2])}, [2, 0, 2])
        {'error': tensor([0.2500, 0.5000]), 'index': tensor([0, 2])}
    """
    tensors = dict(values) if isinstance(values, Mapping) else {"values": values}
    index = (
        indices
        if isinstance(indices, torch.Tensor)
        else torch.tensor(list(indices), dtype=torch.long)
    )
    problem = _problem(tensors, index)
    header = _Header(0 if problem else len(index), _layout(tensors), problem)
    world = Ranks.of_group(group).size
    headers = [header] * world
    if world > 1:
        dist.all_gather_object(headers, header, group=group)
    _raise_problems(headers)
    if world > 1:
        counts = [h.count for h in headers]
        device = communication_device(group)
        index = _all_gather_rows(index.long(), counts, device, group)
        tensors = {
            key: _all_gather_rows(tensor, counts, device, group).to(tensor.device)
            for key, tensor in sorted(tensors.items())
        }
    keep = _first_of_each_index(index.cpu())
    rows = {key: tensor[keep.to(tensor.device)] for key, tensor in tensors.items()}
    return rows if isinstance(values, Mapping) else rows["values"]


@dataclass(frozen=True)
class _Header:
    """What a rank holds: its number of rows, the layout of its values, or what is wrong."""

    count: int
    layout: tuple[tuple[str, str, tuple[int, ...]], ...]
    problem: str | None


def _layout(tensors: Mapping[str, Any]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple(
        (key, str(tensor.dtype), tuple(tensor.shape[1:]))
        for key, tensor in sorted(tensors.items())
        if isinstance(tensor, torch.Tensor)
    )


def _problem(tensors: Mapping[str, Any], index: torch.Tensor) -> str | None:
    if index.dim() != 1 or index.is_floating_point() or index.is_complex():
        return f"indices must be 1-D integers, got shape {tuple(index.shape)}, {index.dtype}"
    for key, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
            shape = f" of shape {tuple(tensor.shape)}" if isinstance(tensor, torch.Tensor) else ""
            return (
                f"{key} must be a tensor with a first (samples) dimension, got "
                f"{type(tensor).__name__}{shape}"
            )
        if len(tensor) != len(index):
            return f"{key} has {len(tensor)} rows but there are {len(index)} indices"
    return None


def _raise_problems(headers: Sequence[_Header]) -> None:
    problems = [f"rank {r}: {h.problem}" for r, h in enumerate(headers) if h.problem]
    if not problems and any(h.layout != headers[0].layout for h in headers):
        problems = [f"rank {r}: values {h.layout}" for r, h in enumerate(headers)]
        problems.insert(0, "ranks passed values of different names, dtypes or trailing shapes")
    if problems:
        raise ValueError("gather_by_index: " + "; ".join(problems))


def _all_gather_rows(
    tensor: torch.Tensor, counts: Sequence[int], device: torch.device, group: Any
) -> torch.Tensor:
    """All ranks' rows of ``tensor`` (rank ``r`` has ``counts[r]``), concatenated in rank
    order: each rank pads its rows to the longest, so one ``all_gather`` moves them all."""
    longest = max(counts)
    if longest == 0:
        return tensor
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=device)
    padded[: len(tensor)] = tensor.detach()
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])


def _first_of_each_index(index: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct value of ``index``, by value."""
    ordered, order = torch.sort(index, stable=True)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return order[first]
