"""Hand-computed examples, one group per rule of the schedule of docs/schedule.md."""

from __future__ import annotations

import pytest
from helpers import (
    EpochRecordingSampler,
    IdentityDataset,
    RecordingDataset,
    callback,
    run,
    seq,
)
from torch.utils.data import RandomSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SamplerOutput,
)

A, B4 = [0, 1, 2, 3], [4, 5, 6, 7]


class TestEpochStructure:
    def test_drop_last_drops_the_incomplete_batch(self) -> None:
        assert run(10, batch_size=4, max_epochs=2) == [A, B4, A, B4]

    def test_without_drop_last_the_incomplete_batch_is_shorter(self) -> None:
        assert run(10, batch_size=4, drop_last=False, max_epochs=2) == [A, B4, [8, 9]] * 2

    def test_drop_last_with_fewer_samples_than_batch_size_uses_the_sampler_length(self) -> None:
        # the batch size in use is 3, also for a callback without its own batch size
        result = run(3, [callback(4, every_n_epochs=1)], batch_size=5, max_epochs=1)
        assert result == [[0, 1, 2], [3, 4, 5], [6]]

    def test_without_drop_last_the_batch_size_stays(self) -> None:
        result = run(3, [callback(4, every_n_epochs=1)], batch_size=5, drop_last=False,
                     max_epochs=1)  # fmt: skip
        assert result == [[0, 1, 2], [3, 4, 5, 6]]

    def test_batch_size_attribute_is_the_one_in_use(self) -> None:
        config = InterleavedSamplerConfig(batch_size=5, max_epochs=1)
        assert InterleavedSampler(seq(3), config).batch_size == 3


class TestSetEpoch:
    def test_main_sampler_gets_each_epoch_number(self) -> None:
        main = EpochRecordingSampler(IdentityDataset(10))
        config = InterleavedSamplerConfig(batch_size=4, max_epochs=3)
        list(InterleavedSampler(main, config).batch_sampler)
        assert main.epochs == [0, 1, 2]

    def test_resume_sets_the_resumed_epoch_and_callbacks_get_no_set_epoch(self) -> None:
        main = EpochRecordingSampler(IdentityDataset(10))
        evaluation = EpochRecordingSampler(IdentityDataset(3))
        config = InterleavedSamplerConfig(batch_size=4, max_epochs=3, start_update=3)
        cb = SamplerIntervalConfig(evaluation, every_n_updates=1)
        list(InterleavedSampler(main, config, callback_samplers=[cb]).batch_sampler)
        assert main.epochs == [1, 2]
        assert evaluation.epochs == []


class TestIntervals:
    def test_every_n_epochs(self) -> None:
        result = run(4, [callback(1, every_n_epochs=2)], batch_size=2, max_epochs=4)
        assert result == [[0, 1], [2, 3], [0, 1], [2, 3], [4]] * 2

    def test_every_n_updates(self) -> None:
        result = run(4, [callback(1, every_n_updates=3)], batch_size=2, max_updates=7)
        assert result == [[0, 1], [2, 3], [0, 1], [4], [2, 3], [0, 1], [2, 3], [4], [0, 1]]

    def test_every_n_samples_fires_when_a_multiple_is_reached_or_crossed(self) -> None:
        # samples after each update: 2 4 6 8 10 12 14 16; multiples of 5 at 6, 10, 16
        cb = SamplerIntervalConfig(seq(1, 0), every_n_samples=5, batch_size=1)
        result = run(10, [cb], batch_size=2, max_updates=8)
        train = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
        assert result == [*train[:3], [10], *train[3:], [10], *train[:3], [10]]

    def test_every_n_samples_smaller_than_the_batch_fires_once_per_update(self) -> None:
        cb = SamplerIntervalConfig(seq(1), every_n_samples=1, batch_size=1)
        assert run(6, [cb], batch_size=3, max_epochs=1) == [[0, 1, 2], [6], [3, 4, 5], [6]]

    def test_every_n_samples_with_short_batches(self) -> None:
        # sizes 2 2 1 per epoch; samples 2 4 5 7 9 10: multiples of 3 reached at 4, 7, 9
        cb = SamplerIntervalConfig(seq(1), every_n_samples=3, batch_size=1)
        result = run(5, [cb], batch_size=2, drop_last=False, max_epochs=2)
        assert result == [[0, 1], [2, 3], [5], [4], [0, 1], [5], [2, 3], [5], [4]]

    def test_every_n_samples_does_not_fire_spuriously_after_a_resume(self) -> None:
        # resumed at 4 samples; the next update reaches 5 (no multiple of 3), then 7
        cb = SamplerIntervalConfig(seq(1), every_n_samples=3, batch_size=1)
        result = run(5, [cb], batch_size=2, drop_last=False, max_epochs=2, start_update=2)
        assert result == [[4], [0, 1], [5], [2, 3], [5], [4]]

    def test_due_callbacks_run_in_the_order_given(self) -> None:
        callbacks = [callback(1, every_n_updates=1), callback(2, every_n_updates=2)]
        result = run(4, callbacks, batch_size=2, max_epochs=1)
        assert result == [[0, 1], [4], [2, 3], [4], [5, 6]]

    def test_a_pass_uses_its_own_batch_size_and_keeps_the_partial_batch(self) -> None:
        result = run(2, [callback(5, every_n_epochs=1, batch_size=2)], batch_size=2, max_epochs=1)
        assert result == [[0, 1], [2, 3], [4, 5], [6]]


