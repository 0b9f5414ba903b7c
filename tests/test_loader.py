"""The schedule through a real DataLoader with real worker processes."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import IdentityDataset
from hypothesis import given, settings
from scenarios import Scenario, scenarios
from spec_model import SpecError, model_batches
from torch.utils.data import SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)

WORKER_SETTINGS = [
    pytest.param({"num_workers": 0}, id="0-workers"),
    pytest.param({"num_workers": 2, "multiprocessing_context": "fork"}, id="2-workers-fork"),
    pytest.param(
        {"num_workers": 2, "multiprocessing_context": "spawn"},
        id="2-workers-spawn",
        marks=pytest.mark.slow,
    ),
]


def identity_run() -> tuple[InterleavedSampler, list[list[int]]]:
    """A run over datasets whose items are their global identity, and its expected batches."""
    train, val, test = IdentityDataset(23), IdentityDataset(7, 1000), IdentityDataset(5, 2000)
    sampler = InterleavedSampler(
        SeededRandomSampler(train, seed=3),
        InterleavedSamplerConfig(batch_size=4, drop_last=False, max_updates=17, start_update=2),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(val), every_n_updates=4, batch_size=3),
            SamplerIntervalConfig(SequentialSampler(test), every_n_samples=30, batch_size=2),
        ],
    )
    bases = [0, 1000 - 23, 2000 - 30]  # identity value minus global offset, per source
    expected = [[bases[b.source_index] + i for i in b] for b in sampler.batch_sampler]
    return sampler, expected


@pytest.mark.parametrize("loader_args", WORKER_SETTINGS)
def test_loaded_batches_follow_the_schedule(loader_args: dict[str, Any]) -> None:
    sampler, expected = identity_run()
    loader = sampler.get_data_loader(**loader_args)
    loaded = [batch.tolist() for batch in loader]
    assert loaded == expected
    # 15 updates (2..17); validation after updates 4, 8, 12, 16 (3 batches each); test when
    # the sample count crosses 30 (update 8) and 60 (update 16), 3 batches each
    assert len(loader) == len(expected) == 15 + 4 * 3 + 2 * 3
    assert {v // 1000 for batch in loaded for v in batch} == {0, 1, 2}


@pytest.mark.parametrize("loader_args", WORKER_SETTINGS[:2])
def test_pin_memory_and_persistent_workers(loader_args: dict[str, Any]) -> None:
    sampler, expected = identity_run()
    loader = sampler.get_data_loader(pin_memory=True, persistent_workers=bool(
        loader_args["num_workers"]), **loader_args)  # fmt: skip
    assert [batch.tolist() for batch in loader] == expected
    assert [batch.tolist() for batch in loader] == expected  # a second pass, same workers


@settings(max_examples=25, deadline=None)
@given(scenarios(min_main=0))
def test_random_schedules_through_a_loader_with_two_workers(scenario: Scenario) -> None:
    main, config = scenario.model()
    try:
        want = model_batches(main, config)
    except SpecError:
        return
    sampler = scenario.sampler()
    # datasets are lists of ints, so a loaded item is its local index
    local = [[i - ([0, *sampler.index_offsets])[s] for i in b] for s, b in
             ((b.source_index, b) for b in sampler.batch_sampler)]  # fmt: skip
    loaded = [b.tolist() for b in sampler.get_data_loader(num_workers=2)]
    assert loaded == local
    assert len(loaded) == len(want)


def test_loader_arguments_owned_by_the_sampler_are_rejected() -> None:
    sampler, _ = identity_run()
    with pytest.raises(TypeError, match="batch_size, collate_fn"):
        sampler.get_data_loader(batch_size=4, collate_fn=list)
