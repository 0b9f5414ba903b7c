"""The state protocol: a loader or batch sampler saved after any batch resumes exactly."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from itertools import islice
from typing import Any

import pytest
import torch
from helpers import IdentityDataset, seq
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scenarios import Scenario, scenarios
from spec_model import ModelTag, model_batches
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler
from tqdm import tqdm

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)

# (source_index, dataset-local indices, progress, batch_in_pass, batches_in_pass)
Row = tuple[int, list[int], tuple[int, int, int], int, int]


def rows(batches: Any) -> list[Row]:
    return [
        (b.source_index, list(b.indices), tuple(vars(b.progress).values()), b.batch_in_pass,
         b.batches_in_pass)
        for b in batches
    ]  # fmt: skip


def model_rows(scenario: Scenario, sampler: InterleavedSampler) -> list[Row]:
    tags: list[ModelTag] = []
    main, config = scenario.model()
    offsets = [0, *sampler.index_offsets]
    out = []
    for (source, indices), (progress, position, count) in zip(
        model_batches(main, config, tags), tags, strict=True
    ):
        local = [index - offsets[source] for index in indices]
        out.append((source, local, progress, position, count))
    return out


def consume(loader: Any, count: int) -> Iterator[Any]:
    """Start iterating ``loader`` and receive its first ``count`` batches."""
    stream = iter(loader)
    for _ in islice(stream, count):
        pass
    return stream


def through_json(state: dict[str, Any]) -> dict[str, Any]:
    state = json.loads(json.dumps(state))
    assert isinstance(state, dict)
    return state


def resumed(scenario: Scenario, state: dict[str, Any], **loader_args: Any) -> list[Row]:
    loader = scenario.sampler().get_data_loader(tagged=True, **loader_args)
    loader.load_state_dict(through_json(state))
    return rows(loader)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_a_loader_saved_after_any_batch_resumes_exactly(scenario: Scenario, data: Any) -> None:
    check_resumes_exactly(scenario, data)


def check_resumes_exactly(scenario: Scenario, data: Any) -> None:
    """A tagged loader of ``scenario`` yields the model's run, and one saved after a few
    drawn batches resumes exactly (as does the running one)."""
    try:
        sampler = scenario.sampler()
    except ValueError:
        return
    full = rows(sampler.get_data_loader(tagged=True))
    assert full == model_rows(scenario, sampler)
    stops = [*data.draw(st.lists(st.integers(0, len(full)), max_size=4)), 0, len(full)]
    for k in stops:
        loader = scenario.sampler().get_data_loader(tagged=True)
        stream = consume(loader, k)
        state = loader.state_dict()
        assert state["batches"] == k
        assert resumed(scenario, state) == full[k:]
        assert rows(stream) == full[k:]  # saving does not disturb the running loader


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_a_batch_sampler_saved_after_any_batch_resumes_exactly(
    scenario: Scenario, data: Any
) -> None:
    try:
        sampler = scenario.sampler()
    except ValueError:
        return
    full = [list(batch) for batch in sampler.batch_sampler]
    k = data.draw(st.integers(0, len(full)))
    saved = scenario.sampler().batch_sampler
    consume(saved, k)
    state = saved.state_dict()
    assert state["batches"] == k
    fresh = scenario.sampler().batch_sampler
    fresh.load_state_dict(through_json(state))
    assert [list(batch) for batch in fresh] == full[k:]
    assert [list(batch) for batch in fresh] == full  # the next iteration starts over


def eval_every_3() -> InterleavedSampler:
    """Two epochs of 10 updates, a 3-batch pass every 5 updates and a 2-batch one per epoch."""
    return InterleavedSampler(
        seq(20),
        InterleavedSamplerConfig(batch_size=2, max_epochs=2, drop_last=False),
        callback_samplers=[
            SamplerIntervalConfig(seq(5, base=100), every_n_updates=5, batch_size=2, name="val"),
            SamplerIntervalConfig(seq(4, base=200), every_n_epochs=1, batch_size=2, name="test"),
        ],
    )


@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_the_consumed_position_with_prefetching_workers(method: str) -> None:
    full = rows(eval_every_3().get_data_loader(tagged=True))
    assert len(full) == 20 + 4 * 3 + 2 * 2
    args = {"num_workers": 2, "multiprocessing_context": method}
    # inside an epoch, inside a pass, right after a pass, between the two passes after
    # update 10, and the end
    for k in (2, 6, 8, 16, 36) if method == "fork" else (16,):
        loader = eval_every_3().get_data_loader(tagged=True, **args)
        stream = consume(loader, k)
        state = loader.state_dict()  # the workers have prefetched beyond k by now
        assert state["batches"] == k
        assert rows(stream) == full[k:]  # the running loader goes on undisturbed
        assert resumed_sampler(eval_every_3, state, **args) == full[k:]


def resumed_sampler(make: Any, state: dict[str, Any], **loader_args: Any) -> list[Row]:
    loader = make().get_data_loader(tagged=True, **loader_args)
    loader.load_state_dict(state)
    return rows(loader)


def test_persistent_workers_resume_and_then_start_over() -> None:
    full = rows(eval_every_3().get_data_loader(tagged=True))
    loader = eval_every_3().get_data_loader(tagged=True, num_workers=2, persistent_workers=True)
    loader.load_state_dict(through_json(eval_state(7)))
    assert rows(loader) == full[7:]
    assert loader.state_dict()["batches"] == len(full)
    assert rows(loader) == full


@pytest.mark.parametrize("k", [0, 6, 16, 36])  # the start, inside a pass, between passes, the end
def test_batches_consumed_is_the_position_a_resumed_progress_bar_starts_at(k: int) -> None:
    args = {"num_workers": 2, "multiprocessing_context": "fork"}
    loader = eval_every_3().get_data_loader(tagged=True, **args)
    assert loader.batches_consumed == 0
    stream = consume(loader, k)
    assert loader.batches_consumed == k  # received, not what the workers prefetched
    resumed = eval_every_3().get_data_loader(tagged=True, **args)
    resumed.load_state_dict(through_json(loader.state_dict()))
    assert (resumed.batches_consumed, len(resumed)) == (k, 36)  # len stays the whole run
    bar = tqdm(resumed, initial=resumed.batches_consumed, total=len(resumed), file=io.StringIO())
    for received, _ in enumerate(bar, start=k + 1):
        assert resumed.batches_consumed == received  # counts mid-iteration
    assert bar.n == bar.total == 36  # the bar ends full, not at 36 - k
    assert loader.batches_consumed == k
    assert len(list(stream)) == 36 - k
    assert loader.batches_consumed == 36


def eval_state(batches: int) -> dict[str, Any]:
    loader = eval_every_3().get_data_loader()
    consume(loader, batches)
    return loader.state_dict()


@pytest.mark.parametrize("snapshot_every", [1, 5])
def test_torchdata_stateful_dataloader_resumes_without_fast_forwarding(
    snapshot_every: int,
) -> None:
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def make() -> tuple[InterleavedSampler, Any]:
        sampler = eval_every_3()
        loader = stateful.StatefulDataLoader(
            sampler.dataset,
            batch_sampler=sampler.batch_sampler,
            collate_fn=sampler.collator,
            num_workers=2,
            snapshot_every_n_steps=snapshot_every,
        )
        return sampler, loader

    sampler, loader = make()
    assert isinstance(sampler.batch_sampler, stateful.Stateful)
    full = [batch.tolist() for batch in loader]
    for k in (3, 5, 10, 13):
        _, loader = make()
        stream = consume(loader, k)
        state = loader.state_dict()
        del stream
        sampler, loader = make()
        loader.load_state_dict(state)
        produced = []
        for batch in loader:
            produced.append(sampler.batch_sampler.state_dict()["batches"])
            assert batch.tolist() == full[k + len(produced) - 1]
        assert len(produced) == len(full) - k
        assert produced[0] > k  # the batch sampler started at k: nothing was fast-forwarded


class CountingSampler(Sampler[int]):
    """A sequential sampler that counts its iterations and every index it is asked for."""

    repeats_epoch_order = True

    def __init__(self, data_source: Any) -> None:
        self.data_source = data_source
        self.iterations = 0
        self.requested: list[int] = []  # per iteration

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        self.iterations += 1
        self.requested.append(0)
        for index in range(len(self.data_source)):
            self.requested[-1] += 1
            yield index


def test_a_resume_in_the_last_epoch_iterates_the_main_sampler_once() -> None:
    def make() -> tuple[CountingSampler, Any]:
        main = CountingSampler(IdentityDataset(10))
        config = InterleavedSamplerConfig(batch_size=3, max_epochs=100)
        callbacks = [SamplerIntervalConfig(seq(4, base=50), every_n_epochs=7)]
        return main, InterleavedSampler(main, config, callback_samplers=callbacks)

    main, sampler = make()
    total = len(sampler.batch_sampler)
    k = total - 2  # inside the last epoch: batch 2 of its 3
    sampler.batch_sampler.load_position(k)
    assert [list(batch) for batch in sampler.batch_sampler] == [[3, 4, 5], [6, 7, 8]]
    assert main.iterations == 1
    assert main.requested == [9]  # 3 skipped without loading, 6 used; the 10th is dropped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_main_sampler_is_asked_for_exactly_the_indices_each_epoch_uses(
    scenario: Scenario,
) -> None:
    try:
        sampler = scenario.sampler()
    except ValueError:
        return
    counting = CountingSampler(range(len(sampler.main_sampler)))
    counted = InterleavedSampler(
        counting, scenario.config(), callback_samplers=sampler.extra_samplers
    )
    list(counted.batch_sampler)
    structure = counted.schedule.structure
    per_epoch, used = structure.updates_per_epoch, structure.samples_per_epoch
    start, end = counted.schedule.start.update, counted.schedule.end_update
    if counted.schedule.evaluation or start == end:
        assert counting.requested == []
        return
    expected = []
    for epoch in range(start // per_epoch, -(-end // per_epoch)):
        first = max(start, epoch * per_epoch) - epoch * per_epoch
        last = min(end, (epoch + 1) * per_epoch) - epoch * per_epoch
        expected.append(min(last * structure.batch_size, used) if last else 0)
        assert first <= last
    assert counting.requested == expected


@pytest.mark.parametrize("drop_last", [True, False])
def test_random_sampler_runs_give_the_reference_orders(drop_last: bool) -> None:
    """torch's RandomSampler draws a new permutation when asked past its end: reading one
    index too many per epoch would change every later epoch's order."""

    def random_sampler() -> RandomSampler:
        return RandomSampler(range(11), generator=torch.Generator().manual_seed(7))

    config = InterleavedSamplerConfig(batch_size=4, max_epochs=4, drop_last=drop_last)
    ours = [list(b) for b in InterleavedSampler(random_sampler(), config).batch_sampler]
    reference = random_sampler()
    expected = []
    for _ in range(4):  # the reference reads exactly S = 8 (drop_last) or 11 indices per epoch
        epoch = list(islice(iter(reference), 8 if drop_last else 11))
        expected += [epoch[i : i + 4] for i in range(0, len(epoch), 4)]
    assert ours == expected