class TestStop:
    def test_max_epochs(self) -> None:
        assert run(4, batch_size=2, max_epochs=2) == [[0, 1], [2, 3]] * 2

    def test_max_updates_stops_inside_an_epoch(self) -> None:
        assert run(4, batch_size=2, max_updates=3) == [[0, 1], [2, 3], [0, 1]]

    def test_max_samples_stops_once_reached(self) -> None:
        assert run(4, batch_size=2, max_samples=5) == [[0, 1], [2, 3], [0, 1]]

    def test_the_first_limit_reached_stops(self) -> None:
        assert run(4, batch_size=2, max_epochs=1, max_updates=10, max_samples=100) == [
            [0, 1],
            [2, 3],
        ]

    def test_callbacks_due_at_the_last_update_still_run(self) -> None:
        result = run(4, [callback(1, every_n_updates=2)], batch_size=2, max_updates=2)
        assert result == [[0, 1], [2, 3], [4]]


class TestEvaluationMode:
    @pytest.mark.parametrize(
        "config",
        [
            {"evaluation": True, "max_epochs": 5},
            {"max_updates": 0},
            {"max_samples": 0, "max_epochs": 3},
            {"evaluation": True, "max_epochs": 5, "start_update": 3},
        ],
    )
    def test_one_pass_over_each_callback_and_no_training(self, config: dict[str, int]) -> None:
        callbacks = [callback(3, every_n_epochs=1), callback(2, every_n_updates=7)]
        assert run(4, callbacks, batch_size=2, **config) == [[4, 5], [6], [7, 8]]

    def test_the_main_sampler_may_be_empty(self) -> None:
        assert run(0, [callback(2, every_n_epochs=1)], batch_size=2, evaluation=True,
                   max_epochs=1) == [[0, 1]]  # fmt: skip


