"""The reference API (names, fields, defaults, validators) and the core's clear errors."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from helpers import seq
from pydantic import ValidationError

import interleaved_sampler
from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
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
        assert fields.pop("split") == "strided"  # how a pass splits over ranks
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
        parameters = inspect.signature(InterleavedSampler).parameters
        assert list(parameters)[:4] == [
            "train_sampler", "config", "train_collator", "callback_samplers"
        ]  # fmt: skip
        added = ("num_replicas", "rank", "train_dataset")
        additions = {name: p for name, p in parameters.items() if name in added}
        assert list(parameters)[4:] == list(additions)  # the additions are keyword-only
        assert all(p.kind is p.KEYWORD_ONLY for p in additions.values())
        assert [p.default for p in additions.values()] == [1, 0, None]
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
