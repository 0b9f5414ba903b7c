"""Random run configurations (hypothesis strategies) that build the library's objects and the
model's from the same description."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from hypothesis import assume
from hypothesis import strategies as st
from spec_model import ModelCallback, ModelConfig
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)


class ListedSampler(Sampler[int]):
    """A fixed shuffled order that can only be iterated (no ``iter_from``): the samplers the
    library reads whole, batch by batch."""

    repeats_epoch_order = True

    def __init__(self, data_source: Any, seed: int) -> None:
        self.data_source = data_source
        self.order = list(range(len(data_source)))
        random.Random(seed).shuffle(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)


@dataclass(frozen=True)
class SamplerSpec:
    kind: str  # "sequential" | "seeded" | "distributed" | "random" | "listed"
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
        if self.kind == "random":  # every build draws the same orders
            return RandomSampler(dataset, generator=torch.Generator().manual_seed(self.seed))
        if self.kind == "listed":
            return ListedSampler(dataset, self.seed)
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
    interval: str  # "every_n_epochs" | "every_n_updates" | "every_n_samples" | "at_updates"
    n: int  # at_updates: a seed of the updates
    batch_size: int | None
    cache: bool = False
    split: str = "strided"

    def due(self) -> dict[str, Any]:
        """The callback's due field and value; ``at_updates``: a few updates drawn from n."""
        if self.interval != "at_updates":
            return {self.interval: self.n}
        return {self.interval: tuple(sorted(random.Random(self.n).sample(range(1, 40), 4)))}


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

    def sampler(
        self, callback_datasets: Sequence[Any] = (), num_replicas: int = 1, rank: int = 0
    ) -> InterleavedSampler:
        """The library's sampler (rank ``rank`` of ``num_replicas``); ``callback_datasets``
        replace the callbacks' (lists)."""
        datasets = list(callback_datasets) or [None] * len(self.callbacks)
        return InterleavedSampler(
            self.main.build(),
            self.config(),
            callback_samplers=[
                SamplerIntervalConfig(
                    c.sampler.build(dataset),
                    batch_size=c.batch_size,
                    cache=c.cache,
                    split=c.split,
                    **c.due(),
                )
                for c, dataset in zip(self.callbacks, datasets, strict=True)
            ],
            num_replicas=num_replicas,
            rank=rank,
        )

    def model(self) -> tuple[Any, ModelConfig]:
        offsets, offset = [], self.main.length
        for c in self.callbacks:
            offsets.append(offset)
            offset += c.sampler.length
        callbacks = [
            ModelCallback(c.sampler.build(), o, batch_size=c.batch_size, **c.due())
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


# Samplers over the whole dataset, for runs the library shards itself (num_replicas=).
GLOBAL_KINDS = ("sequential", "seeded", "distributed", "random", "listed")


@st.composite
def sampler_specs(
    draw: st.DrawFn, min_length: int = 0, max_length: int = 30, global_: bool = False
) -> SamplerSpec:
    """A sampler; ``global_``: one over the whole dataset (of any kind), else a sequential,
    seeded or per-rank distributed one."""
    kinds = GLOBAL_KINDS if global_ else ("sequential", "seeded", "distributed")
    kind = draw(st.sampled_from(kinds))
    length = draw(st.integers(min_length, max_length))
    if kind != "distributed" or global_:
        shuffle = kind == "distributed" and draw(st.booleans())
        return SamplerSpec(kind, length, seed=draw(st.integers(0, 3)), shuffle=shuffle)
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
def callback_specs(draw: st.DrawFn, cache: bool = False, global_: bool = False) -> CallbackSpec:
    """A callback; with ``cache``, cached or not (a shuffling sampler never is)."""
    sampler = draw(sampler_specs(min_length=3, max_length=12, global_=global_))
    interval = draw(
        st.sampled_from(["every_n_epochs", "every_n_updates", "every_n_samples", "at_updates"])
    )
    n = draw(st.integers(1, 25 if interval == "every_n_samples" else 6))
    batch_size = draw(st.integers(1, 6))
    cached = cache and not sampler.shuffle and sampler.kind != "random" and draw(st.booleans())
    split = draw(st.sampled_from(["strided", "contiguous"])) if global_ else "strided"
    if interval != "every_n_samples" and draw(st.booleans()):
        return CallbackSpec(sampler, interval, n, None, cached, split)
    return CallbackSpec(sampler, interval, n, batch_size, cached, split)


@st.composite
def scenarios(
    draw: st.DrawFn,
    with_start: bool = True,
    min_main: int = 1,
    cache: bool = False,
    global_: bool = False,
) -> Scenario:
    """A run; ``global_``: with samplers over the whole datasets (see :func:`sampler_specs`)."""
    main = draw(sampler_specs(min_length=min_main, max_length=30, global_=global_))
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
        callbacks=tuple(draw(st.lists(callback_specs(cache, global_), max_size=3))),
    )


def library_batches(sampler: InterleavedSampler) -> list[tuple[int, list[int]]]:
    return [(batch.source_index, list(batch)) for batch in sampler.batch_sampler]
