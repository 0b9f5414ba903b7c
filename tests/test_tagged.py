"""Tagged batches: the same stream as the untagged loader, each batch with the right tag."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenarios import CallbackSpec, SamplerSpec, Scenario, scenarios
from spec_model import ModelTag, SpecError, model_batches
from torch.utils.data import SequentialSampler

from interleaved_sampler import (
    InterleavedBatch,
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    TrainingProgress,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORKER_SETTINGS = settings(max_examples=4, deadline=None)


def expected_tagged(scenario: Scenario) -> list[tuple[Any, ...]] | None:
    """The model's run as the tuples that :func:`describe` makes of tagged batches."""
    main, config = scenario.model()
    tags: list[ModelTag] = []
    try:
        batches = model_batches(main, config, tags)
    except SpecError:
        return None
    offsets = [0, *(c.offset for c in config.callbacks)]
    names = ["train", *(f"callback{i}" for i in range(len(config.callbacks)))]
    return [
        (
            names[source],
            source,
            TrainingProgress(*progress),
            position,
            count,
            position == count - 1,
            [i - offsets[source] for i in indices],
            len(indices),  # not split over ranks: the part is the global batch
            len(indices),
            [i - offsets[source] for i in indices],  # datasets are lists: item i is i
        )
        for (source, indices), (progress, position, count) in zip(batches, tags, strict=True)
    ]


def tag_of(batch: InterleavedBatch) -> tuple[Any, ...]:
    return (
        batch.source,
        batch.source_index,
        batch.progress,
        batch.batch_in_pass,
        batch.batches_in_pass,
        batch.is_last_in_pass,
        batch.indices,
        batch.part_size,
        batch.global_batch_size,
    )


def describe(batch: InterleavedBatch) -> tuple[Any, ...]:
    return (*tag_of(batch), batch.data.tolist())


def check_tagged_run(scenario: Scenario, **loader_args: Any) -> None:
    want = expected_tagged(scenario)
    if want is None:
        return
    sampler = scenario.sampler()
    plain = [batch.tolist() for batch in sampler.get_data_loader(**loader_args)]
    loader = sampler.get_data_loader(tagged=True, **loader_args)
    tagged = list(loader)
    assert all(isinstance(batch, InterleavedBatch) for batch in tagged)
    assert [batch.data.tolist() for batch in tagged] == plain
    assert [describe(batch) for batch in tagged] == want
    assert len(loader) == len(want)


@SETTINGS
@given(scenarios(min_main=0))
def test_tagged_stream_is_the_untagged_stream_with_the_models_tags(scenario: Scenario) -> None:
    check_tagged_run(scenario)


@WORKER_SETTINGS
@given(scenarios())
def test_tagged_stream_with_two_workers(scenario: Scenario) -> None:
    check_tagged_run(scenario, num_workers=2, multiprocessing_context="fork")


MIXED = Scenario(
    main=SamplerSpec("seeded", 23, seed=2),
    batch_size=4,
    drop_last=False,
    stops={"max_updates": 17},
    start={"start_update": 3},
    callbacks=(
        CallbackSpec(SamplerSpec("sequential", 7), "every_n_updates", 4, 3),
        CallbackSpec(SamplerSpec("seeded", 5, seed=1), "every_n_samples", 30, 2),
        CallbackSpec(SamplerSpec("sequential", 6), "every_n_epochs", 1, None),
    ),
)


@pytest.mark.slow
def test_tagged_stream_with_spawned_workers() -> None:
    check_tagged_run(MIXED, num_workers=2, multiprocessing_context="spawn")


def test_evaluation_mode_tags_have_zero_progress() -> None:
    scenario = replace(MIXED, evaluation=True)
    check_tagged_run(scenario)
    batches = list(scenario.sampler().get_data_loader(tagged=True))
    assert {batch.progress for batch in batches} == {TrainingProgress(0, 0, 0)}
    assert [batch.source_index for batch in batches] == [1, 1, 1, 2, 2, 2, 3, 3]


def test_named_callbacks_tag_their_batches_with_their_names() -> None:
    train, val, test = list(range(10)), list(range(4)), list(range(3))
    sampler = InterleavedSampler(
        SequentialSampler(train),
        InterleavedSamplerConfig(batch_size=5, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(val), every_n_updates=1, name="val"),
            SamplerIntervalConfig(SequentialSampler(test), every_n_epochs=2),
        ],
    )
    sources = [(b.source, b.source_index) for b in sampler.get_data_loader(tagged=True)]
    train_b, val_b, test_b = ("train", 0), ("val", 1), ("callback1", 2)
    assert sources == [train_b, val_b, train_b, val_b, train_b, val_b, train_b, val_b, test_b]


@SETTINGS
@given(scenarios(with_start=False), st.data())
def test_resume_after_a_training_batch_reproduces_the_rest_of_the_run(
    scenario: Scenario, data: st.DataObject
) -> None:
    if expected_tagged(scenario) is None or scenario.config().is_evaluation_run:
        return
    full = [describe(b) for b in scenario.sampler().get_data_loader(tagged=True)]
    train = [i for i, batch in enumerate(full) if batch[0] == "train"]
    k = data.draw(st.integers(0, len(train) - 1), label="training batch")
    update = full[train[k]][2].update
    resumed = scenario.with_start(start_update=update + 1).sampler()
    rest = full[train[k + 1] :] if k + 1 < len(train) else []
    assert [describe(b) for b in resumed.get_data_loader(tagged=True)] == rest


class PinRecorder:
    """Collated data with its own ``pin_memory``, as torch's pin function expects of objects."""

    def __init__(self) -> None:
        self.pinned = False

    def pin_memory(self) -> PinRecorder:
        copy = PinRecorder()
        copy.pinned = True
        return copy


def test_pin_memory_pins_the_data_and_keeps_the_tag() -> None:
    from torch.utils.data._utils.pin_memory import pin_memory

    tag_fields = ("train", 0, TrainingProgress(1, 7, 28), 2, 5, False, [3, 4], 2, 2)
    batch = InterleavedBatch(PinRecorder(), *tag_fields)
    pinned = pin_memory(batch)  # what the DataLoader's pin thread calls
    assert isinstance(pinned, InterleavedBatch) and pinned is not batch
    assert pinned.data.pinned and not batch.data.pinned
    assert tag_of(pinned) == tag_fields


def test_pin_memory_loader_with_workers_yields_the_tagged_stream() -> None:
    # without an accelerator torch turns pinning off (with a warning); with CUDA, data is pinned
    # (test_cuda.py checks that)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else nullcontext():
        check_tagged_run(MIXED, num_workers=2, pin_memory=True)