def test_a_state_is_small_plain_data() -> None:
    small = eval_state(5)
    long_run = InterleavedSampler(
        seq(20), InterleavedSamplerConfig(batch_size=2, max_updates=10**9)
    ).get_data_loader()
    consume(long_run, 5)
    assert through_json(small) == small
    assert len(json.dumps(long_run.state_dict())) < len(json.dumps(small)) + 20
    assert small["version"] == 2 and small["batches"] == 5
    # updates 1-5, then batch 0 of the pass over val after update 5 was received
    assert eval_state(6)["position"] == {
        "update": 5, "passes_done": [], "pass": "val", "batch_in_pass": 1
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s["position"].update(update=-1), "position.update must be an int >= 0"),
        (lambda s: s["position"].update(update=1), "no such pass there"),
        (lambda s: s["position"].update(**{"pass": "x"}), "names the callback 'x'"),
        (lambda s: s.update(version=99), "version 99"),
        (lambda s: s["fingerprint"].update(sampler_len=7), "sampler_len: the state has 7"),
        (lambda s: s["fingerprint"]["callbacks"][1].update(name="t"), "callbacks[1].name"),
        (lambda s: s["fingerprint"]["samplers"][0].update(seed=3), "samplers[0].seed"),
        (lambda s: s.pop("fingerprint"), "keys version, fingerprint, position, batches"),
        (lambda s: s.pop("position"), "position must be a dict"),
    ],
)
def test_foreign_or_broken_states_are_refused(change: Any, named: str) -> None:
    state = eval_state(6)  # inside the pass over val after update 5
    change(state)
    loader = eval_every_3().get_data_loader()
    with pytest.raises(ValueError) as error:
        loader.load_state_dict(state)
    assert named in str(error.value)


