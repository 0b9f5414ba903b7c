"""Ranks that agree: what a run over several processes checks with the other ranks itself.

A global run (``InterleavedSampler(..., num_replicas=W, rank=r)``) is exact only if every
rank builds the same run: the same samplers (type and seed), datasets, batch sizes and
configuration. :class:`Ranks` is the process group (``torch.distributed``) a run is split
over; :meth:`Ranks.agree` compares the ranks' :class:`RankFacts` in one small collective
and raises the same clear error on every rank when they differ. The batch sampler of a
global run calls it at its first iteration;
:func:`~interleaved_sampler.distributed.check_same_schedule` is the same check, called
explicitly. A sampler whose order comes from each process's own global random generator
(torch's ``RandomSampler`` without a generator) takes rank 0's order on every rank
(:meth:`Ranks.rank_zero_order`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from interleaved_sampler.samplers import draws_from_global_rng, sampler_identity, shard_of
from interleaved_sampler.sharding import Sharding

if TYPE_CHECKING:
    from interleaved_sampler.batching import InterleavedBatchSampler, Source
    from interleaved_sampler.schedule import Schedule


@dataclass(frozen=True)
class Shard:
    """What shards: a sampler (per-rank samplers) or the interleaved sampler itself (one
    global schedule), and its ``num_replicas`` and ``rank``."""

    sampler: str
    num_replicas: int
    rank: int
    is_sampler: bool = True


@dataclass(frozen=True)
class RankFacts:
    """What one rank's run is: the quantities every rank must have alike (``run``, by
    name) and what shards it (``shards``, which differ by rank).

    Args:
        rank: the rank in the group that compares.
        run: the run's facts by name (see :func:`run_facts`).
        shards: the samplers that shard (per-rank samplers), or the interleaved sampler
            itself in a global run.
    """

    rank: int
    run: dict[str, object]
    shards: tuple[Shard, ...]

    @classmethod
    def of(cls, batch_sampler: InterleavedBatchSampler, rank: int) -> RankFacts:
        """The facts of the run ``batch_sampler`` yields, on rank ``rank``: its
        :func:`run_facts` and where its next iteration starts (a loaded state)."""
        run = run_facts(batch_sampler.schedule, batch_sampler.sources)
        run["resume after batch"] = batch_sampler.resume_position
        return cls(rank, run, _shards(batch_sampler.sources, batch_sampler.sharding))

    def digest(self) -> list[int]:
        """:attr:`run` as 4 int64 words (SHA-256): equal on two ranks iff their runs are
        (to the odds of a hash collision)."""
        text = repr(sorted(self.run.items())).encode()
        raw = hashlib.sha256(text).digest()
        return [int.from_bytes(raw[i : i + 8], "little", signed=True) for i in range(0, 32, 8)]

    def sharding_problems(self, world: int) -> list[str]:
        """Why this rank's shards do not split over a group of ``world`` ranks (none: they
        do): ``num_replicas`` must be ``world`` and ``rank`` this rank."""
        problems = []
        for shard in self.shards:
            if shard.num_replicas != world or shard.rank != self.rank:
                fix = f"use num_replicas={world}, rank={self.rank}"
                if shard.is_sampler and shard.num_replicas == 1:
                    fix += (
                        ", or keep the sampler global and give InterleavedSampler(..., "
                        f"num_replicas={world}, rank={self.rank}) (one global schedule)"
                    )
                problems.append(
                    f"rank {self.rank}: the {shard.sampler} has num_replicas="
                    f"{shard.num_replicas}, rank={shard.rank}, but the group has {world} "
                    f"ranks and this is rank {self.rank}; {fix}"
                )
        return problems


def run_facts(schedule: Schedule, sources: Sequence[Source]) -> dict[str, object]:
    """What must be the same on every rank, by name: the schedule (lengths, batch sizes,
    ``drop_last``, start, end, intervals), each sampler's identity (type and seed) and
    each dataset's length. Values are plain data with a stable ``repr``."""
    structure = schedule.structure
    facts: dict[str, object] = {
        "len(train sampler)": structure.sampler_len,
        "batch_size in use": structure.batch_size,
        "drop_last": structure.drop_last,
        "evaluation": schedule.evaluation,
        "start update": schedule.start.update,
        "end update": schedule.end_update,
        "number of callbacks": len(schedule.callbacks),
    }
    for i, plan in enumerate(schedule.callbacks):
        facts[f"callback {i}: interval"] = f"{plan.rule.field}={plan.rule.setting}"
        facts[f"callback {i}: len(sampler)"] = plan.pass_len
        facts[f"callback {i}: batch_size"] = plan.batch_size
    for source in sources:
        facts[f"{source.name} sampler"] = _identity(source.sampler)
        facts[f"len({source.name} dataset)"] = _length(source.dataset)
    facts["number of batches"] = schedule.num_batches
    return facts


def _identity(sampler: Any) -> str:
    identity = sampler_identity(sampler)
    options = ", ".join(f"{k}={v}" for k, v in identity.items() if k != "type" and v is not None)
    return f"{identity['type']}({options})"


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None


def _shards(sources: Sequence[Source], sharding: Sharding) -> tuple[Shard, ...]:
    """What shards the run: the interleaved sampler itself (one global schedule), or else
    the samplers that shard (per-rank samplers), main first."""
    if sharding.is_sharded:  # its samplers are global: checked at construction
        return (Shard("interleaved sampler", sharding.num_replicas, sharding.rank, False),)
    shards = []
    for source in sources:
        shard = shard_of(source.sampler)
        if shard is not None:
            shards.append(Shard(f"{source.name} sampler ({type(source.sampler).__name__})", *shard))
    return tuple(shards)


