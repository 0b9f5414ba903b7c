"""The pure schedule's closed forms against brute force, at sizes the model cannot reach."""

from __future__ import annotations

from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from interleaved_sampler import InterleavedSamplerConfig
from interleaved_sampler.schedule import (
    NEVER,
    AtUpdates,
    CallbackPlan,
    EpochStructure,
    EveryNEpochs,
    EveryNSamples,
    EveryNUpdates,
    Schedule,
    floor_sum,
)


@given(st.integers(0, 60), st.integers(1, 50), st.integers(0, 200), st.integers(0, 200))
def test_floor_sum(count: int, divisor: int, slope: int, offset: int) -> None:
    expected = sum((slope * i + offset) // divisor for i in range(count))
    assert floor_sum(count, divisor, slope, offset) == expected


structures = st.builds(
    EpochStructure.create, st.integers(1, 300), st.integers(1, 64), st.booleans()
)


@settings(max_examples=300, deadline=None)
@given(
    structures,
    st.sampled_from([EveryNEpochs, EveryNUpdates, EveryNSamples]),
    st.integers(1, 400),
    st.integers(0, 500),
    st.integers(0, 500),
)
def test_count_and_next_due_follow_the_spec_due_rules(
    structure: EpochStructure, rule_type: type, n: int, first: int, span: int
) -> None:
    rule = rule_type(n)
    last = first + span
    due = [u for u in range(first + 1, last + 1) if due_by_spec(structure, rule_type, n, u)]
    assert rule.count(structure, first, last) == len(due)
    following = next(u for u in count(first + 1) if due_by_spec(structure, rule_type, n, u))
    assert rule.next_due(structure, first) == following


def due_by_spec(structure: EpochStructure, rule_type: type, n: int, update: int) -> bool:
    """SPEC rule 4, word for word: is a callback due after update ``update``?"""
    per_epoch = structure.updates_per_epoch
    if rule_type is EveryNEpochs:
        return update % per_epoch == 0 and (update // per_epoch) % n == 0
    if rule_type is EveryNUpdates:
        return update % n == 0
    before, after = structure.progress_at(update - 1), structure.progress_at(update)
    return before.sample // n < after.sample // n


@settings(max_examples=200, deadline=None)
@given(
    structures,
    st.lists(st.integers(1, 300), unique=True).map(sorted),
    st.integers(0, 400),
    st.integers(0, 400),
)
def test_at_updates_count_and_next_due(
    structure: EpochStructure, updates: list[int], first: int, span: int
) -> None:
    rule = AtUpdates(tuple(updates))
    last = first + span
    assert rule.count(structure, first, last) == len([u for u in updates if first < u <= last])
    later = [u for u in updates if u > first]
    assert rule.next_due(structure, first) == (later[0] if later else NEVER)


@settings(max_examples=200, deadline=None)
@given(structures, st.integers(0, 2000))
def test_updates_to_reach_is_the_fewest_updates(structure: EpochStructure, sample: int) -> None:
    update = structure.updates_to_reach(sample)
    assert structure.progress_at(update).sample >= sample
    assert update == 0 or structure.progress_at(update - 1).sample < sample


def test_length_of_a_million_update_run() -> None:
    # 10^6 training batches; a 1,000-sample pass of 4 batches (256, 256, 256, 232) after every
    # 1,000th update
    config = InterleavedSamplerConfig(batch_size=256, max_updates=10**6)
    callback = CallbackPlan(EveryNUpdates(1000), pass_len=1000, batch_size=256)
    schedule = Schedule.create(config, sampler_len=4096, callbacks=[callback])
    assert schedule.num_batches == 10**6 + 1000 * 4
    samples = CallbackPlan(EveryNSamples(10**6 + 1), pass_len=1, batch_size=1)
    schedule = Schedule.create(config, sampler_len=4096, callbacks=[samples])
    assert schedule.num_batches == 10**6 + 256 * 10**6 // (10**6 + 1)