def test_a_state_of_other_data_or_samplers_names_what_differs() -> None:
    other = InterleavedSampler(
        seq(20),
        InterleavedSamplerConfig(batch_size=2, max_epochs=3, drop_last=True),
        callback_samplers=[
            SamplerIntervalConfig(seq(6, base=100), every_n_updates=5, batch_size=2, name="val"),
            SamplerIntervalConfig(
                RandomSampler(range(4)), every_n_epochs=1, batch_size=2, name="test"
            ),
        ],
    ).get_data_loader()
    with pytest.raises(ValueError) as error:
        other.load_state_dict(eval_state(4))
    message = str(error.value)
    assert "drop_last: the state has False, this run has True" in message
    assert "callbacks[0].pass_len: the state has 5, this run has 6" in message
    assert "samplers[2].type: the state has 'SequentialSampler', this run has 'Random" in message
    assert "end_update" not in message and "every_n" not in message


def identity_run(train: Any) -> InterleavedSampler:
    """20 samples in batches of 4 for 2 epochs over ``train``."""
    return InterleavedSampler(train, InterleavedSamplerConfig(batch_size=4, max_epochs=2))


@pytest.mark.parametrize(
    ("resumed_into", "named"),
    [
        (
            SeededRandomSampler(range(20), seed=4),
            "samplers[0].seed: the state has 3, this run has 4",
        ),
        (SequentialSampler(range(20)), "samplers[0].type: the state has 'SeededRandomSampler'"),
        (
            RandomSampler(range(20), generator=torch.Generator().manual_seed(4)),
            "samplers[0].type: the state has 'SeededRandomSampler', this run has 'RandomSampler'",
        ),
    ],
)
def test_a_state_resumes_only_into_a_sampler_of_its_type_and_seed(
    resumed_into: Any, named: str
) -> None:
    """A mid-epoch state of SeededRandomSampler(seed=3) loaded into another seed or type of
    sampler over the same 20 samples (its resumed epoch would cover 13-15 of them)."""
    saved = identity_run(SeededRandomSampler(range(20), seed=3)).get_data_loader()
    consume(saved, 2)
    loader = identity_run(resumed_into).get_data_loader()
    with pytest.raises(ValueError) as error:
        loader.load_state_dict(saved.state_dict())
    assert named in str(error.value)
    assert "same samplers (type and seed)" in str(error.value)


