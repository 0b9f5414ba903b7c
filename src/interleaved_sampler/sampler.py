"""``InterleavedSampler``: the reference API, assembled from the schedule and the batching."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from torch.utils.data import DataLoader, IterableDataset

from interleaved_sampler.batching import CachingBatchSampler, InterleavedBatchSampler, Source
from interleaved_sampler.checks import (
    check_picklable,
    check_type,
    describe,
    name_of,
    not_a_sampler,
    sampler_len,
)
from interleaved_sampler.config import (
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    source_names,
)
from interleaved_sampler.data import InterleavedCollator, InterleavedDataset, dataset_length
from interleaved_sampler.loader import InterleavedDataLoader
from interleaved_sampler.protocols import SizedIterable
from interleaved_sampler.samplers import dataset_of, shard_of, shuffles
from interleaved_sampler.schedule import (
    EpochStructure,
    Schedule,
    start_progress,
)
from interleaved_sampler.sharding import Sharding, check_sharding
from interleaved_sampler.split import InterleavedLoaders
from interleaved_sampler.stream import Stream

# DataLoader arguments that the interleaved sampler owns.
_OWNED_LOADER_ARGS = frozenset(
    ("dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last", "collate_fn")
)


class SamplerOutput(NamedTuple):
    """One index of the interleaved stream; ``is_full_batch`` marks the last index of a batch."""

    is_full_batch: bool
    idx: int


class InterleavedSampler:
    """Training batches and, at configured intervals, whole passes over callback datasets.

    One ``DataLoader`` over the concatenation of all datasets serves the whole run: the
    batch sampler yields the training batches and, after each update, one full pass over
    every callback that is due, in exactly the order the training loop consumes them.

    Args:
        train_sampler: sampler of the main (training) dataset, e.g. ``SeededRandomSampler``,
            or a :class:`~interleaved_sampler.Stream` over an ``IterableDataset`` (bounded
            by ``max_updates``/``max_samples``; see ``docs/streams.md``).
        config: batching, stop limits and start position of the main sampler.
        train_collator: collate function of training batches (``None``: ``default_collate``).
        callback_samplers: when to run a pass over which other dataset, in this order.
        num_replicas: split the run over this many ranks (processes): every sampler is
            global (the whole dataset), the schedule and every batch size are those of
            the global run, and each global batch is split into ``num_replicas`` disjoint
            parts (see :class:`~interleaved_sampler.sharding.Sharding`); batch sizes must
            be multiples of it. A state saved with one ``num_replicas`` loads with another.
        rank: the rank whose part of every global batch this sampler yields.
        train_dataset: the dataset ``train_sampler`` samples from, for a sampler that does
            not expose it as ``.data_source`` or ``.dataset`` (torch's
            ``SubsetRandomSampler``, ``WeightedRandomSampler``); ``None``: the sampler's.
            Given both, they must be the same object. Its indices must lie in
            ``[0, len(train_dataset))``: checked here where the sampler's range is known
            without iterating it (``WeightedRandomSampler``, ``SubsetRandomSampler``), else
            when a batch is loaded (an ``IndexError`` naming the source).

    Example:
        >>> from torch.utils.data import SequentialSampler
        >>> train, test = list(range(10)), list(range(100, 103))
        >>> sampler = InterleavedSampler(
        ...     SequentialSampler(train),
        ...     InterleavedSamplerConfig(batch_size=4, max_epochs=1),
        ...     callback_samplers=[
        ...         SamplerIntervalConfig(SequentialSampler(test), every_n_epochs=1)
        ...     ],
        ... )
        >>> [batch.tolist() for batch in sampler.get_data_loader()]
        [[0, 1, 2, 3], [4, 5, 6, 7], [100, 101, 102]]
    """

    def __init__(
        self,
        train_sampler: SizedIterable | Stream,
        config: InterleavedSamplerConfig,
        train_collator: Callable[..., Any] | None = None,
        callback_samplers: Sequence[SamplerIntervalConfig] | None = None,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        train_dataset: Any = None,
    ) -> None:
        callbacks = _check_arguments(train_sampler, config, train_collator, callback_samplers)
        self.sharding = Sharding(num_replicas, rank)
        self.config = config
        self.main_sampler = train_sampler
        self.extra_samplers = callbacks
        self.sources = _sources(train_sampler, train_collator, callbacks, train_dataset)
        self.source_names = [source.name for source in self.sources]
        self.dataset = InterleavedDataset(
            [source.dataset for source in self.sources], self.source_names
        )
        self.index_offsets = self.dataset.offsets[1:]
        self.collator = InterleavedCollator(
            [source.collate_fn for source in self.sources], self.source_names
        )
        self.schedule = Schedule.for_configs(
            config,
            None if self.is_stream else self.sources[0].length,
            [
                (callback, source.length)
                for callback, source in zip(callbacks, self.sources[1:], strict=True)
            ],
        )
        self.batch_size = self.schedule.structure.batch_size
        if self.sharding.is_sharded:
            _check_global(self.sources, self.sharding)
            own_batch_sizes = [callback.batch_size is not None for callback in callbacks]
            check_sharding(self.schedule, self.source_names, own_batch_sizes, num_replicas)
        self.batch_sampler = InterleavedBatchSampler(
            self.schedule, self.sources, sharding=self.sharding
        )
        self.batch_sampler.check_resumable(self.schedule.first_position)

    @property
    def is_stream(self) -> bool:
        """Whether the training source is a :class:`~interleaved_sampler.Stream`."""
        return isinstance(self.main_sampler, Stream)

    @property
    def num_replicas(self) -> int:
        """The number of ranks the global run is split over (1: not split)."""
        return self.sharding.num_replicas

    @property
    def rank(self) -> int:
        """The rank whose part of every global batch this sampler yields."""
        return self.sharding.rank

    @staticmethod
    def calculate_start(config: InterleavedSamplerConfig, sampler_len: int) -> tuple[int, int, int]:
        """``(epoch, update, sample)`` at which a run with this config starts."""
        check_type("config", config, InterleavedSamplerConfig, "an InterleavedSamplerConfig")
        check_type("sampler_len", sampler_len, int, "an int >= 0 (the main sampler's len())")
        if sampler_len < 0:
            raise ValueError(f"sampler_len must be an int >= 0, got {describe(sampler_len)}")
        structure = EpochStructure.create(sampler_len, config.batch_size, config.drop_last)
        start = start_progress(config, structure)
        return start.epoch, start.update, start.sample

    def __iter__(self) -> Iterator[SamplerOutput]:
        if self.is_stream:
            raise TypeError(
                "a run whose training source is a Stream has no training indices to iterate; "
                "load it with get_data_loader() or get_loaders()"
            )
        for batch in self.batch_sampler:
            last = len(batch) - 1
            for position, index in enumerate(batch):
                yield SamplerOutput(position == last, index)

    def get_data_loader(
        self,
        num_workers: int = 0,
        pin_memory: bool = False,
        *,
        tagged: bool = False,
        **dataloader_kwargs: Any,
    ) -> InterleavedDataLoader:
        """The one ``DataLoader`` of the run, over :attr:`dataset` with :attr:`batch_sampler`.

        With cached callbacks (``SamplerIntervalConfig(cache=True)``) its batch sampler is a
        :class:`~interleaved_sampler.batching.CachingBatchSampler`, which leaves the later
        passes over them out of the loading, and the loader serves them from memory.

        Args:
            num_workers: number of worker processes (0: load in the main process); over a
                stream, each iterates its own copy of it.
            pin_memory: copy batches into pinned memory.
            tagged: yield :class:`~interleaved_sampler.data.InterleavedBatch` objects (the
                collated batch as ``.data``, with its source, the training progress and its
                position in its pass) instead of bare collated batches.
            **dataloader_kwargs: any other ``DataLoader`` argument (``prefetch_factor``,
                ``persistent_workers``, ``multiprocessing_context``, ...), except those
                the sampler sets itself (batching, sampling, ``collate_fn``) and
                ``in_order=False``.
        """
        owned = sorted(_OWNED_LOADER_ARGS.intersection(dataloader_kwargs))
        if owned:
            raise TypeError(
                f"get_data_loader() got {', '.join(owned)}, which the interleaved sampler sets "
                "itself; configure batching in InterleavedSamplerConfig and "
                "SamplerIntervalConfig (pipeline= for collate functions)"
            )
        if not dataloader_kwargs.get("in_order", True):
            raise TypeError(
                "get_data_loader() got in_order=False, which lets batches arrive out of the "
                "schedule's order (evaluation passes mixed into training); leave in_order at "
                "its default, True"
            )
        batch_sampler, collator = self.batch_sampler, self.collator
        cached = {i for i, callback in enumerate(self.extra_samplers) if callback.cache}
        workers = num_workers if self.is_stream else 0  # a stream's copies
        if isinstance(self.main_sampler, Stream):
            self.main_sampler.check_workers(num_workers)
        if cached:
            batch_sampler = CachingBatchSampler(
                self.schedule, self.sources, cached, tagged, self.sharding, workers
            )
        elif tagged or workers:
            batch_sampler = InterleavedBatchSampler(
                self.schedule, self.sources, tagged, self.sharding, workers
            )
        if tagged:
            collator = InterleavedCollator(collator.collate_fns, self.source_names, tagged=True)
        loader = InterleavedDataLoader(
            self.dataset,
            batch_sampler=batch_sampler,
            collate_fn=collator,
            num_workers=num_workers,
            pin_memory=pin_memory,
            **dataloader_kwargs,
        )
        check_picklable(loader, self._sent_to_workers(loader))
        return loader

    def get_loaders(
        self,
        num_workers: int = 0,
        pin_memory: bool = False,
        *,
        tagged: bool = False,
        **dataloader_kwargs: Any,
    ) -> InterleavedLoaders:
        """Split loaders over the run's one loader: ``train`` (one epoch per ``iter()``) and
        ``evaluation`` (name -> the passes over that set, one per ``iter()``), for code that
        wants a train loader and separate evaluation loaders. One worker pool serves them
        all; see :class:`~interleaved_sampler.split.InterleavedLoaders`.

        Args:
            num_workers: number of worker processes of the one pool (0: the main process).
            pin_memory: copy batches into pinned memory.
            tagged: yield :class:`~interleaved_sampler.data.InterleavedBatch` objects
                instead of bare collated batches.
            **dataloader_kwargs: as for :meth:`get_data_loader`; ``persistent_workers``
                defaults to ``True`` with workers: the loader iterates again (keeping its
                workers) where a train sampler that draws its order when its epoch starts
                (torch's ``RandomSampler``) lets the epoch's order be taken by the train
                loader's ``iter()``, as a plain loader takes it.
        """
        dataloader_kwargs.setdefault("persistent_workers", num_workers > 0)
        loader = self.get_data_loader(num_workers, pin_memory, tagged=True, **dataloader_kwargs)
        return InterleavedLoaders(self, loader, tagged)

    def _sent_to_workers(self, loader: DataLoader[Any]) -> Iterator[tuple[str, object]]:
        """What a worker start sends to each worker, one source at a time, with its name."""
        for name, dataset in zip(self.dataset.names, self.dataset.datasets, strict=True):
            yield f"the dataset of {name} ({type(dataset).__name__})", dataset
        for name, collate_fn in zip(self.dataset.names, self.collator.collate_fns, strict=True):
            yield f"the collate function of {name} ({name_of(collate_fn)})", collate_fn
        if loader.worker_init_fn is not None:
            yield f"worker_init_fn ({name_of(loader.worker_init_fn)})", loader.worker_init_fn


def _check_arguments(
    train_sampler: object,
    config: object,
    train_collator: object,
    callback_samplers: object,
) -> list[SamplerIntervalConfig]:
    """Check the constructor's argument types; return the callbacks as a list."""
    check_type("config", config, InterleavedSamplerConfig, "an InterleavedSamplerConfig")
    if isinstance(train_sampler, IterableDataset):
        raise TypeError(
            f"train_sampler got the IterableDataset {type(train_sampler).__name__}; a stream is "
            "the training source as Stream(dataset): InterleavedSampler(Stream(dataset), ...)"
        )
    if not isinstance(train_sampler, SizedIterable | Stream):
        raise TypeError(
            not_a_sampler("train_sampler", train_sampler, "SeededRandomSampler(dataset)")
        )
    if train_collator is not None and not callable(train_collator):
        raise TypeError(
            f"train_collator must be a collate function or None, got {describe(train_collator)}"
        )
    if callback_samplers is None:
        return []
    check_type("callback_samplers", callback_samplers, Sequence, "a list of SamplerIntervalConfig")
    callbacks: list[SamplerIntervalConfig] = list(callback_samplers)  # type: ignore[call-overload]
    for i, callback in enumerate(callbacks):
        check_type(
            f"callback_samplers[{i}]", callback, SamplerIntervalConfig, "a SamplerIntervalConfig"
        )
        if callback.cache and shuffles(callback.sampler):
            raise ValueError(
                f"callback_samplers[{i}] ({source_names([c.name for c in callbacks])[i + 1]}) "
                f"has cache=True but its sampler {type(callback.sampler).__name__} shuffles: "
                "a cached pass is served as the first pass was loaded, in the same order; use "
                "a sampler that repeats its order (SequentialSampler, DistributedSampler with "
                "shuffle=False) or cache=False"
            )
    return callbacks


def _check_global(sources: Sequence[Source], sharding: Sharding) -> None:
    """With ``num_replicas`` > 1 the samplers must see the whole dataset: refuse one that
    shards itself (it would be split twice)."""
    for source in sources:
        shard = shard_of(source.sampler)
        if shard is not None and shard[0] > 1:
            raise ValueError(
                f"with InterleavedSampler(num_replicas={sharding.num_replicas}) every sampler "
                "must be global (over the whole dataset: the library splits each global "
                f"batch over the ranks), got {source.describe()} with num_replicas={shard[0]}, "
                f"rank={shard[1]}; pass it with num_replicas=1 (or a SequentialSampler / "
                "SeededRandomSampler over the whole dataset), or keep per-rank samplers and "
                "leave InterleavedSampler's num_replicas at 1"
            )


def _sources(
    train_sampler: SizedIterable | Stream,
    train_collator: Callable[..., Any] | None,
    callbacks: Sequence[SamplerIntervalConfig],
    train_dataset: Any,
) -> list[Source]:
    """One record per dataset of the run: the main one, then one per callback. A stream is
    its own dataset (the workers load its batches from it), of no indices."""
    names = source_names([callback.name for callback in callbacks])
    samplers = [(train_sampler, train_collator), *((c.sampler, c.pipeline) for c in callbacks)]
    splits = ["strided", *(c.split for c in callbacks)]
    given = [
        (train_dataset, "InterleavedSampler(train_dataset=...)"),
        *(
            (c.dataset, f"SamplerIntervalConfig(dataset=...) of callback_samplers[{i}]")
            for i, c in enumerate(callbacks)
        ),
    ]
    datasets = [
        sampler if isinstance(sampler, Stream) else dataset_of(sampler, name, dataset, field)
        for (sampler, _), name, (dataset, field) in zip(samplers, names, given, strict=True)
    ]
    lengths = [
        0 if isinstance(sampler, Stream) else sampler_len(sampler, name)
        for (sampler, _), name in zip(samplers, names, strict=True)
    ]
    for (sampler, _), name, length in zip(samplers[1:], names[1:], lengths[1:], strict=True):
        if length == 0:
            raise ValueError(
                f"the {name} sampler ({type(sampler).__name__}) is empty, got len() == 0; "
                "a callback pass needs at least one index: remove the callback or give it data"
            )
    offsets = [sum(map(dataset_length, datasets[:i])) for i in range(len(datasets))]
    return [
        Source(sampler, name, dataset, offset, length, collate_fn, split)
        for (sampler, collate_fn), name, dataset, offset, length, split in zip(
            samplers, names, datasets, offsets, lengths, splits, strict=True
        )
    ]