@dataclass(frozen=True)
class Ranks:
    """A process group as one rank sees it: ``group`` (``None``: the default group), its
    ``size`` and this process's ``rank`` in it.

    Example:
        >>> Ranks.of_group(None)  # no process group initialized: this process alone
        Ranks(group=None, size=1, rank=0)
    """

    group: Any
    size: int
    rank: int

    @classmethod
    def of_group(cls, group: Any) -> Ranks:
        """``group`` (``None``: the whole world); this process alone without an initialized
        process group."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls(group, 1, 0)
        return cls(group, dist.get_world_size(group), dist.get_rank(group))

    @classmethod
    def of_run(cls, sharding: Sharding) -> Ranks | None:
        """The group a global run is split over: the default group when ``torch.distributed``
        is initialized with ``num_replicas`` processes; ``None`` otherwise (a run that is not
        split, or one split over a group the sampler cannot know, such as the data-parallel
        group of a tensor-parallel run: check it with ``check_same_schedule(sampler,
        group)``)."""
        if not sharding.is_sharded or not (dist.is_available() and dist.is_initialized()):
            return None
        if dist.get_world_size() != sharding.num_replicas:
            return None
        return cls.of_group(None)

    def agree(self, facts: RankFacts) -> None:
        """Raise the same ``ValueError`` on every rank unless every rank has the same run
        (:attr:`RankFacts.run`) and shards over exactly this group. A collective: one
        ``all_gather`` of 5 integers per rank; only when something differs, a second one
        gathers the facts that name it.

        Raises:
            ValueError: naming every fact that differs (with each rank's value) and every
                rank whose sharding does not match the group.
        """
        local_problem = bool(facts.sharding_problems(self.size))
        if self.size > 1:
            mine = torch.tensor([*facts.digest(), int(local_problem)], device=self._device())
            gathered = [torch.empty_like(mine) for _ in range(self.size)]
            dist.all_gather(gathered, mine, group=self.group)
            if all(torch.equal(each[:4], mine[:4]) and not each[4] for each in gathered):
                return
            every = [facts] * self.size
            dist.all_gather_object(every, facts, group=self.group)
        elif not local_problem:
            return
        else:
            every = [facts]
        problems = _differences(every) + [
            problem for rank in every for problem in rank.sharding_problems(self.size)
        ]
        raise ValueError(
            "the interleaved samplers of the ranks do not give every rank the same schedule "
            "over distinct shards, so ranks would wait for each other forever or train on "
            "wrong data:\n  "
            + "\n  ".join(problems)
            + "\nBuild the same run on every rank: the same samplers (type and seed: not one "
            "seeded by rank), datasets, batch sizes and configuration"
        )

    def rank_zero_order(self, sampler: Any) -> Iterator[int]:
        """A new iteration of ``sampler`` in rank 0's order, for a sampler that draws its
        order from the global random generator
        (:func:`~interleaved_sampler.samplers.draws_from_global_rng`). A collective (one
        broadcast of rank 0's generator state).

        Every rank's global generator ends where its own iteration of ``sampler`` leaves
        it (the sampler is iterated once from this rank's own state too, for its draws), so
        the rank's later random numbers (dropout) are those it draws without this.
        """
        own = torch.get_rng_state()
        zero = own.to(self._device(), copy=True)  # the broadcast writes into it
        source = 0 if self.group is None else dist.get_global_rank(self.group, 0)
        dist.broadcast(zero, src=source, group=self.group)
        torch.set_rng_state(zero.cpu())
        try:
            order = iter(sampler)
            first = list(islice(order, 1))  # the sampler draws its order when first asked
        finally:
            torch.set_rng_state(own)
        next(iter(sampler), None)  # this rank's own draws
        return chain(first, order)

    def _device(self) -> torch.device:
        return communication_device(self.group)


def ranks_for(sharding: Sharding, sources: Sequence[Source]) -> Ranks | None:
    """The group a global run agrees over (see :meth:`Ranks.of_run`); refuses a global run
    with a sampler that draws its order from each process's global random generator when
    there is no such group to take rank 0's order from.

    Raises:
        ValueError: naming the sampler, ``num_replicas`` and what to use instead.
    """
    ranks = Ranks.of_run(sharding)
    if ranks is not None or not sharding.is_sharded:
        return ranks
    for source in sources:
        if draws_from_global_rng(source.sampler):
            replicas = sharding.num_replicas
            raise ValueError(
                f"{source.describe()} has no generator: it draws its order from each "
                "process's global random generator, so in a global run split over "
                f"num_replicas={replicas} ranks each rank would split another order (some "
                "samples trained twice, others never). Initialize torch.distributed with "
                f"{replicas} processes before building the sampler (every rank then takes "
                "rank 0's order), or give the sampler a generator seeded alike on every "
                "rank (generator=torch.Generator().manual_seed(0)), or use "
                "SeededRandomSampler(dataset, seed=0)"
            )
    return None


def communication_device(group: Any) -> torch.device:
    """Where ``group``'s collectives take tensors: the current CUDA device for ``nccl``,
    the CPU otherwise (``gloo``)."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _differences(facts: Sequence[RankFacts]) -> list[str]:
    keys = list(dict.fromkeys(key for rank in facts for key in rank.run))
    problems = []
    for key in keys:
        values = [rank.run.get(key, "absent") for rank in facts]
        if any(value != values[0] for value in values):
            listed = ", ".join(f"rank {r.rank}: {v}" for r, v in zip(facts, values, strict=True))
            problems.append(f"{key} differs: {listed}")
    return problems
