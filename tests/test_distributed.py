"""The cross-rank schedule check and gather_by_index, in one process.

SeededRandomSampler's sharding is tested in ``test_seeded_sampler.py``. Ranks are simulated by
building each rank's samplers with an explicit ``rank``; the same checks on real ranks
(torchrun, gloo) are in ``test_torchrun.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenarios import SamplerSpec, Scenario, library_batches, scenarios
from torch.utils.data import DistributedSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.distributed import check_same_schedule, gather_by_index

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rank_scenario(scenario: Scenario, replicas: int, rank: int) -> Scenario:
    """The scenario as rank ``rank`` of ``replicas`` builds it: every sampler sharded."""

    def shard(spec: SamplerSpec) -> SamplerSpec:
        kind = "seeded" if spec.kind == "seeded" else "distributed"
        return replace(spec, kind=kind, replicas=replicas, rank=rank)

    callbacks = tuple(replace(c, sampler=shard(c.sampler)) for c in scenario.callbacks)
    return replace(scenario, main=shard(scenario.main), callbacks=callbacks)


@SETTINGS
@given(scenarios(min_main=3), st.integers(2, 3), st.data())
def test_every_rank_has_the_same_schedule(
    scenario: Scenario, replicas: int, data: st.DataObject
) -> None:
    ranks = [rank_scenario(scenario, replicas, rank) for rank in range(replicas)]
    try:
        samplers = [each.sampler() for each in ranks]
    except ValueError:  # an invalid configuration: invalid on every rank
        for each in ranks:
            with pytest.raises(ValueError):
                each.sampler()
        return
    streams = [library_batches(sampler) for sampler in samplers]
    shapes = [[(source, len(batch)) for source, batch in stream] for stream in streams]
    assert all(shape == shapes[0] for shape in shapes)
    assert all(len(sampler.batch_sampler) == len(shapes[0]) for sampler in samplers)


class TestCheckSameSchedule:
    """Without a process group the check sees one rank: world size 1."""

    def test_consistent_run_passes(self) -> None:
        sampler = InterleavedSampler(
            SeededRandomSampler(range(10)), InterleavedSamplerConfig(batch_size=3, max_epochs=1)
        )
        check_same_schedule(sampler)

    @pytest.mark.parametrize("kind", [DistributedSampler, SeededRandomSampler])
    def test_sharding_over_another_world_size_is_reported(self, kind: type) -> None:
        sampler = InterleavedSampler(
            kind(range(10), num_replicas=2, rank=1),
            InterleavedSamplerConfig(batch_size=3, max_epochs=1),
        )
        with pytest.raises(ValueError, match=r"train sampler .* num_replicas=2, rank=1.*use "):
            check_same_schedule(sampler)

    def test_a_sharded_callback_is_named(self) -> None:
        sampler = InterleavedSampler(
            SeededRandomSampler(range(10)),
            InterleavedSamplerConfig(batch_size=3, max_epochs=1),
            callback_samplers=[
                SamplerIntervalConfig(
                    DistributedSampler(range(6), num_replicas=2, rank=0),
                    every_n_updates=1,
                    name="val",
                )
            ],
        )
        with pytest.raises(ValueError, match=r"the val sampler \(DistributedSampler\)") as error:
            check_same_schedule(sampler)
        assert "train sampler" not in str(error.value)  # the unsharded main sampler is fine


class TestGatherByIndexInOneProcess:
    def test_sorts_by_index_and_drops_repeats(self) -> None:
        values = torch.tensor([[3.0, 30.0], [1.0, 10.0], [3.0, 30.0], [0.0, 0.0]])
        gathered = gather_by_index(values, [3, 1, 3, 0])
        assert torch.equal(gathered, torch.tensor([[0.0, 0.0], [1.0, 10.0], [3.0, 30.0]]))

    def test_dict_of_tensors_and_tensor_indices(self) -> None:
        values = {"loss": torch.tensor([0.5, 0.25]), "correct": torch.tensor([True, False])}
        gathered = gather_by_index(values, torch.tensor([7, 2]))
        assert gathered.keys() == {"loss", "correct"}
        assert torch.equal(gathered["loss"], torch.tensor([0.25, 0.5]))
        assert torch.equal(gathered["correct"], torch.tensor([False, True]))

    def test_no_samples(self) -> None:
        assert gather_by_index(torch.zeros(0, 2), []).shape == (0, 2)

    @pytest.mark.parametrize(
        ("values", "indices", "message"),
        [
            (torch.zeros(3), [0, 1], "3 rows but there are 2 indices"),
            (torch.zeros(2), torch.tensor([0.0, 1.0]), "integers"),
            ({"a": torch.zeros(2), "b": torch.zeros(3)}, [0, 1], "b has 3 rows"),
            (torch.tensor(1.0), [0], r"first \(samples\) dimension, got Tensor of shape \(\)"),
            ([0.0], [0], "values must be a tensor .*, got list"),
            (torch.zeros(1), torch.tensor(0), r"indices must be 1-D integers, got shape \(\)"),
        ],
    )
    def test_mismatched_inputs(self, values: object, indices: object, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            gather_by_index(values, indices)  # type: ignore[call-overload]

    def test_evaluation_shards_gathered_equal_one_process(self) -> None:
        """The padding duplicates of DistributedSampler shards vanish after gathering."""
        data = torch.arange(13.0) ** 2
        shards = [list(DistributedSampler(data, 2, rank, shuffle=False)) for rank in (0, 1)]
        indices = shards[0] + shards[1]
        assert len(indices) == 14  # one padding duplicate
        assert torch.equal(gather_by_index(data[indices], indices), data)