class TestStart:
    @pytest.mark.parametrize(
        ("drop_last", "start", "expected"),
        [
            (False, {}, (0, 0, 0)),
            (False, {"start_epoch": 2}, (2, 6, 20)),
            (False, {"start_update": 4}, (1, 4, 14)),
            (False, {"start_sample": 24}, (2, 7, 24)),
            (True, {"start_epoch": 2}, (2, 4, 16)),
            (True, {"start_update": 3}, (1, 3, 12)),
            (True, {"start_sample": 12}, (1, 3, 12)),
        ],
    )
    def test_calculate_start(
        self, drop_last: bool, start: dict[str, int], expected: tuple[int, int, int]
    ) -> None:
        config = InterleavedSamplerConfig(batch_size=4, drop_last=drop_last, max_epochs=9, **start)
        assert InterleavedSampler.calculate_start(config, 10) == expected

    def test_start_sample_off_an_update_boundary_names_the_nearest_valid_values(self) -> None:
        config = InterleavedSamplerConfig(batch_size=4, drop_last=False, max_epochs=3,
                                          start_sample=16)  # fmt: skip
        with pytest.raises(ValueError, match=r"start_sample=16 .* nearest valid values: 14 or 18"):
            InterleavedSampler(seq(10), config)

    def test_a_start_inside_an_epoch_skips_without_loading(self) -> None:
        dataset = RecordingDataset(10)
        config = InterleavedSamplerConfig(batch_size=4, max_epochs=2, start_update=1)
        loader = InterleavedSampler(SequentialSampler(dataset), config).get_data_loader()
        assert [b.tolist() for b in loader] == [B4, A, B4]
        assert dataset.loaded == [*B4, *A, *B4]

    def test_a_start_inside_an_epoch_without_drop_last(self) -> None:
        result = run(10, batch_size=4, drop_last=False, max_epochs=2, start_update=2)
        assert result == [[8, 9], A, B4, [8, 9]]

    def test_a_start_inside_an_epoch_needs_a_repeatable_sampler(self) -> None:
        config = InterleavedSamplerConfig(batch_size=4, max_epochs=2, start_update=1)
        with pytest.raises(ValueError, match=r"RandomSampler.*start_epoch=0"):
            InterleavedSampler(RandomSampler(IdentityDataset(10)), config)

    def test_random_sampler_may_start_at_an_epoch_boundary(self) -> None:
        config = InterleavedSamplerConfig(batch_size=4, max_epochs=2, start_epoch=1)
        sampler = InterleavedSampler(RandomSampler(IdentityDataset(10)), config)
        assert [len(b) for b in sampler.batch_sampler] == [4, 4]

    @pytest.mark.parametrize("start", [{"start_epoch": 2}, {"start_epoch": 7}, {"start_update": 4}])
    def test_a_start_at_or_past_the_stop_yields_no_training(self, start: dict[str, int]) -> None:
        assert run(4, [callback(1, every_n_updates=1)], batch_size=2, max_epochs=2, **start) == []


class TestSourcesAndCollate:
    def test_index_offsets_and_the_concatenated_dataset(self) -> None:
        config = InterleavedSamplerConfig(batch_size=4, max_epochs=1)
        callbacks = [callback(3, every_n_epochs=1), callback(5, every_n_epochs=1)]
        sampler = InterleavedSampler(seq(10), config, callback_samplers=callbacks)
        assert sampler.index_offsets == [10, 13]
        assert len(sampler.dataset) == 18
        assert sampler.main_sampler is not None and sampler.extra_samplers == callbacks
        assert [sampler.dataset[i] for i in (9, 10, 13, 17)] == [9, 0, 0, 4]

    def test_each_source_uses_its_own_collate_function(self) -> None:
        def mark_train(samples: list[int]) -> tuple[str, list[int]]:
            return ("train", samples)

        def mark_eval(samples: list[int]) -> tuple[str, list[int]]:
            return ("eval", samples)

        sampler = InterleavedSampler(
            seq(4),
            InterleavedSamplerConfig(batch_size=2, max_epochs=1),
            train_collator=mark_train,
            callback_samplers=[
                SamplerIntervalConfig(seq(3, 100), pipeline=mark_eval, every_n_epochs=1),
                callback(1, every_n_epochs=1),
            ],
        )
        loaded = list(sampler.get_data_loader())
        assert loaded[:4] == [("train", [0, 1]), ("train", [2, 3]), ("eval", [100, 101]),
                              ("eval", [102])]  # fmt: skip
        assert loaded[4].tolist() == [0]  # default_collate

    def test_iterating_the_sampler_yields_indices_and_batch_ends(self) -> None:
        config = InterleavedSamplerConfig(batch_size=2, drop_last=False, max_epochs=1)
        assert list(InterleavedSampler(seq(3), config)) == [
            SamplerOutput(False, 0),
            SamplerOutput(True, 1),
            SamplerOutput(True, 2),
        ]