@pytest.mark.parametrize(
    ("saved_with", "resumed_into", "named"),
    [
        (3, 4, "samplers[0].seed: the state has 3, this run has 4"),
        (3, None, "samplers[0].seed: the state has 3, this run has None"),
    ],
)
def test_a_random_sampler_state_resumes_only_with_a_generator_of_its_seed(
    saved_with: int, resumed_into: int | None, named: str
) -> None:
    def sampler(seed: int | None) -> RandomSampler:
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        return RandomSampler(range(20), generator=generator)

    saved = identity_run(sampler(saved_with)).get_data_loader()
    consume(saved, 5)  # an epoch boundary: the sampler need not replay its order
    with pytest.raises(ValueError) as error:
        identity_run(sampler(resumed_into)).get_data_loader().load_state_dict(saved.state_dict())
    assert named in str(error.value)
    same = identity_run(sampler(saved_with)).get_data_loader()
    same.load_state_dict(saved.state_dict())  # the same seed: accepted
    assert same.batches_consumed == 5


def test_a_distributed_sampler_state_resumes_only_with_its_shuffle() -> None:
    def run(shuffle: bool) -> Any:
        train = DistributedSampler(range(20), num_replicas=1, rank=0, shuffle=shuffle)
        return identity_run(train).get_data_loader()

    saved = run(True)
    consume(saved, 2)
    with pytest.raises(ValueError, match=r"samplers\[0\]\.shuffle: the state has True, this run"):
        run(False).load_state_dict(saved.state_dict())


