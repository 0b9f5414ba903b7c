"""The library against the nested-loop model of docs/schedule.md, over random configurations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenarios import Scenario, library_batches, scenarios
from spec_model import SpecError, model_batches

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected(scenario: Scenario) -> list[tuple[int, list[int]]] | None:
    main, config = scenario.model()
    try:
        return model_batches(main, config)
    except SpecError:
        return None


@SETTINGS
@given(scenarios(min_main=0))
def test_batches_and_length_match_the_model(scenario: Scenario) -> None:
    want = expected(scenario)
    if want is None:
        with pytest.raises(ValueError):
            scenario.sampler()
        return
    sampler = scenario.sampler()
    assert library_batches(sampler) == want
    assert len(sampler.batch_sampler) == len(want)


@SETTINGS
@given(scenarios(with_start=False), st.data())
def test_resume_at_any_update_continues_the_uninterrupted_run(
    scenario: Scenario, data: st.DataObject
) -> None:
    full = library_batches(scenario.sampler())
    train_positions = [i for i, (source, _) in enumerate(full) if source == 0]
    done = data.draw(st.integers(0, len(train_positions)), label="updates done")
    rest = full[train_positions[done] :] if done < len(train_positions) else []
    if scenario.config().is_evaluation_run:
        rest = full
    resumed = scenario.with_start(start_update=done).sampler()
    assert library_batches(resumed) == rest
    assert len(resumed.batch_sampler) == len(rest)


@SETTINGS
@given(scenarios(with_start=False), st.data())
def test_resume_by_epoch_and_by_sample_agree_with_resume_by_update(
    scenario: Scenario, data: st.DataObject
) -> None:
    sampler = scenario.sampler()
    structure = sampler.schedule.structure
    epoch = data.draw(st.integers(0, 5), label="epoch")
    by_epoch = scenario.with_start(start_epoch=epoch).sampler()
    by_update = scenario.with_start(start_update=epoch * structure.updates_per_epoch).sampler()
    assert library_batches(by_epoch) == library_batches(by_update)
    update = data.draw(st.integers(0, 3 * structure.updates_per_epoch), label="update")
    sample = structure.progress_at(update).sample
    if sample % scenario.batch_size == 0:  # the config's own rule for start_sample
        by_sample = scenario.with_start(start_sample=sample).sampler()
        by_update = scenario.with_start(start_update=update).sampler()
        assert library_batches(by_sample) == library_batches(by_update)
