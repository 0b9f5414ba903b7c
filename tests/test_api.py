"""The reference API (names, fields, defaults, validators) and the core's clear errors."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from helpers import IdentityDataset, ListSampler, callback, seq
from pydantic import ValidationError

import interleaved_sampler
from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
    SizedIterable,
)


class TestReferenceApi:
    def test_public_names(self) -> None:
        for name in ("SamplerIntervalConfig", "InterleavedSamplerConfig", "InterleavedSampler",
                     "SamplerOutput", "SizedIterable", "SeededRandomSampler"):  # fmt: skip
            assert hasattr(interleaved_sampler, name)

    def test_interval_config_fields_and_defaults(self) -> None:
        fields = {f.name: f.default for f in dataclasses.fields(SamplerIntervalConfig)}
        assert list(fields)[:6] == ["sampler", "pipeline", "every_n_epochs", "every_n_updates",
                                    "every_n_samples", "batch_size"]  # fmt: skip
        assert fields.pop("cache") is False  # the evaluation cache is opt-in
        assert all(fields[name] is None for name in list(fields)[2:])
        config = SamplerIntervalConfig(seq(3), None, every_n_epochs=2)  # positional pipeline
        assert config.validate_frequency() is config
        assert SamplerIntervalConfig.check_positive_values(3) == 3

    def test_sampler_config_fields_and_defaults(self) -> None:
        config = InterleavedSamplerConfig(batch_size=8, max_epochs=1)
        assert config.model_dump() == {
            "batch_size": 8, "drop_last": True, "max_epochs": 1, "max_updates": None,
            "max_samples": None, "start_epoch": None, "start_update": None,
            "start_sample": None, "evaluation": False,
        }  # fmt: skip
        assert config.validate_stop() is config and config.validate_start() is config
        assert InterleavedSamplerConfig.check_positive_values(0) == 0

    def test_sampler_signature_and_attributes(self) -> None:
        parameters = list(inspect.signature(InterleavedSampler).parameters)
        assert parameters == ["train_sampler", "config", "train_collator", "callback_samplers"]
        sampler = InterleavedSampler(seq(4), InterleavedSamplerConfig(batch_size=2, max_epochs=1))
        for name in ("config", "main_sampler", "extra_samplers", "index_offsets", "dataset",
                     "collator", "batch_sampler", "batch_size"):  # fmt: skip
            assert hasattr(sampler, name)
        assert sampler.extra_samplers == [] and sampler.index_offsets == []
        loader_parameters = inspect.signature(sampler.get_data_loader).parameters
        assert list(loader_parameters)[:2] == ["num_workers", "pin_memory"]

    def test_sized_iterable_protocol(self) -> None:
        assert isinstance(seq(3), SizedIterable)
        assert not isinstance(iter([1]), SizedIterable)

    def test_interval_config_validates_assignment(self) -> None:
        config = SamplerIntervalConfig(seq(3), every_n_epochs=2)
        with pytest.raises(ValidationError, match="every_n_epochs"):
            config.every_n_epochs = 0


class TestSeededRandomSampler:
    def test_order_is_a_function_of_seed_and_epoch(self) -> None:
        a, b = SeededRandomSampler(range(50), seed=4), SeededRandomSampler(range(50), seed=4)
        orders = []
        for epoch in range(3):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            assert list(a) == list(b) and sorted(a) == list(range(50))
            orders.append(list(a))
        assert len({tuple(o) for o in orders}) == 3
        assert list(SeededRandomSampler(range(50), seed=5)) != orders[0]

    def test_seed_range_is_checked(self) -> None:
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*31\), got -1"):
            SeededRandomSampler(range(3), seed=-1)


class TestCoreErrors:
    def test_empty_main_sampler_in_training(self) -> None:
        config = InterleavedSamplerConfig(batch_size=2, max_epochs=1)
        with pytest.raises(ValueError, match=r"main \(train\) sampler is empty, got len\(\) == 0"):
            InterleavedSampler(seq(0), config)

    @pytest.mark.parametrize("field", ["batch_size"])
    def test_batch_size_zero(self, field: str) -> None:
        with pytest.raises(ValidationError, match=r"batch_size\n.*>= 1\), got 0"):
            InterleavedSamplerConfig(batch_size=0, max_epochs=1)

    def test_sampler_without_dataset(self) -> None:
        config = InterleavedSamplerConfig(batch_size=2, max_epochs=1)
        with pytest.raises(TypeError, match=r"train sampler list exposes no dataset.*data_source"):
            InterleavedSampler([0, 1], config)  # type: ignore[arg-type]

    def test_empty_callback(self) -> None:
        config = InterleavedSamplerConfig(batch_size=2, max_epochs=1)
        cb = SamplerIntervalConfig(seq(0), every_n_epochs=1, name="val")
        with pytest.raises(ValueError, match=r"the val sampler \(SequentialSampler\) is empty"):
            InterleavedSampler(seq(4), config, callback_samplers=[cb])

    @pytest.mark.parametrize(
        ("indices", "claimed", "message"),
        [
            ([0, 1, 2], 4, r"yielded only 3 indices in epoch 0, but its len\(\) is 4"),
        ],
    )
    def test_main_sampler_whose_len_lies(
        self, indices: list[int], claimed: int, message: str
    ) -> None:
        main = ListSampler(IdentityDataset(4), indices, claimed)
        config = InterleavedSamplerConfig(batch_size=2, drop_last=False, max_epochs=1)
        sampler = InterleavedSampler(main, config)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"the train sampler \(ListSampler\) " + message):
            list(sampler.batch_sampler)

    @pytest.mark.parametrize(
        ("indices", "claimed", "message"),
        [
            ([0, 1], 3, r"yielded only 2 indices in one pass, but its len\(\) is 3"),
            ([0, 1, 2], 2, r"yielded more than its len\(\) = 2 indices in one pass"),
        ],
    )
    def test_callback_sampler_whose_len_lies(
        self, indices: list[int], claimed: int, message: str
    ) -> None:
        cb = SamplerIntervalConfig(ListSampler(IdentityDataset(3), indices, claimed),
                                   every_n_epochs=1)  # fmt: skip
        config = InterleavedSamplerConfig(batch_size=2, max_epochs=1)
        sampler = InterleavedSampler(seq(2), config, callback_samplers=[cb])
        with pytest.raises(ValueError, match=r"the callback0 sampler \(ListSampler\) " + message):
            list(sampler.batch_sampler)

    def test_index_outside_the_dataset_is_caught_in_the_loader(self) -> None:
        main = ListSampler(IdentityDataset(4), [0, 1, 2, 5])
        config = InterleavedSamplerConfig(batch_size=2, max_epochs=1)
        cb: Any = callback(3, every_n_epochs=1)
        loader = InterleavedSampler(main, config, callback_samplers=[cb]).get_data_loader()  # type: ignore[arg-type]
        with pytest.raises(IndexError, match=r"train yielded an index outside its dataset, "
                           r"got 5; valid: 0..3"):  # fmt: skip
            list(loader)


def test_epoch_seeds_do_not_collide_for_nearby_seeds_and_epochs() -> None:
    from interleaved_sampler.samplers import epoch_seed

    seeds = {epoch_seed(seed, epoch) for seed in range(64) for epoch in range(1024)}
    assert len(seeds) == 64 * 1024
    assert all(0 <= s < 2**32 for s in seeds)
