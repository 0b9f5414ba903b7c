"""Random run configurations (hypothesis strategies) that build the library's objects and the
model's from the same description."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from spec_model import ModelCallback, ModelConfig
from torch.utils.data import DistributedSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)


@dataclass(frozen=True)
class SamplerSpec:
    kind: str  # "sequential" | "seeded" | "distributed"
    length: int  # dataset length
    seed: int = 0
    replicas: int = 1
    rank: int = 0
    shuffle: bool = False
    drop_last: bool = False

    def build(self, dataset: Any = None) -> Any:
        dataset = list(range(self.length)) if dataset is None else dataset
        if self.kind == "sequential":
            return SequentialSampler(dataset)
        if self.kind == "seeded":
            return SeededRandomSampler(dataset, seed=self.seed)
        return DistributedSampler(
            dataset,
            num_replicas=self.replicas,
            rank=self.rank,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=self.drop_last,
        )


@dataclass(frozen=True)
class CallbackSpec:
    sampler: SamplerSpec
    interval: str  # "every_n_epochs" | "every_n_updates" | "every_n_samples"
    n: int
    batch_size: int | None
    cache: bool = False


@dataclass(frozen=True)
class Scenario:
    main: SamplerSpec
    batch_size: int
    drop_last: bool
    stops: dict[str, int]
    start: dict[str, int] = field(default_factory=dict)
    evaluation: bool = False
    callbacks: tuple[CallbackSpec, ...] = ()

    def config(self) -> InterleavedSamplerConfig:
        return InterleavedSamplerConfig(
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            evaluation=self.evaluation,
            **self.stops,
            **self.start,
        )

    def sampler(self, callback_datasets: Sequence[Any] = ()) -> InterleavedSampler:
        """The library's sampler; ``callback_datasets`` replace the callbacks' (lists)."""
        datasets = list(callback_datasets) or [None] * len(self.callbacks)
        return InterleavedSampler(
            self.main.build(),
            self.config(),
            callback_samplers=[
                SamplerIntervalConfig(
                    c.sampler.build(dataset),
                    batch_size=c.batch_size,
                    cache=c.cache,
                    **{c.interval: c.n},
                )
                for c, dataset in zip(self.callbacks, datasets, strict=True)
            ],
        )

    def model(self) -> tuple[Any, ModelConfig]:
        offsets, offset = [], self.main.length
        for c in self.callbacks:
            offsets.append(offset)
            offset += c.sampler.length
        callbacks = [
            ModelCallback(c.sampler.build(), o, batch_size=c.batch_size, **{c.interval: c.n})
            for c, o in zip(self.callbacks, offsets, strict=True)
        ]
        config = ModelConfig(
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            evaluation=self.evaluation,
            callbacks=callbacks,
            **self.stops,
            **self.start,
        )
        return self.main.build(), config

    def with_start(self, **start: int) -> Scenario:
        return replace(self, start=start)


@st.composite
def sampler_specs(draw: st.DrawFn, min_length: int = 0, max_length: int = 30) -> SamplerSpec:
    kind = draw(st.sampled_from(["sequential", "seeded", "distributed"]))
    length = draw(st.integers(min_length, max_length))
    if kind != "distributed":
        return SamplerSpec(kind, length, seed=draw(st.integers(0, 3)))
    replicas = draw(st.integers(2, 3))
    return SamplerSpec(
        kind,
        length,
        seed=draw(st.integers(0, 3)),
        replicas=replicas,
        rank=draw(st.integers(0, replicas - 1)),
        shuffle=draw(st.booleans()),
        drop_last=draw(st.booleans()),
    )


@st.composite
def callback_specs(draw: st.DrawFn, cache: bool = False) -> CallbackSpec:
    """A callback; with ``cache``, cached or not (a shuffling sampler never is)."""
    sampler = draw(sampler_specs(min_length=3, max_length=12))
    interval = draw(st.sampled_from(["every_n_epochs", "every_n_updates", "every_n_samples"]))
    n = draw(st.integers(1, 25 if interval == "every_n_samples" else 6))
    batch_size = draw(st.integers(1, 6))
    cached = cache and not sampler.shuffle and draw(st.booleans())
    if interval != "every_n_samples" and draw(st.booleans()):
        return CallbackSpec(sampler, interval, n, None, cached)
    return CallbackSpec(sampler, interval, n, batch_size, cached)


@st.composite
def scenarios(
    draw: st.DrawFn, with_start: bool = True, min_main: int = 1, cache: bool = False
) -> Scenario:
    main = draw(sampler_specs(min_length=min_main, max_length=30))
    assume(len(main.build()) >= min_main)  # a distributed shard can be empty
    batch_size = draw(st.integers(1, 10))
    stop_fields = draw(
        st.lists(
            st.sampled_from(["max_epochs", "max_updates", "max_samples"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    upper = {"max_epochs": 4, "max_updates": 20, "max_samples": 80}
    # a zero limit means evaluation mode: draw it only now and then
    stops = {
        f: 0 if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, upper[f]))
        for f in stop_fields
    }
    start: dict[str, int] = {}
    if with_start:
        kind = draw(st.sampled_from(["none", "start_epoch", "start_update", "start_sample"]))
        if kind == "start_epoch":
            start = {kind: draw(st.integers(0, 5))}
        elif kind == "start_update":
            start = {kind: draw(st.integers(0, 25))}
        elif kind == "start_sample":
            start = {kind: draw(st.integers(0, 12)) * batch_size}
    return Scenario(
        main=main,
        batch_size=batch_size,
        drop_last=draw(st.booleans()),
        stops=stops,
        start=start,
        evaluation=draw(st.booleans()) and draw(st.booleans()),
        callbacks=tuple(draw(st.lists(callback_specs(cache), max_size=3))),
    )


def library_batches(sampler: InterleavedSampler) -> list[tuple[int, list[int]]]:
    return [(batch.source_index, list(batch)) for batch in sampler.batch_sampler]
