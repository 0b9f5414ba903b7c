"""Streams (``Stream(dataset)``): an IterableDataset as the training source on the run's one
pool, against the plain ``DataLoader`` over the same dataset and the model of the SPEC
(``streams.model_run``: copy ``u mod W`` gives training batch ``u``, each copy restarts by
itself after ``set_epoch(i)``, the passes where a map-style run puts them).

Real parts: Hugging Face ``datasets`` streams built in memory, a hand-written sharding
stream, real worker processes (fork here; spawn in the slow tier).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import (
    CountingStream,
    EvalSet,
    ShardedStream,
    StatefulStream,
    Uncopyable,
    copy_streams,
    hf_stream,
    loaded,
    model_run,
    stream_sampler,
    values,
)
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    Stream,
)
from interleaved_sampler.stream import EmptySlot

FORK = {"multiprocessing_context": "fork"}
EVALS: list[EvalSet] = [
    (5, 100, {"every_n_updates": 3, "batch_size": 2, "name": "val"}),
    (4, 200, {"every_n_samples": 12, "batch_size": 3, "name": "test"}),
]
UNEVEN = [5, 3, 7, 2, 6]  # shard lengths: the copies run out at different times


def context(workers: int, method: str = "fork") -> dict[str, Any]:
    return {"multiprocessing_context": method} if workers else {}


def expected(dataset: Any, workers: int, evals: list[EvalSet], **config: Any) -> list[Any]:
    """The model's run over the copies of ``dataset`` (from a plain loader's workers)."""
    size = config["batch_size"]
    updates = max(config.get("max_updates") or 0, -(-(config.get("max_samples") or 0) // size))
    needed = -(-updates // max(1, workers)) * size
    streams = copy_streams(dataset, workers, needed, **context(workers))
    return model_run(streams, evals, **config)


def fails(loader: Any, error: type[Exception], match: str) -> None:
    """Iterating ``loader`` raises ``error``; its workers are shut down right away (left to
    the garbage collector, a failed iterator's workers take seconds to join)."""
    iterator = iter(loader)
    try:
        with pytest.raises(error, match=match):
            for _ in iterator:
                pass
    finally:
        shutdown = getattr(loader, "shutdown_workers", None) or iterator._shutdown_workers
        shutdown()


def first_short(batches: list[list[Any]], size: int) -> int:
    """The index of the plain loader's first batch that is not full (its first worker that
    ran out): before it, every worker was active."""
    return next(i for i, batch in enumerate(batches) if len(batch) < size)


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_hf_stream_with_two_eval_sets_trains_on_the_plain_loaders_batches(workers: int) -> None:
    config = {"batch_size": 3, "max_updates": 20}
    sampler = stream_sampler(hf_stream(), EVALS, **config)
    loader = sampler.get_data_loader(workers, tagged=True, **context(workers))
    run = loaded(loader)
    assert run == expected(hf_stream(), workers, EVALS, **config)
    assert len(loader) == len(run) == 20 + 6 * 3 + 5 * 2  # val: 6 passes of 3; test: 5 of 2

    plain = DataLoader(hf_stream(), batch_size=3, num_workers=workers, **context(workers))
    plain_batches = [values(batch) for batch in plain]
    train = [data for source, data in run if source == 0]
    same = first_short(plain_batches, 3)
    assert same >= 2 * max(1, workers)  # the comparison covers batches of every copy
    assert train[:same] == plain_batches[:same]
    assert train[same:] != plain_batches[same : len(train)]  # then: the restart rule


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_copies_restart_by_themselves_at_their_own_ends(workers: int) -> None:
    config = {"batch_size": 2, "max_updates": 30}
    run = loaded(
        stream_sampler(ShardedStream(UNEVEN), EVALS, **config).get_data_loader(
            workers, tagged=True, **context(workers)
        )
    )
    assert run == expected(ShardedStream(UNEVEN), workers, EVALS, **config)


@pytest.mark.parametrize(
    ("workers", "loader_args"),
    [
        (2, {"prefetch_factor": 1}),
        (3, {"prefetch_factor": 5}),
        (3, {"persistent_workers": True, "prefetch_factor": 1}),
        (2, {"pin_memory": torch.cuda.is_available()}),
    ],
)
def test_dispatch_lines_up_whatever_the_prefetching(workers: int, loader_args: Any) -> None:
    """The empty slots make torch's round-robin hand each stream batch to its copy's worker,
    also with one batch in flight per worker and with persistent workers over two
    iterations (the second starts the run again)."""
    evals: list[EvalSet] = [
        (1, 100, {"every_n_updates": 1, "batch_size": 1}),  # one batch after every update
        (5, 200, {"at_updates": (2, 3, 7), "batch_size": 2}),
    ]
    config = {"batch_size": 2, "max_updates": 12}
    sampler = stream_sampler(ShardedStream(UNEVEN), evals, **config)
    loader = sampler.get_data_loader(workers, tagged=True, **FORK, **loader_args)
    model = expected(ShardedStream(UNEVEN), workers, evals, **config)
    assert loaded(loader) == model
    if loader_args.get("persistent_workers"):
        assert loaded(loader) == model


def test_the_loaders_batch_sampler_yields_empty_slots_that_the_loader_drops() -> None:
    evals: list[EvalSet] = [(1, 100, {"every_n_updates": 1, "batch_size": 1})]
    sampler = stream_sampler(ShardedStream([8, 8]), evals, batch_size=2, max_updates=3)
    loader = sampler.get_data_loader(2, **FORK)
    loader.batch_sampler.served = True  # what the loader sets when it iterates
    items = list(loader.batch_sampler)
    # slot s goes to worker s mod 2: t0 (copy 0) at 0, t1 (copy 1) at 3, t2 (copy 0) at 6
    assert [type(item).__name__ for item in items] == [
        "StreamBatch",
        "IndexBatch",
        "EmptySlot",
        "StreamBatch",
        "IndexBatch",
        "EmptySlot",
        "StreamBatch",
        "IndexBatch",
    ]
    assert len(loader.batch_sampler) == len(loader) == 6 == len(list(loader))
    assert not any(isinstance(batch, EmptySlot) for batch in loader)


def test_e47_a_batch_that_reaches_another_copys_worker() -> None:
    """A loader that does not dispatch as the batch sampler planned (here: the empty slots
    left out) gets a clear error from the worker, not another copy's samples."""
    evals: list[EvalSet] = [(1, 100, {"every_n_updates": 1, "batch_size": 1})]
    sampler = stream_sampler(ShardedStream([8, 8]), evals, batch_size=2, max_updates=3)
    steered = sampler.get_data_loader(2, **FORK)

    class WithoutEmptySlots:
        def __len__(self) -> int:
            return len(steered.batch_sampler)

        def __iter__(self) -> Any:
            steered.batch_sampler.served = True  # as if it were the library's loader
            return (b for b in steered.batch_sampler if not isinstance(b, EmptySlot))

    loader = DataLoader(
        sampler.dataset,
        batch_sampler=WithoutEmptySlots(),
        collate_fn=sampler.collator,
        num_workers=2,
        **FORK,
    )
    fails(loader, RuntimeError, "training batch of stream copy 1 reached worker 0")


def test_e47_a_batch_sampler_built_for_other_workers() -> None:
    sampler = stream_sampler(ShardedStream([8, 8]), [], batch_size=2, max_updates=4)
    loader = DataLoader(
        sampler.dataset,
        batch_sampler=sampler.batch_sampler,  # built for num_workers=0
        collate_fn=sampler.collator,
        num_workers=2,
        **FORK,
    )
    fails(loader, RuntimeError, "built for a loader with num_workers=0 but is loaded")


def test_the_batch_sampler_in_a_loader_of_your_own() -> None:
    """``sampler.batch_sampler`` (built for ``num_workers=0``) in a plain ``DataLoader``, as
    torchdata's ``StatefulDataLoader`` takes it: the bare batches, no copy states."""
    sampler = stream_sampler(hf_stream(), EVALS, batch_size=3, max_updates=6)
    plain = DataLoader(
        sampler.dataset, batch_sampler=sampler.batch_sampler, collate_fn=sampler.collator
    )
    ours = sampler.get_data_loader()
    assert [values(batch) for batch in plain] == [values(batch) for batch in ours]


def test_e50_another_loader_over_the_batch_sampler_of_several_workers() -> None:
    sampler = stream_sampler(ShardedStream([8, 8]), [], batch_size=2, max_updates=4)
    parts = sampler.get_data_loader(2, **FORK)
    loader = DataLoader(
        parts.dataset, batch_sampler=parts.batch_sampler, collate_fn=parts.collate_fn
    )
    with pytest.raises(TypeError, match=r"empty dispatch slots .* that only that loader drops"):
        next(iter(loader))


@pytest.mark.parametrize("workers", [0, 1])
def test_torchdata_resumes_a_stream_by_replay(workers: int) -> None:
    """torchdata's ``StatefulDataLoader`` over the parts of the tagged loader (the recipe of
    docs/checkpointing.md): the same tagged batches, bare; its state (the batch sampler's,
    without the copies' states) resumes exactly by replaying the copies."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    def make() -> Any:
        parts = hf_run().get_data_loader(workers, tagged=True, **context(workers))
        return StatefulDataLoader(
            parts.dataset,
            batch_sampler=parts.batch_sampler,
            collate_fn=parts.collate_fn,
            num_workers=workers,
            **context(workers),
        )

    whole = loaded(hf_run().get_data_loader(tagged=True))
    assert loaded(make()) == whole
    interrupted = make()
    iterator = iter(interrupted)
    head = [next(iterator) for _ in range(17)]
    state = interrupted.state_dict()
    del iterator
    resumed = make()
    resumed.load_state_dict(state)
    assert loaded(head) + loaded(resumed) == whole


def test_tags_of_stream_batches() -> None:
    sampler = stream_sampler(ShardedStream([5]), EVALS[:1], batch_size=2, max_updates=4)
    batches = list(sampler.get_data_loader(tagged=True))
    train = [b for b in batches if b.source == "train"]
    assert [(b.progress.epoch, b.progress.update, b.progress.sample) for b in train] == [
        (0, u, 2 * u) for u in range(4)
    ]
    assert [(b.batch_in_pass, b.batches_in_pass, b.is_last_in_pass) for b in train] == [
        (0, 4, False),
        (1, 4, False),
        (2, 4, False),
        (3, 4, True),
    ]
    assert all(b.indices is None for b in train)
    assert [b.indices for b in batches if b.source == "val"] == [[0, 1], [2, 3], [4]]


def test_untagged_loader_yields_the_collated_batches() -> None:
    sampler = stream_sampler(ShardedStream([5]), [], batch_size=2, max_updates=4)
    # the copy restarts after 5 samples with set_epoch(1): [1, 2, 3, 4, 0]
    assert [batch.tolist() for batch in sampler.get_data_loader()] == [
        [0, 1],
        [2, 3],
        [4, 1],
        [2, 3],
    ]


def through_json(state: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(state))
    return result


def check_resume(make: Any, workers: int, positions: list[int], **loader_args: Any) -> None:
    """A loader resumed from the state after each of ``positions`` consumed batches yields
    the rest of the uninterrupted run."""
    whole = loaded(make().get_data_loader(workers, tagged=True, **loader_args))
    for position in positions:
        loader = make().get_data_loader(workers, tagged=True, **loader_args)
        iterator = iter(loader)
        head = [next(iterator) for _ in range(position)]
        state = through_json(loader.state_dict())
        del iterator
        assert loaded(head) == whole[:position]
        if position:  # the state route where the dataset has state_dict (HF), else replay
            assert ("stream_copies" in state) == hasattr(make().main_sampler.dataset, "state_dict")
        resumed = make().get_data_loader(workers, tagged=True, **loader_args)
        resumed.load_state_dict(state)
        assert loaded(resumed) == whole[position:], position


def hf_run() -> InterleavedSampler:
    return stream_sampler(hf_stream(length=20, shards=3), EVALS, batch_size=3, max_updates=14)


def sharded_run() -> InterleavedSampler:
    return stream_sampler(ShardedStream(UNEVEN), EVALS, batch_size=2, max_updates=14)


@pytest.mark.parametrize("make", [hf_run, sharded_run], ids=["hf_state_dict", "replay"])
def test_resume_after_any_batch_in_the_main_process(make: Any) -> None:
    check_resume(make, 0, list(range(len(make().batch_sampler) + 1)))


@pytest.mark.parametrize("make", [hf_run, sharded_run], ids=["hf_state_dict", "replay"])
def test_resume_with_workers_inside_passes_and_after_restarts(make: Any) -> None:
    # 1: after the first batch; 5: inside the first val pass; 6: between it and training;
    # 17, 24: after copies restarted; the end
    check_resume(make, 2, [1, 5, 6, 17, 24, len(make().batch_sampler)], **FORK)


def test_a_copys_own_state_dict_resumes_it_without_replaying() -> None:
    """``StatefulStream`` counts the samples its copies produce: resumed from a state, a run
    produces only the samples after the position (by ``load_state_dict``); a stream without
    ``state_dict`` is replayed up to it."""

    def make(stream: Any) -> Any:
        return stream_sampler(stream, [], batch_size=2, max_updates=40).get_data_loader()

    for stream, replayed in ((StatefulStream(UNEVEN), 0), (CountingStream(UNEVEN), 30 * 2)):
        loader = make(stream)
        iterator = iter(loader)
        for _ in range(30):
            next(iterator)
        state = through_json(loader.state_dict())
        assert ("stream_copies" in state) == (replayed == 0)
        resumed = make(stream)
        resumed.load_state_dict(state)
        type(stream).generated = 0
        assert len(list(resumed)) == 10
        assert type(stream).generated == replayed + 10 * 2


def test_e49_a_state_with_other_workers_or_processes() -> None:
    loader = sharded_run().get_data_loader(2, **FORK)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    del iterator
    for workers in (0, 1, 3):
        with pytest.raises(ValueError, match=r"stream.workers: the state has 2, this run has"):
            sharded_run().get_data_loader(workers).load_state_dict(state)
    sampler = stream_sampler(ShardedStream(UNEVEN), [], batch_size=2, max_updates=4)
    state = sampler.batch_sampler.state_dict()
    two_ranks = InterleavedSampler(
        Stream(ShardedStream(UNEVEN)),
        InterleavedSamplerConfig(batch_size=2, max_updates=4),
        num_replicas=2,
        rank=0,
    )
    with pytest.raises(ValueError, match="same num_workers and number of processes"):
        two_ranks.batch_sampler.load_state_dict(state)


def test_e49_a_stream_record_of_another_position() -> None:
    loader = hf_run().get_data_loader()
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    state = through_json(loader.state_dict())
    state["stream_copies"][0]["consumed"] += 3
    with pytest.raises(ValueError, match="record of copy 0 is after 12 samples, but its posi"):
        hf_run().get_data_loader().load_state_dict(state)
    state["stream_copies"] = [None, None]
    with pytest.raises(ValueError, match=r"one record \(or None\) per copy of the stream \(1\)"):
        hf_run().get_data_loader().load_state_dict(state)


def test_start_update_replays_the_stream_to_it() -> None:
    whole = loaded(sharded_run().get_data_loader(tagged=True))
    started = stream_sampler(
        ShardedStream(UNEVEN), EVALS, batch_size=2, max_updates=14, start_update=6
    )
    assert loaded(started.get_data_loader(tagged=True)) == whole[6 + 2 * 3 + 2 :]


@pytest.mark.parametrize(
    ("config", "evals", "message"),
    [
        ({"max_epochs": 1}, [], "max_epochs=1 is not valid with a Stream"),
        ({"max_updates": 4, "start_epoch": 1}, [], "start_epoch=1 is not valid with a Stream"),
        (
            {"max_updates": 4},
            [(3, 0, {"every_n_epochs": 1})],
            r"callback_samplers\[0\] has every_n_epochs=1, which is not valid with a Stream",
        ),
    ],
)
def test_e44_epochs_are_refused(config: Any, evals: list[EvalSet], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stream_sampler(ShardedStream([4]), evals, batch_size=2, **config)


def test_e45_what_is_not_a_stream() -> None:
    config = InterleavedSamplerConfig(batch_size=2, max_updates=2)
    with pytest.raises(TypeError, match=r"a stream is the training source as Stream\(dataset\)"):
        InterleavedSampler(ShardedStream([4]), config)  # type: ignore[arg-type]

    class MapStyle(Dataset[int]):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> int:
            return index

    with pytest.raises(TypeError, match=r"Stream needs a torch\.utils\.data\.IterableDataset"):
        Stream(MapStyle())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no training indices to iterate"):
        list(InterleavedSampler(Stream(ShardedStream([4])), config))
    with pytest.raises(ValueError, match="sampler must be a sampler"):
        SamplerIntervalConfig(Stream(ShardedStream([4])), every_n_updates=1)  # type: ignore[arg-type]


class EmptyAfterFirstEpoch(ShardedStream):
    def __iter__(self) -> Any:
        return iter(self.order() if self.epoch == 0 else [])


@pytest.mark.parametrize(
    ("dataset", "workers", "message"),
    [
        (ShardedStream([4, 4]), 3, "copy 2 of the train stream .* yielded no sample in a whole"),
        (ShardedStream([0]), 0, "copy 0 of the train stream .*iteration 0"),
        (EmptyAfterFirstEpoch([3]), 0, r"copy 0 of the train stream .*\(iteration 1\)"),
        (Uncopyable(), 0, "cannot be deep-copied"),
    ],
)
def test_e46_e48_a_copy_that_yields_nothing_or_cannot_be_copied(
    dataset: Any, workers: int, message: str
) -> None:
    sampler = stream_sampler(dataset, [], batch_size=2, max_updates=6)
    error = TypeError if isinstance(dataset, Uncopyable) else ValueError
    fails(sampler.get_data_loader(workers, **context(workers)), error, message)


def test_e46_more_workers_than_the_shards_a_dataset_declares_are_refused_up_front() -> None:
    """Hugging Face ``datasets`` says how many shards it has: a worker without one is
    refused when the loader is made, not at its first batch inside the run."""
    sampler = stream_sampler(hf_stream(shards=2), [], batch_size=2, max_updates=6)
    with pytest.raises(ValueError, match=r"num_workers=3 is more than the train stream's num_"):
        sampler.get_data_loader(3)
    assert len(list(sampler.get_data_loader(2, **FORK))) == 6


def test_the_dataset_given_is_left_alone() -> None:
    """Copies restart on deep copies: the user's dataset keeps its epoch (Hugging Face keeps
    it in shared memory, which a worker's set_epoch would otherwise change for all)."""
    dataset = hf_stream(length=6, shards=2)
    sampler = stream_sampler(dataset, [], batch_size=4, max_updates=6)
    assert len(list(sampler.get_data_loader(2, **FORK))) == 6  # each copy restarts twice
    assert dataset.epoch == 0


def test_split_loaders_over_a_stream_and_resume() -> None:
    model = expected(ShardedStream(UNEVEN), 2, EVALS, batch_size=2, max_updates=14)

    def drive(loaders: Any, out: list[Any], stop: int) -> None:
        train = iter(loaders.train)
        while len(out) < stop and loaders.next_place is not None:
            place = loaders.next_place
            if place.source_index == 0:
                out.append((0, values(next(train))))
            else:
                name = list(loaders.evaluation)[place.source_index - 1]
                out.extend((place.source_index, values(b)) for b in loaders.evaluation[name])

    loaders = sharded_run().get_loaders(2, **FORK)
    assert len(loaders.train) == 14
    out: list[Any] = []
    drive(loaders, out, 5)
    loaders.close()  # the position is kept: the next batch starts a new pool there
    drive(loaders, out, 9)
    state = through_json(loaders.state_dict())
    loaders.close()
    resumed = sharded_run().get_loaders(2, **FORK)
    resumed.load_state_dict(state)
    drive(resumed, out, len(model))
    assert out == model


def test_closed_split_loaders_continue_by_the_copies_states() -> None:
    """Closing the split loaders keeps the position with the copies' states: the next pool
    brings each copy there by ``load_state_dict``, producing no consumed sample again."""
    stream = StatefulStream(UNEVEN)
    loaders = stream_sampler(stream, [], batch_size=2, max_updates=20).get_loaders()
    train = iter(loaders.train)
    head = [values(next(train)) for _ in range(12)]
    loaders.close()
    StatefulStream.generated = 0
    rest = [values(batch) for batch in loaders.train]
    assert StatefulStream.generated == 8 * 2
    whole = [
        values(b)
        for b in stream_sampler(stream, [], batch_size=2, max_updates=20).get_loaders().train
    ]
    assert head + rest == whole


@pytest.mark.parametrize("workers", [0, 2])
def test_a_shuffling_eval_set_on_split_loaders_as_on_plain_ones(workers: int) -> None:
    """A stream and an eval set whose ``RandomSampler`` draws its order when its iteration
    starts: the split loaders start it where a plain loader would (the pool pauses before
    each pass until then, and loads on with the same workers), so the same loop on plain
    loaders and on split loaders sees the same batches."""
    from helpers import IdentityDataset
    from torch.utils.data import RandomSampler

    def shuffled() -> RandomSampler:
        data = IdentityDataset(5, 100)
        return RandomSampler(data, generator=torch.Generator().manual_seed(0))

    def loop(train: Any, val: Any) -> list[list[Any]]:
        seen, batches = [], iter(train)
        for update in range(1, 15):
            seen.append(values(next(batches)))
            if update % 3 == 0:
                seen.extend(values(batch) for batch in val)
        return seen

    args = context(workers)
    plain_train = DataLoader(ShardedStream([20, 20]), 2, num_workers=workers, **args)
    sampler = shuffled()
    plain_val = DataLoader(sampler.data_source, 2, sampler=sampler, num_workers=workers, **args)
    callback = SamplerIntervalConfig(shuffled(), every_n_updates=3, batch_size=2, name="val")
    run = InterleavedSampler(
        Stream(ShardedStream([20, 20])),
        InterleavedSamplerConfig(batch_size=2, max_updates=14),
        callback_samplers=[callback],
    )
    loaders = run.get_loaders(workers, **args)
    assert loop(loaders.train, loaders.evaluation["val"]) == loop(plain_train, plain_val)


def test_the_copies_states_outlive_a_pause_of_the_pool() -> None:
    """The pool pauses before a pass over a shuffling eval set and iterates again: the state
    saved right after the pass still holds the copies' states (the state route)."""
    from helpers import IdentityDataset
    from torch.utils.data import RandomSampler

    data = IdentityDataset(5, 100)
    callback = SamplerIntervalConfig(RandomSampler(data), every_n_updates=3, batch_size=2)
    run = InterleavedSampler(
        Stream(StatefulStream([20, 20])),
        InterleavedSamplerConfig(batch_size=2, max_updates=6),
        callback_samplers=[callback],
    )
    loaders = run.get_loaders(2, **FORK)  # workers prefetch up to the pause
    train = iter(loaders.train)
    for _ in range(3):
        next(train)
    assert loaders.loader.batch_sampler.paused
    assert len(list(loaders.evaluation["callback0"])) == 3
    assert loaders.state_dict()["stream_copies"] == [
        {"consumed": 4, "iteration": 0, "state": {"epoch": 0, "position": 4}},
        {"consumed": 2, "iteration": 0, "state": {"epoch": 0, "position": 2}},
    ]


def test_a_cached_eval_set_with_a_stream() -> None:
    evals: list[EvalSet] = [(5, 100, {"every_n_updates": 2, "batch_size": 2, "cache": True})]
    config = {"batch_size": 2, "max_updates": 9}
    sampler = stream_sampler(ShardedStream(UNEVEN), evals, **config)
    loader = sampler.get_data_loader(3, tagged=True, **FORK)
    assert loaded(loader) == expected(ShardedStream(UNEVEN), 3, evals, **config)


def test_global_run_over_two_ranks_gives_each_rank_its_copies_part() -> None:
    """``num_replicas=2``: each rank's training batch is half the global batch, from its own
    copies (the dataset shards itself by rank); the passes are split as usual."""
    evals: list[EvalSet] = [(6, 100, {"every_n_updates": 2, "batch_size": 4})]
    parts = []
    for rank in (0, 1):
        sampler = InterleavedSampler(
            Stream(ShardedStream(UNEVEN, num_replicas=2, rank=rank)),
            InterleavedSamplerConfig(batch_size=4, max_updates=6),
            callback_samplers=[
                SamplerIntervalConfig(SequentialSampler(range(100, 106)), **evals[0][2])
            ],
            num_replicas=2,
            rank=rank,
        )
        loader = sampler.get_data_loader(2, tagged=True, **FORK)
        assert loader.batch_sampler.fingerprint["stream"] == {"workers": 2, "processes": 2}
        parts.append(loaded(loader))
        local = expected(
            ShardedStream(UNEVEN, num_replicas=2, rank=rank), 2, [], batch_size=2, max_updates=6
        )
        assert [data for source, data in parts[-1] if source == 0] == [d for _, d in local]
    passes = [sorted(a + b) for (s, a), (_, b) in zip(*parts, strict=True) if s == 1]
    assert passes == [[100, 101, 102, 103], [104, 105]] * 3


def test_plan_of_a_stream_run(capsys: pytest.CaptureFixture[str]) -> None:
    from interleaved_sampler.cli import main

    args = ["plan", "--length", "stream", "--batch-size", "8", "--max-updates", "100"]
    assert main([*args, "--callback", "name=val,length=10,every_n_updates=40"]) == 0
    out = capsys.readouterr().out
    assert "main: a stream (no epochs), batch_size 8, every batch full" in out
    assert "total: 104 batches = 100 training + 4 callback" in out


RUNS = {
    "shards": st.lists(st.integers(0, 6), min_size=1, max_size=4).filter(any),
    "batch_size": st.integers(1, 4),
    "every": st.integers(1, 5),
    "samples": st.integers(1, 9),
    "stop": st.sampled_from(["max_updates", "max_samples"]),
    "length": st.integers(0, 25),
    "start": st.integers(0, 10),
    "resume": st.integers(0, 60),
}


def check_against_model(
    workers: int,
    shards: list[int],
    batch_size: int,
    every: int,
    samples: int,
    stop: str,
    length: int,
    start: int,
    resume: int,
) -> None:
    """A drawn run equals the model, and resumes from the state after ``resume`` batches."""
    evals: list[EvalSet] = [
        (3, 100, {"every_n_updates": every}),
        (2, 200, {"every_n_samples": samples, "batch_size": 1}),
    ]
    config = {"batch_size": batch_size, stop: length, "start_update": min(start, length)}
    copies = max(1, workers)
    stream = ShardedStream(shards * copies + [1] * copies)  # every copy yields a sample

    def loader() -> Any:
        sampler = stream_sampler(stream, evals, **config)
        return sampler.get_data_loader(workers, tagged=True, **context(workers))

    run = loaded(loader())
    assert run == expected(stream, workers, evals, **config)
    assert len(loader()) == len(run)
    position = min(resume, len(run))
    interrupted = loader()
    iterator = iter(interrupted)
    for _ in range(position):
        next(iterator)
    state = through_json(interrupted.state_dict())
    del iterator
    resumed = loader()
    resumed.load_state_dict(state)
    assert loaded(resumed) == run[position:]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**RUNS)
def test_runs_against_the_model(**run: Any) -> None:
    check_against_model(0, **run)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workers=st.sampled_from([1, 2, 3]), **RUNS)
def test_runs_with_workers_against_the_model(workers: int, **run: Any) -> None:
    check_against_model(workers, **run)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_spawned_workers_load_the_hf_stream_and_resume(method: str, workers: int) -> None:
    config = {"batch_size": 3, "max_updates": 20}

    def loader() -> Any:
        sampler = stream_sampler(hf_stream(), EVALS, **config)
        return sampler.get_data_loader(workers, tagged=True, multiprocessing_context=method)

    model = expected(hf_stream(), workers, EVALS, **config)  # copies do not depend on it
    interrupted = loader()
    iterator = iter(interrupted)
    head = [next(iterator) for _ in range(29)]  # inside the 6th val pass, copies restarted
    state = through_json(interrupted.state_dict())
    del iterator
    resumed = loader()
    resumed.load_state_dict(state)
    assert loaded(head) + loaded(resumed) == model
