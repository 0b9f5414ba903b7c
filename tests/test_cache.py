"""The evaluation cache: the stream loading would give, each evaluation sample loaded once."""

from __future__ import annotations

from dataclasses import replace
from itertools import islice
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenarios import CallbackSpec, SamplerSpec, Scenario, callback_specs, scenarios
from test_state import check_resumes_exactly, through_json
from torch.utils.data import Dataset, DistributedSampler, RandomSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedBatch,
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
)
from interleaved_sampler.batching import CachingBatchSampler
from interleaved_sampler.plan import RunPlan, describe

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORKER_SETTINGS = settings(max_examples=4, deadline=None)


class CountedDataset(Dataset[int]):
    """Item ``i`` is ``i``; every load adds 1 to ``loads[i]``, in shared memory, so the loads
    of worker processes count too."""

    def __init__(self, length: int) -> None:
        self.loads = torch.zeros(length, dtype=torch.int32).share_memory_()

    def __len__(self) -> int:
        return len(self.loads)

    def __getitem__(self, index: int) -> int:
        self.loads[index] += 1
        return index


@st.composite
def cached_scenarios(draw: st.DrawFn) -> Scenario:
    """A training run of several updates with a cached callback due every few updates, and
    up to two other callbacks, cached or not."""
    scenario = draw(scenarios(cache=True))
    first = draw(callback_specs(cache=True))
    first = replace(
        first,
        sampler=replace(first.sampler, shuffle=False),
        interval="every_n_updates",
        n=draw(st.integers(1, 3)),
        cache=True,
    )
    others = draw(st.lists(callback_specs(cache=True), max_size=2))
    position = draw(st.integers(0, len(others)))
    return replace(
        scenario,
        stops={"max_updates": draw(st.integers(4, 20))},
        evaluation=False,
        callbacks=(*others[:position], first, *others[position:]),
    )


def uncached(scenario: Scenario) -> Scenario:
    return replace(scenario, callbacks=tuple(replace(c, cache=False) for c in scenario.callbacks))


def stream(loader: Any) -> list[Any]:
    """What a loop sees: data (and tags) of every batch, as plain values."""
    return [
        (b.source, b.progress, b.batch_in_pass, b.indices, b.data.tolist())
        if isinstance(b, InterleavedBatch)
        else b.tolist()
        for b in loader
    ]


def check_cached_run(scenario: Scenario, tagged: bool, **loader_args: Any) -> None:
    """The cached loader yields the uncached stream, and loads each cached sample once."""
    try:
        expected = stream(
            uncached(scenario).sampler().get_data_loader(tagged=tagged, **loader_args)
        )
    except ValueError:
        return  # a configuration the library refuses
    datasets = [CountedDataset(c.sampler.length) for c in scenario.callbacks]
    sampler = scenario.sampler(datasets)
    loader = sampler.get_data_loader(tagged=tagged, **loader_args)
    assert len(loader) == len(expected)
    assert stream(loader) == expected
    assert loader.state_dict()["batches"] == len(expected)
    for i, (spec, dataset) in enumerate(zip(scenario.callbacks, datasets, strict=True)):
        passes = sampler.schedule.passes(i)
        per_pass = torch.bincount(torch.tensor(list(spec.sampler.build())), minlength=len(dataset))
        loads = min(passes, 1) if spec.cache else passes
        assert dataset.loads.tolist() == (per_pass * loads).tolist(), f"callback {i}"


@SETTINGS
@given(cached_scenarios(), st.booleans())
def test_the_cached_stream_is_the_loaded_stream(scenario: Scenario, tagged: bool) -> None:
    check_cached_run(scenario, tagged)


@WORKER_SETTINGS
@given(cached_scenarios(), st.booleans())
def test_the_cached_stream_with_two_workers(scenario: Scenario, tagged: bool) -> None:
    check_cached_run(scenario, tagged, num_workers=2, multiprocessing_context="fork")


