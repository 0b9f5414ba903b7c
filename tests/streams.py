"""Streams for the tests (module level, so `spawn` can pickle them) and a model of the SPEC's
stream runs ("Streaming training sources") that shares no code with the library."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from helpers import IdentityDataset
from spec_model import ModelCallback, ModelConfig, model_batches
from torch.utils.data import DataLoader, IterableDataset, SequentialSampler, get_worker_info

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    Stream,
)


def worker_slot() -> tuple[int, int]:
    """This process's worker id and the loader's number of workers (0 and 1 in the main
    process)."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class WorkerShardedSamples(IterableDataset[Any]):
    """A stream of the items of ``samples`` without ``state_dict``: worker ``w`` of ``W``
    yields the items ``w, w + W, ...``.

    Args:
        samples: a sequence or map-style dataset.
    """

    def __init__(self, samples: Any) -> None:
        self.samples = samples

    def __iter__(self) -> Iterator[Any]:
        worker, workers = worker_slot()
        return (self.samples[i] for i in range(worker, len(self.samples), workers))


class ShardedStream(IterableDataset[int]):
    """Samples ``base + j`` in shards of the given lengths; worker ``w`` of ``W`` takes the
    shards ``w, w + W, ...`` of the rank's (``rank, rank + num_replicas, ...``), as Hugging
    Face ``datasets`` shards. ``set_epoch(e)`` changes the order: odd epochs reverse the
    shards, and every shard is rotated by ``e``. Uneven shards make the copies run out at
    different times."""

    def __init__(
        self, shard_lengths: list[int], base: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        self.shard_lengths, self.base = shard_lengths, base
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        """This process's samples of the current epoch, in order."""
        worker, workers = worker_slot()
        starts = [sum(self.shard_lengths[:i]) for i in range(len(self.shard_lengths))]
        shards = [
            list(range(self.base + start, self.base + start + n))
            for start, n in zip(starts, self.shard_lengths, strict=True)
        ][self.rank :: self.num_replicas][worker::workers]
        if self.epoch % 2:
            shards.reverse()
        rotated = [s[self.epoch % len(s) :] + s[: self.epoch % len(s)] for s in shards if s]
        return [sample for shard in rotated for sample in shard]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())


class CountingStream(ShardedStream):
    """A :class:`ShardedStream` whose class attribute :attr:`generated` counts the samples
    this process produced, so a test sees whether a resume replayed the consumed ones."""

    generated = 0

    def __iter__(self) -> Iterator[int]:
        for sample in self.order():
            type(self).generated += 1
            yield sample


class StatefulStream(CountingStream):
    """A :class:`CountingStream` with ``state_dict``/``load_state_dict`` (its position in
    the epoch's order)."""

    generated = 0

    def __init__(self, shard_lengths: list[int], base: int = 0) -> None:
        super().__init__(shard_lengths, base)
        self.position = 0
        self.start = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        assert state["epoch"] == self.epoch, (state, self.epoch)
        self.start = state["position"]

    def __iter__(self) -> Iterator[int]:
        order, self.position, self.start = self.order(), self.start, 0
        for sample in order[self.position :]:
            type(self).generated += 1
            self.position += 1
            yield sample


class Uncopyable(ShardedStream):
    """A stream holding a generator, which cannot be deep-copied."""

    def __init__(self) -> None:
        super().__init__([4])
        self.pending = (i for i in range(3))


def hf_stream(length: int = 40, shards: int = 6, base: int = 0) -> Any:
    """A Hugging Face ``datasets.IterableDataset`` of ``{"x": base + j}``, built in memory."""
    from datasets import Dataset

    table = {"x": list(range(base, base + length))}
    return Dataset.from_dict(table).to_iterable_dataset(num_shards=shards)


class _WorkerTagged(IterableDataset[tuple[int, Any]]):
    """Yields ``(worker id, sample)`` of a fresh copy of ``dataset`` after ``set_epoch``."""

    def __init__(self, dataset: Any, epoch: int) -> None:
        self.dataset, self.epoch = dataset, epoch

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        info = get_worker_info()
        dataset = copy.deepcopy(self.dataset)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.epoch)
        for sample in dataset:
            yield (info.id if info is not None else 0, sample)


def copy_streams(dataset: Any, workers: int, needed: int, **loader: Any) -> list[list[Any]]:
    """The SPEC's stream of each copy: copy ``c`` is worker ``c`` of a plain ``DataLoader(...,
    num_workers=workers)``, and its iteration ``i`` (after ``set_epoch(i)``) follows its
    iteration ``i - 1``; at least ``needed`` samples of each."""
    copies = max(1, workers)
    streams: list[list[Any]] = [[] for _ in range(copies)]
    for epoch in range(1000):
        if min(map(len, streams)) >= needed:
            return streams
        plain = DataLoader(
            _WorkerTagged(dataset, epoch), batch_size=None, num_workers=workers, **loader
        )
        for worker, sample in plain:
            streams[worker].append(sample)
    raise AssertionError("a copy yields nothing")


def values(data: Any) -> list[Any]:
    """A collated batch as plain values (Hugging Face rows are dicts of ``x``)."""
    if isinstance(data, dict):
        data = data["x"]
    return data.tolist() if isinstance(data, torch.Tensor) else list(data)


def sample_value(sample: Any) -> Any:
    return sample["x"] if isinstance(sample, dict) else sample


# An evaluation set: (length, first value, its SamplerIntervalConfig fields).
EvalSet = tuple[int, int, dict[str, Any]]


def stream_sampler(dataset: Any, eval_sets: list[EvalSet], **config: Any) -> InterleavedSampler:
    """A run over ``Stream(dataset)`` with map-style evaluation sets of consecutive values."""
    callbacks = [
        SamplerIntervalConfig(SequentialSampler(IdentityDataset(length, base)), **fields)
        for length, base, fields in eval_sets
    ]
    return InterleavedSampler(
        Stream(dataset), InterleavedSamplerConfig(**config), callback_samplers=callbacks
    )


def loaded(loader: Any) -> list[tuple[int, list[Any]]]:
    """A tagged loader's batches as ``(source_index, values)``."""
    return [(batch.source_index, values(batch.data)) for batch in loader]


def model_run(
    streams: list[list[Any]], eval_sets: list[EvalSet], **config: Any
) -> list[tuple[int, list[Any]]]:
    """The SPEC's run over the copies' ``streams``: the passes where the same schedule over a
    map-style sampler puts them (:func:`spec_model.model_batches` over one epoch longer than
    the run), and training batch ``u`` the next ``batch_size`` samples of copy ``u mod W``."""
    size, copies = config["batch_size"], len(streams)
    end = max(config.get("max_updates") or 0, -(-(config.get("max_samples") or 0) // size))
    end = max(end, config.get("start_update") or 0)
    due = ("every_n_updates", "every_n_samples", "at_updates", "batch_size")
    callbacks = [
        ModelCallback(range(length), 0, **{k: v for k, v in fields.items() if k in due})
        for length, _, fields in eval_sets
    ]
    model = ModelConfig(callbacks=callbacks, **config)
    run = []
    for source, indices in model_batches(range(2 * size * (end + 1)), model):
        if source == 0:
            update = indices[0] // size
            first = update // copies * size
            chunk = streams[update % copies][first : first + size]
            run.append((0, [sample_value(sample) for sample in chunk]))
        else:
            base = eval_sets[source - 1][1]
            run.append((source, [base + index for index in indices]))
    return run
