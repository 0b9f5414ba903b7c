"""One global schedule across ranks (``InterleavedSampler(num_replicas=, rank=)``), with the ranks
simulated in one process: every rank builds the run over the same global samplers.

The oracle is the model of the run without sharding (``spec_model``): each rank must yield one
part of every global batch, the parts interleave back into the global batch, and a state saved
with W ranks continues on W' ranks.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from itertools import islice
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenarios import Scenario, scenarios
from spec_model import SpecError, model_batches
from torch.utils.data import DistributedSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.distributed import check_same_schedule, gather_by_index
from interleaved_sampler.sharding import Sharding

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Batch = tuple[int, list[int]]  # (source index, global indices)


def model_run(scenario: Scenario) -> tuple[list[Batch], list[Any]] | None:
    """The unsharded run as the model gives it, with its tags; None where the library must
    refuse the configuration for every number of ranks (checked elsewhere)."""
    try:
        scenario.sampler()
    except ValueError:
        return None
    main, config = scenario.model()
    tags: list[Any] = []
    try:
        return model_batches(main, config, tags), tags
    except SpecError:
        return None


def splits_evenly(scenario: Scenario, batches: list[Batch], replicas: int) -> bool:
    """What the SPEC allows, read off the model's batches: full batches split evenly, short
    training batches leave no rank empty (short evaluation batches are padded)."""
    length, size = len(scenario.main.build()), scenario.batch_size
    in_use = length if scenario.drop_last and 0 < length < size else size
    for source, batch in batches:
        if source == 0:
            full = len(batch) == in_use
            if (full and len(batch) % replicas) or (not full and len(batch) < replicas):
                return False
        else:
            own = scenario.callbacks[source - 1].batch_size or in_use
            if len(batch) == own and len(batch) % replicas:
                return False
    return True


def with_multiples(scenario: Scenario, factor: int) -> Scenario:
    """``scenario`` with every batch size rounded up to a multiple of ``factor``."""

    def multiple(size: int | None) -> int | None:
        return None if size is None else factor * -(-size // factor)

    callbacks = tuple(replace(c, batch_size=multiple(c.batch_size)) for c in scenario.callbacks)
    return replace(scenario, batch_size=multiple(scenario.batch_size), callbacks=callbacks)


@st.composite
def sharded_scenarios(draw: st.DrawFn, with_start: bool = True) -> tuple[Scenario, int]:
    """A global run and a number of ranks, its batch sizes mostly made multiples of it (runs
    that split, with short batches of every kind), now and then left as drawn (refusals)."""
    replicas = draw(st.integers(1, 4))
    scenario = draw(scenarios(global_=True, with_start=with_start))
    if draw(st.integers(0, 4)):
        scenario = with_multiples(scenario, replicas)
    return scenario, replicas


def rank_batches(sampler: InterleavedSampler) -> list[tuple[int, list[int], Any]]:
    batch_sampler = replace_tagged(sampler)
    return [(batch.source_index, list(batch), batch.tag) for batch in batch_sampler]


def replace_tagged(sampler: InterleavedSampler) -> Any:
    """The tagged batch sampler of ``sampler`` (what a tagged loader iterates)."""
    return sampler.get_data_loader(tagged=True).batch_sampler


def assert_contiguous(parts: list[list[int]], batch: list[int]) -> None:
    """The parts of a contiguous split: chunks in rank order that are the batch, then ranks
    past its end with one of its indices (padding)."""
    joined: list[int] = []
    for part in parts:
        if len(joined) < len(batch):
            joined.extend(part)
        else:
            assert len(part) == 1 and part[0] in batch
    assert joined == batch


def interleave(parts: list[list[int]]) -> list[int]:
    """The global batch the strided parts of the ranks come from."""
    return [parts[j % len(parts)][j // len(parts)] for j in range(sum(map(len, parts)))]


@SETTINGS
@given(sharded_scenarios())
def test_ranks_split_every_global_batch(drawn: tuple[Scenario, int]) -> None:
    scenario, replicas = drawn
    run = model_run(scenario)
    if run is None:
        return
    batches, tags = run
    if not splits_evenly(scenario, batches, replicas):
        with pytest.raises(ValueError, match=rf"num_replicas={replicas}"):
            scenario.sampler(num_replicas=replicas, rank=0)
        return
    samplers = [scenario.sampler(num_replicas=replicas, rank=r) for r in range(replicas)]
    ranks = [rank_batches(sampler) for sampler in samplers]
    assert all(len(sampler.batch_sampler) == len(batches) for sampler in samplers)
    for k, (source, batch) in enumerate(batches):
        parts = [rank[k] for rank in ranks]
        assert all(part[0] == source for part in parts)
        tags_k = [part[2] for part in parts]
        global_tag = replace(tags_k[0], part_size=0)
        assert all(replace(t, part_size=0) == global_tag for t in tags_k)  # the global run's
        indices = [part[1] for part in parts]
        assert all(indices), "no rank gets an empty batch"
        assert global_tag.global_batch_size == len(batch)
        assert sum(t.part_size for t in tags_k) == len(batch)  # padding parts hold nothing
        for tag, part in zip(tags_k, indices, strict=True):
            assert tag.part_size == len(part) or (tag.part_size == 0 and len(part) == 1)
        if source and scenario.callbacks[source - 1].split == "contiguous":
            assert_contiguous(indices, batch)
        elif len(batch) >= replicas:
            assert interleave(indices) == batch  # disjoint, and together the global batch
        else:  # an evaluation batch shorter than the ranks: padded with its own indices
            assert source != 0
            assert [part for part in indices[: len(batch)]] == [[i] for i in batch]
            assert all(len(part) == 1 and part[0] in batch for part in indices)
    model_tags = [
        ((t.progress.epoch, t.progress.update, t.progress.sample), t.batch_in_pass,
         t.batches_in_pass)
        for *_, t in ranks[0]
    ]  # fmt: skip
    assert model_tags == tags


@SETTINGS
@given(sharded_scenarios(with_start=False))
def test_gathered_passes_equal_one_process(drawn: tuple[Scenario, int]) -> None:
    """Per-sample values of every evaluation pass, gathered by index over the ranks, are the
    values of the unsharded pass (padding duplicates dropped)."""
    scenario, replicas = drawn
    run = model_run(scenario)
    if run is None or not splits_evenly(scenario, run[0], replicas):
        return
    ranks = [
        list(scenario.sampler(num_replicas=replicas, rank=r).get_data_loader(tagged=True))
        for r in range(replicas)
    ]
    single = list(scenario.sampler().get_data_loader(tagged=True))
    passes = [k for k, batch in enumerate(single) if batch.source_index and not batch.batch_in_pass]
    for start in passes:
        stop = start + single[start].batches_in_pass
        want = [i for batch in single[start:stop] for i in batch.indices]
        indices = [i for rank in ranks for batch in rank[start:stop] for i in batch.indices]
        values = torch.tensor(indices, dtype=torch.float64) * 10
        assert gather_by_index(values, indices).tolist() == [10.0 * i for i in sorted(want)]
        assert set(indices) == set(want)


def through_json(state: dict[str, Any]) -> dict[str, Any]:
    loaded = json.loads(json.dumps(state))
    assert isinstance(loaded, dict)
    return loaded


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenarios(global_=True),
    st.sampled_from([(2, 1), (1, 3), (4, 2), (3, 2), (2, 4)]),
)
def test_a_state_saved_with_w_ranks_resumes_on_w_prime_after_every_batch(
    scenario: Scenario, pair: tuple[int, int]
) -> None:
    saved_with, resumed_with = pair
    scenario = with_multiples(scenario, math.lcm(*pair))
    kinds = {scenario.main.kind, *(c.sampler.kind for c in scenario.callbacks)}
    if "random" in kinds:  # a fresh RandomSampler draws other orders: no resume is exact
        return
    run = model_run(scenario)
    if run is None:
        return
    batches, _ = run
    if not all(splits_evenly(scenario, batches, w) for w in pair):
        return
    for k in range(len(batches) + 1):
        states = []
        for rank in range(saved_with):
            saver = scenario.sampler(num_replicas=saved_with, rank=rank).batch_sampler
            consumed = list(islice(iter(saver), k))
            assert len(consumed) == k
            states.append(saver.state_dict())
        assert all(state == states[0] for state in states)  # the same global position
        rest = []
        for rank in range(resumed_with):
            resumed = scenario.sampler(num_replicas=resumed_with, rank=rank).batch_sampler
            try:
                resumed.load_state_dict(through_json(states[0]))
            except ValueError as error:  # a position its samplers cannot replay
                assert "repeats" in str(error) or "repeat" in str(error)
                return
            rest.append([list(batch) for batch in resumed])
        assert [len(r) for r in rest] == [len(batches) - k] * resumed_with
        for j, (source, batch) in enumerate(batches[k:]):
            parts = [r[j] for r in rest]
            if source and scenario.callbacks[source - 1].split == "contiguous":
                assert_contiguous(parts, batch)
            elif len(batch) >= resumed_with:
                assert interleave(parts) == batch
            else:
                assert {i for part in parts for i in part} == set(batch)


def seeded_run(replicas: int, rank: int, workers: int = 0) -> Any:
    """60 training samples, batch 6, drop_last=False, val of 7 every 4 updates (batch 4):
    two short batches (6 and 3) per pass, so ranks 3 of 4 pad."""
    train, val = list(range(100, 160)), list(range(500, 507))
    sampler = InterleavedSampler(
        SeededRandomSampler(train, seed=3),
        InterleavedSamplerConfig(batch_size=6, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(val), every_n_updates=4, batch_size=4)
        ],
        num_replicas=replicas,
        rank=rank,
    )
    return sampler.get_data_loader(num_workers=workers, tagged=True)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("k", [3, 5, 13, 27])  # inside an epoch, inside a pass, ...
def test_loaders_with_workers_resume_on_another_number_of_ranks(workers: int, k: int) -> None:
    full = [(b.source, b.data.tolist()) for b in seeded_run(1, 0)]
    states = []
    for rank in range(2):
        loader = seeded_run(2, rank, workers)
        stream = iter(loader)
        for _ in range(k):
            next(stream)
        states.append(loader.state_dict())
        del stream
    assert states[0] == states[1]
    resumed = seeded_run(1, 0, workers)
    resumed.load_state_dict(through_json(states[0]))
    assert [(b.source, b.data.tolist()) for b in resumed] == full[k:]


def test_a_rank_loads_only_its_part() -> None:
    ranks = [[b.data.tolist() for b in seeded_run(2, rank)] for rank in (0, 1)]
    single = [b.data.tolist() for b in seeded_run(1, 0)]
    for k, batch in enumerate(single):
        assert interleave([ranks[0][k], ranks[1][k]]) == batch


def test_an_uneven_short_training_batch_splits_by_at_most_one() -> None:
    def parts(rank: int) -> list[list[int]]:
        sampler = InterleavedSampler(
            SeededRandomSampler(range(27), seed=2),
            InterleavedSamplerConfig(batch_size=8, drop_last=False, max_epochs=2),
            num_replicas=2,
            rank=rank,
        )
        return [list(batch) for batch in sampler.batch_sampler]

    ranks = [parts(0), parts(1)]
    assert [len(part) for part in ranks[0]] == [4, 4, 4, 2] * 2  # 27 = 3 x 8 + 3
    assert [len(part) for part in ranks[1]] == [4, 4, 4, 1] * 2
    single = SeededRandomSampler(range(27), seed=2)
    for epoch in (0, 1):
        single.set_epoch(epoch)
        order = list(single)
        joined = [interleave([r[k] for r in ranks]) for k in range(4 * epoch, 4 * epoch + 4)]
        assert [i for batch in joined for i in batch] == order


class TestRefusals:
    """One clear error at construction, naming the field, the value, num_replicas and the
    values that work; only for batches the run yields."""

    def build(self, replicas: int, length: int = 24, **config: Any) -> InterleavedSampler:
        callbacks = config.pop("callbacks", [])
        return InterleavedSampler(
            SequentialSampler(range(length)),
            InterleavedSamplerConfig(**config),
            callback_samplers=callbacks,
            num_replicas=replicas,
        )

    def test_a_batch_size_not_divisible(self) -> None:
        with pytest.raises(ValueError) as error:
            self.build(4, batch_size=6, max_epochs=1)
        message = str(error.value)
        assert "batch_size=6 must be a multiple of num_replicas=4" in message
        assert "valid num_replicas for this run: 1, 2, 3, 6" in message

    def test_a_short_training_batch_that_would_leave_a_rank_empty(self) -> None:
        with pytest.raises(ValueError) as error:  # 26 = 3 x 8 + 2
            self.build(4, length=26, batch_size=8, drop_last=False, max_epochs=1)
        message = str(error.value)
        assert (
            "the last training batch of each epoch (26 training samples in batches of "
            "batch_size=8, drop_last=False) has 2 samples, fewer than num_replicas=4"
        ) in message
        assert "valid num_replicas for this run: 1, 2; or change batch_size" in message
        assert "batch_size=2" not in message  # not a setting of the user's

    def test_not_when_the_run_stops_before_the_batch(self) -> None:
        sampler = self.build(4, length=26, batch_size=8, drop_last=False, max_updates=3)
        assert len(sampler.batch_sampler) == 3

    def test_a_callback_batch_size_not_divisible(self) -> None:
        val = SamplerIntervalConfig(SequentialSampler(range(10)), every_n_updates=2, batch_size=3)
        with pytest.raises(ValueError) as error:
            self.build(2, batch_size=4, max_epochs=1, callbacks=[val])
        message = str(error.value)
        assert "callback_samplers[0].batch_size=3 must be a multiple of num_replicas=2" in message
        assert "the callback0 passes (10 samples)" in message
        assert "valid num_replicas for this run: 1" in message

    def test_an_inherited_callback_batch_size_names_the_main_one(self) -> None:
        val = SamplerIntervalConfig(SequentialSampler(range(10)), every_n_updates=2, name="val")
        with pytest.raises(ValueError, match=r"batch_size=6 .*callback_samplers\[0\] sets no"):
            self.build(4, batch_size=6, max_epochs=0, callbacks=[val])

    def test_a_callback_that_never_runs_imposes_nothing(self) -> None:
        val = SamplerIntervalConfig(SequentialSampler(range(10)), every_n_epochs=5, batch_size=3)
        sampler = self.build(2, batch_size=4, max_epochs=1, callbacks=[val])
        assert len(sampler.batch_sampler) == 6

    def test_short_evaluation_batches_are_padded_not_refused(self) -> None:
        val = SamplerIntervalConfig(SequentialSampler(range(9)), every_n_updates=3, batch_size=4)
        sampler = InterleavedSampler(
            SequentialSampler(range(24)),
            InterleavedSamplerConfig(batch_size=4, max_updates=3),
            callback_samplers=[val],
            num_replicas=4,
            rank=3,
        )
        passes = [[i - 24 for i in batch] for batch in sampler.batch_sampler][3:]
        assert passes == [[3], [7], [8]]  # its parts of [0..3], [4..7], and [8] repeated

    def test_a_sampler_that_shards_itself(self) -> None:
        with pytest.raises(ValueError, match=r"must be global .*num_replicas=2, rank=1"):
            InterleavedSampler(
                DistributedSampler(range(10), num_replicas=2, rank=1),
                InterleavedSamplerConfig(batch_size=2, max_epochs=1),
                num_replicas=2,
                rank=1,
            )

    @pytest.mark.parametrize(
        ("replicas", "rank", "message"),
        [(0, 0, "num_replicas must be >= 1"), (2, 2, r"rank must be in \[0, num_replicas=2\)")],
    )
    def test_invalid_ranks(self, replicas: int, rank: int, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Sharding(replicas, rank)


def test_a_per_rank_state_on_another_number_of_processes_is_a_clear_error() -> None:
    def loader(replicas: int) -> Any:
        return InterleavedSampler(
            SeededRandomSampler(range(40), num_replicas=replicas, rank=0),
            InterleavedSamplerConfig(batch_size=4, max_epochs=1),
        ).get_data_loader()

    saved = loader(2)
    next(iter(saved))
    with pytest.raises(ValueError) as error:
        loader(1).load_state_dict(saved.state_dict())
    message = str(error.value)
    assert "per_rank_sampler_replicas" in message
    assert "resumes on the same number of processes only" in message
    assert "InterleavedSampler(..., num_replicas=, rank=)" in message
    same = loader(2)
    same.load_state_dict(saved.state_dict())  # the same number of processes: fine
    assert len(list(same)) == 4


def test_the_global_state_names_no_number_of_ranks() -> None:
    states = [seeded_run(w, r).state_dict() for w, r in ((1, 0), (2, 0), (2, 1))]
    assert states[0] == states[1] == states[2]


class TestCheckSameSchedule:
    """Without a process group the world has one rank."""

    def test_a_global_run_for_one_rank_passes(self) -> None:
        check_same_schedule(_sampler(1))

    def test_a_global_run_for_another_world_size_is_reported(self) -> None:
        with pytest.raises(ValueError, match=r"interleaved sampler has num_replicas=2, rank=1"):
            check_same_schedule(_sampler(2, 1))


def _sampler(replicas: int, rank: int = 0) -> InterleavedSampler:
    return InterleavedSampler(
        SeededRandomSampler(range(12)),
        InterleavedSamplerConfig(batch_size=4, max_epochs=1),
        num_replicas=replicas,
        rank=rank,
    )


def test_the_cache_caches_each_ranks_part() -> None:
    def run(rank: int, cache: bool) -> list[list[int]]:
        val = SamplerIntervalConfig(
            SequentialSampler(list(range(50, 57))), every_n_updates=2, batch_size=4, cache=cache
        )
        sampler = InterleavedSampler(
            SeededRandomSampler(list(range(24)), seed=1),
            InterleavedSamplerConfig(batch_size=4, max_epochs=1),
            callback_samplers=[val],
            num_replicas=2,
            rank=rank,
        )
        return [batch.tolist() for batch in sampler.get_data_loader()]

    for rank in (0, 1):
        assert run(rank, cache=True) == run(rank, cache=False)