CACHED = Scenario(
    main=SamplerSpec("seeded", 23, seed=2),
    batch_size=4,
    drop_last=False,
    stops={"max_updates": 17},
    callbacks=(
        CallbackSpec(SamplerSpec("sequential", 7), "every_n_updates", 4, 3, cache=True),
        CallbackSpec(SamplerSpec("sequential", 5), "every_n_samples", 30, 2),
        CallbackSpec(
            SamplerSpec("distributed", 9, replicas=2, rank=1), "every_n_epochs", 1, None, True
        ),
    ),
)


@pytest.mark.slow
@pytest.mark.parametrize("tagged", [False, True])
def test_the_cached_stream_with_spawned_workers(tagged: bool) -> None:
    check_cached_run(CACHED, tagged, num_workers=2, multiprocessing_context="spawn")


def with_callback(sampler: Any, **callback: Any) -> InterleavedSampler:
    """6 updates of batches of 2 and one callback, named ``val``, over ``sampler``."""
    return InterleavedSampler(
        SequentialSampler(range(12)),
        InterleavedSamplerConfig(batch_size=2, max_updates=6),
        callback_samplers=[SamplerIntervalConfig(sampler, name="val", **callback)],
    )


def val_every_2(cache: bool = True) -> InterleavedSampler:
    """A pass of 2 batches over ``val`` after every second update (3 passes)."""
    return with_callback(
        SequentialSampler(CountedDataset(3)), every_n_updates=2, batch_size=2, cache=cache
    )


def dict_collate(samples: list[int]) -> dict[str, Any]:
    return {"x": torch.tensor(samples), "nested": [(torch.tensor(samples) * 10,)], "n": 1}


def test_changing_a_batch_in_place_does_not_change_later_passes() -> None:
    for tagged in (False, True):
        sampler = with_callback(
            SequentialSampler(range(3)),
            every_n_updates=2,
            batch_size=3,
            pipeline=dict_collate,
            cache=True,
        )
        seen = []
        for batch in sampler.get_data_loader(tagged=tagged):
            data = batch.data if tagged else batch
            if isinstance(data, dict):
                seen.append((data["x"].tolist(), data["nested"][0][0].tolist(), data["n"]))
                data["x"].mul_(0)
                data["nested"][0][0].add_(1)
                if tagged:
                    batch.indices.append(99)
                    assert batch.indices == [0, 1, 2, 99]
        assert seen == [([0, 1, 2], [0, 10, 20], 1)] * 3


class ReversingSampler(SequentialSampler):
    """Sequential in its first iteration, reversed in every later one."""

    def __init__(self, data_source: Any) -> None:
        super().__init__(data_source)
        self.iterations = 0

    def __iter__(self) -> Any:
        self.iterations += 1
        order = list(super().__iter__())
        return iter(order if self.iterations == 1 else order[::-1])


def test_a_sampler_with_another_order_in_a_later_pass_is_refused() -> None:
    sampler = with_callback(ReversingSampler(range(5)), every_n_updates=2, cache=True)
    loader = sampler.get_data_loader()
    with pytest.raises(ValueError) as error:
        list(loader)
    message = str(error.value)
    assert "the val sampler (ReversingSampler) has cache=True" in message
    assert "batch 0 starts [4, 3], was [0, 1]" in message


@pytest.mark.parametrize(
    "sampler",
    [
        RandomSampler(range(5)),
        DistributedSampler(range(5), num_replicas=2, rank=0, shuffle=True),
    ],
)
def test_a_shuffling_sampler_is_refused_at_construction(sampler: Any) -> None:
    name = type(sampler).__name__
    with pytest.raises(
        ValueError, match=rf"callback_samplers\[0\] \(val\) has cache=True .*{name}"
    ):
        with_callback(sampler, every_n_updates=2, cache=True)
    with_callback(sampler, every_n_updates=2)  # without the cache it is fine


@SETTINGS
@given(cached_scenarios(), st.data())
def test_a_cached_loader_saved_after_any_batch_resumes_exactly(
    scenario: Scenario, data: Any
) -> None:
    check_resumes_exactly(scenario, data)