def changed_run(scenario: Scenario, data: Any) -> Scenario:
    """The same data, samplers and batch sizes with another end and other due rules."""
    stops = data.draw(
        st.sampled_from([{"max_updates": 37}, {"max_epochs": 3}, {"max_samples": 50}])
    )
    callbacks = tuple(
        replace(
            callback,
            interval=data.draw(st.sampled_from(["every_n_updates", "every_n_epochs"])),
            n=data.draw(st.integers(1, 4)),
        )
        for callback in scenario.callbacks
    )
    return replace(scenario, stops=stops, callbacks=callbacks)


def order_key(row: Row) -> tuple[int, int, int]:
    """Where a batch stands in the order of any run over the same data: a pass after update
    ``u`` as ``(u, callback, batch)``, the training batch that completes update ``u + 1``
    right before the passes after it."""
    source, _, progress, batch_in_pass, _ = row
    update = progress[1]
    return (update + 1, -1, 0) if source == 0 else (update, source, batch_in_pass)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_a_state_resumes_into_a_run_with_another_end_and_other_intervals(
    scenario: Scenario, data: Any
) -> None:
    """A position outlives its schedule: loaded into a longer or shorter run that evaluates
    at other points, the rest of that run after the same place follows."""
    scenario = replace(scenario, start={}, evaluation=False)
    assume(not scenario.config().is_evaluation_run)
    other = changed_run(scenario, data)
    try:
        saved, resumed_run = scenario.sampler(), other.sampler()
    except ValueError:
        return
    first = rows(saved.get_data_loader(tagged=True))
    k = data.draw(st.integers(0, len(first)))
    loader = saved.get_data_loader(tagged=True)
    consume(loader, k)
    rest = resumed_run.get_data_loader(tagged=True)
    try:
        rest.load_state_dict(through_json(loader.state_dict()))
    except ValueError as error:  # inside a pass the other run does not make there
        assert "no such pass there" in str(error)
        assert 0 < k < len(first) and first[k - 1][0] == first[k][0] != 0
        assert first[k][3] > 0
        return
    whole = rows(other.sampler().get_data_loader(tagged=True))
    done = order_key(first[k - 1]) if k else (0, len(scenario.callbacks), 0)
    assert rows(rest) == [row for row in whole if order_key(row) > done]


def test_a_version_1_state_loads_into_exactly_the_run_that_saved_it() -> None:
    sampler = eval_every_3()
    layout = sampler.schedule.layout(sampler.source_names)
    version_1 = {"version": 1, "fingerprint": layout, "batches": 6}
    loader = eval_every_3().get_data_loader(tagged=True)
    loader.load_state_dict(version_1)
    assert rows(loader) == rows(eval_every_3().get_data_loader(tagged=True))[6:]
    longer = InterleavedSampler(
        seq(20),
        InterleavedSamplerConfig(batch_size=2, max_epochs=3, drop_last=False),
        callback_samplers=sampler.extra_samplers,
    ).get_data_loader()
    with pytest.raises(ValueError) as error:
        longer.load_state_dict(version_1)
    assert "end_update: the state has 20, this run has 30" in str(error.value)
    assert "a version 1 state" in str(error.value)