@pytest.mark.parametrize(
    ("stop", "loads"),
    [
        # train 2, val (2 batches: [0, 1], [2]), train 2, val, train 2, val: 12 batches
        (0, [1, 1, 1]),
        (3, [1, 1, 2]),  # inside the first pass: its rest, then the next pass loaded and kept
        (4, [1, 1, 1]),  # right after it: the next pass is the first of the iteration
        (7, [1, 1, 2]),  # inside the second pass
        (10, [1, 1, 1]),  # before the last pass
        (12, [0, 0, 0]),  # at the end
    ],
)
@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_loader_loads_its_first_cached_pass_again(
    stop: int, loads: list[int], workers: int
) -> None:
    full = stream(val_every_2(cache=False).get_data_loader(tagged=True))
    args = {"num_workers": workers, "tagged": True}
    if workers:
        args["multiprocessing_context"] = "fork"
    saved = val_every_2().get_data_loader(**args)
    for _ in islice(iter(saved), stop):
        pass
    sampler = val_every_2()
    loader = sampler.get_data_loader(**args)
    loader.load_state_dict(through_json(saved.state_dict()))
    assert stream(loader) == full[stop:]
    counted = sampler.extra_samplers[0].sampler.data_source
    assert counted.loads.tolist() == loads


def test_the_loader_reports_the_bytes_its_cache_holds() -> None:
    loader = val_every_2().get_data_loader()
    held = []
    for batch in loader:
        held.append(loader.cache_bytes)
        assert batch.dtype == torch.int64
    # two train batches, then the pass: 2 + 1 samples of 8 bytes once it is loaded
    assert held == [0, 0, 16, 24, 24, 24, 24, 24, 24, 24, 24, 24]
    assert loader.cache_bytes == 0  # released with the iteration
    assert val_every_2(cache=False).get_data_loader().cache_bytes == 0


def test_only_the_loader_caches_the_batch_sampler_yields_every_pass() -> None:
    sampler = val_every_2()
    assert not isinstance(sampler.batch_sampler, CachingBatchSampler)
    assert len(list(sampler.batch_sampler)) == len(sampler.batch_sampler) == 12
    loader = sampler.get_data_loader()
    assert isinstance(loader.batch_sampler, CachingBatchSampler)
    loader.batch_sampler.served = True  # what the loader sets when it iterates
    loaded = [list(batch) for batch in loader.batch_sampler]
    assert len(loaded) == 8 and len(loader) == 12  # two passes are served, not loaded


def test_another_loader_over_the_caching_batch_sampler_is_refused() -> None:
    """torchdata's StatefulDataLoader over the batch sampler of a run with cached callbacks
    would miss the passes the loader serves from memory: refused, not silent."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    parts = val_every_2().get_data_loader(tagged=True)
    other = StatefulDataLoader(
        parts.dataset, batch_sampler=parts.batch_sampler, collate_fn=parts.collate_fn
    )
    with pytest.raises(TypeError, match=r"cache=True.*iterate that loader"):
        next(iter(other))
    assert len(list(parts)) == 12  # the loader itself serves every pass


def test_plan_marks_the_cached_callbacks() -> None:
    plan = RunPlan.from_dict(
        {
            "length": 64,
            "batch_size": 8,
            "max_updates": 40,
            "callbacks": [
                {"name": "val", "length": 20, "every_n_updates": 10, "cache": True},
                {"name": "test", "length": 20, "every_n_updates": 20},
            ],
        }
    )
    lines = describe(plan, max_firings=0).splitlines()
    assert next(line for line in lines if line.startswith("callback")).endswith("from memory")
    assert next(line for line in lines if line.startswith("val")).split()[-1] == "3"
    assert next(line for line in lines if line.startswith("test")).split()[-1] == "-"
    total = (
        "total: 58 batches = 40 training + 18 callback, of which 9 (3 passes) served from memory"
    )
    assert total in lines