def test_a_mid_epoch_state_needs_a_sampler_that_repeats_its_order() -> None:
    def make() -> InterleavedSampler:
        return InterleavedSampler(
            RandomSampler(range(8)), InterleavedSamplerConfig(batch_size=2, max_epochs=2)
        )

    with pytest.raises(ValueError, match="got RandomSampler and a start at update 1"):
        make().get_data_loader().load_state_dict(make().batch_sampler.state_at(1))
    loader = make().get_data_loader()
    loader.load_state_dict(make().batch_sampler.state_at(4))  # an epoch boundary
    assert len(list(loader)) == 4


def test_a_mid_pass_state_needs_a_callback_sampler_that_repeats_its_order() -> None:
    def make() -> InterleavedSampler:
        callback = SamplerIntervalConfig(RandomSampler(range(6)), every_n_updates=1, batch_size=2)
        return InterleavedSampler(
            SequentialSampler(range(4)),
            InterleavedSamplerConfig(batch_size=2, max_updates=2),
            callback_samplers=[callback],
        )

    inside = make().batch_sampler.state_at(2)  # train, then batch 1 of the pass
    with pytest.raises(ValueError, match=r"resume inside a pass .*\(RandomSampler\)"):
        make().batch_sampler.load_state_dict(inside)
    sampler = make()
    sampler.batch_sampler.load_state_dict(make().batch_sampler.state_at(4))  # after it
    assert list(next(iter(sampler.batch_sampler))) == [2, 3]


class JumpingSampler(CountingSampler):
    """A counting sampler that can start an epoch at any position (``iter_from``)."""

    def __init__(self, data_source: Any) -> None:
        super().__init__(data_source)
        self.jumps: list[int] = []

    def iter_from(self, position: int) -> Iterator[int]:
        self.jumps.append(position)
        return iter(range(position, len(self.data_source)))


def test_a_mid_epoch_resume_jumps_with_iter_from_where_the_sampler_has_it() -> None:
    main = JumpingSampler(IdentityDataset(10))
    sampler = InterleavedSampler(main, InterleavedSamplerConfig(batch_size=3, max_epochs=3))
    sampler.batch_sampler.load_position(7)  # epoch 2, after its first batch
    assert [list(batch) for batch in sampler.batch_sampler] == [[3, 4, 5], [6, 7, 8]]
    assert main.jumps == [3] and main.iterations == 0


class RotatingSampler(Sampler[int]):
    """Each iteration a new order (rotated by one more): a sampler that cannot replay one."""

    def __init__(self, length: int) -> None:
        self.data_source = range(length)
        self.iterations = 0

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        self.iterations += 1
        n = len(self.data_source)
        return iter([(i + self.iterations) % n for i in range(n)])


def test_restart_epoch_order_continues_an_unrepeatable_epoch_with_a_new_order() -> None:
    def run() -> InterleavedSampler:
        return InterleavedSampler(
            RotatingSampler(8), InterleavedSamplerConfig(batch_size=2, max_epochs=2)
        )

    saved = run().batch_sampler
    consume(saved, 3)  # inside epoch 0 (4 updates per epoch)
    with pytest.raises(ValueError, match="repeats its epoch order"):
        run().batch_sampler.load_state_dict(saved.state_dict())
    resumed = run().batch_sampler
    resumed.load_state_dict(saved.state_dict(), restart_epoch_order=True)
    # the rest of epoch 0: the first batch of a new iteration (order 1..7,0); then epoch 1
    assert [list(b) for b in resumed] == [[1, 2], [2, 3], [4, 5], [6, 7], [0, 1]]
