"""Split loaders (``sampler.get_loaders()``): a train loader and one loader per evaluation set
over the run's one DataLoader iterator, against the model of the run (``spec_model``).

A loop that asks the loaders in the schedule's order (a new epoch iterator where an epoch
starts, each pass read whole by its set's loader) must get exactly the run; one that asks
out of turn gets an error and loses nothing.
"""

from __future__ import annotations

import os
from itertools import islice
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenarios import Scenario, scenarios
from test_state import Row, model_rows, rows, through_json
from torch.utils.data import Dataset, RandomSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    OutOfTurnError,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.split import InterleavedLoaders

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
END = object()


def drive(
    loaders: InterleavedLoaders, model: list[Row], start: int = 0, stop: int | None = None
) -> list[Row]:
    """A loop over the split loaders that follows ``model`` from its batch ``start`` to
    ``stop`` (default: its end): each training batch from the current epoch's iterator (a new
    one where the model starts an epoch, after checking that the old one ended there), each
    pass read whole by its set's loader (up to ``stop``). Returns what the loaders yielded."""
    names, out, train = list(loaders.evaluation), [], None
    stop = len(model) if stop is None else stop
    while start + len(out) < stop:
        source, _, _, position, _ = model[start + len(out)]
        if source == 0:
            if train is None or position == 0:
                assert train is None or next(train, END) is END  # the epoch ended at its end
                train = iter(loaders.train)
            out.extend(rows([next(train)]))
        else:
            left = stop - start - len(out)
            out.extend(rows(islice(loaders.evaluation[names[source - 1]], left)))
    return out


def run_of(scenario: Scenario) -> tuple[InterleavedSampler, list[Row]] | None:
    try:
        sampler = scenario.sampler()
    except ValueError:
        return None
    return sampler, model_rows(scenario, sampler)


def run_and_position(
    scenario: Scenario, data: Any
) -> tuple[InterleavedSampler, list[Row], int] | None:
    """The run of ``scenario``, its model and a drawn position ``k`` in it (None: invalid)."""
    built = run_of(scenario)
    if built is None:
        return None
    sampler, model = built
    return sampler, model, data.draw(st.integers(0, len(model)), label="k")


@SETTINGS
@given(scenarios(min_main=0, cache=True))
def test_the_loaders_asked_in_schedule_order_yield_the_run(scenario: Scenario) -> None:
    built = run_of(scenario)
    if built is None:
        return
    sampler, model = built
    loaders = sampler.get_loaders(tagged=True)
    assert drive(loaders, model) == model
    assert list(loaders.train) == []  # the run is over
    assert len(loaders.train) == sampler.schedule.structure.updates_per_epoch
    for i, loader in enumerate(loaders.evaluation.values()):
        assert len(loader) == sampler.schedule.callbacks[i].batches_per_pass
        with pytest.raises(OutOfTurnError, match=r"the run's next batch is none"):
            next(iter(loader))


@SETTINGS
@given(scenarios(), st.data())
def test_asking_out_of_turn_raises_and_loses_nothing(scenario: Scenario, data: Any) -> None:
    drawn = run_and_position(scenario, data)
    if drawn is None:
        return
    sampler, model, k = drawn
    loaders = sampler.get_loaders(tagged=True)
    loaders.load_state_dict(loaders.loader.batch_sampler.state_at(k))
    names = list(loaders.evaluation)
    upcoming = model[k] if k < len(model) else None
    for i, name in enumerate(names):
        if upcoming is not None and upcoming[0] == i + 1:
            continue
        with pytest.raises(OutOfTurnError) as error:
            next(iter(loaders.evaluation[name]))
        assert f"the evaluation ({name!r}) loader was asked" in str(error.value)
        if upcoming is not None and upcoming[0] == 0:
            assert f"a training batch (batch {upcoming[3] + 1} of" in str(error.value)
        elif upcoming is not None:
            assert f"due after update {upcoming[2][1]}" in str(error.value)
    if upcoming is not None and upcoming[0] > 0:
        with pytest.raises(OutOfTurnError) as error:
            next(iter(loaders.train))
        pass_over = f"of the pass over {names[upcoming[0] - 1]!r} due after update"
        assert pass_over in str(error.value) and "the train loader was asked" in str(error.value)
    assert loaders.state_dict()["batches"] == k  # nothing was consumed
    assert drive(loaders, model, k) == model[k:]


@SETTINGS
@given(scenarios(), st.data())
def test_the_state_round_trips_after_any_batch(scenario: Scenario, data: Any) -> None:
    drawn = run_and_position(scenario, data)
    if drawn is None:
        return
    sampler, model, k = drawn
    loaders = sampler.get_loaders(tagged=True)
    assert drive(loaders, model, 0, k) == model[:k]
    state = through_json(loaders.state_dict())
    assert state["batches"] == k
    resumed = scenario.sampler().get_loaders(tagged=True)
    resumed.load_state_dict(state)
    assert drive(resumed, model, k) == model[k:]
    assert drive(loaders, model, k) == model[k:]  # saving does not disturb the running run


class PidDataset(Dataset[tuple[int, int]]):
    """Item ``i`` is ``(base + i, pid of the process that loaded it)``."""

    def __init__(self, length: int, base: int) -> None:
        self.length, self.base = length, base

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self.base + index, os.getpid()


def small_run(**loader_args: Any) -> InterleavedLoaders:
    """24 training samples (batch 4, 2 epochs), val (5) every 4 updates, test (3) per epoch."""
    sampler = InterleavedSampler(
        SeededRandomSampler(PidDataset(24, 0), seed=1),
        InterleavedSamplerConfig(batch_size=4, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(PidDataset(5, 100)), every_n_updates=4, batch_size=2, name="val"
            ),
            SamplerIntervalConfig(
                SequentialSampler(PidDataset(3, 200)), every_n_epochs=1, name="test"
            ),
        ],
    )
    return sampler.get_loaders(**loader_args)


def lightning_like_loop(loaders: InterleavedLoaders) -> list[tuple[str, list[int], set[int]]]:
    """Two epochs; validation after every 4th update (all sets), test after each epoch."""
    seen = []

    def record(name: str, batch: Any) -> None:
        values, pids = batch
        seen.append((name, values.tolist(), set(pids.tolist())))

    update = 0
    for _ in range(2):
        for batch in loaders.train:
            record("train", batch)
            update += 1
            if update % 4 == 0:
                for batch in loaders.evaluation["val"]:
                    record("val", batch)
        for batch in loaders.evaluation["test"]:
            record("test", batch)
    return seen


@pytest.mark.parametrize(
    "context", [None, pytest.param("spawn", marks=pytest.mark.slow)], ids=["fork", "spawn"]
)
def test_one_pool_of_workers_serves_every_loader(context: str | None) -> None:
    args = {"num_workers": 2, "multiprocessing_context": context or "fork"}
    loaders = small_run(**args)
    seen = lightning_like_loop(loaders)
    plain = small_run().loader
    want = [(b.source, b.data[0].tolist()) for b in plain]
    assert [(name, values) for name, values, _ in seen] == want
    pids = set().union(*(batch_pids for *_, batch_pids in seen))
    assert len(pids) == 2 and os.getpid() not in pids  # the same 2 workers, for every source


def test_close_shuts_the_pool_down_and_the_run_continues() -> None:
    loaders = small_run(num_workers=2)
    train = iter(loaders.train)
    first = [next(train)[0].tolist() for _ in range(3)]
    workers = list(loaders.loader._iteration()._workers)  # type: ignore[union-attr,misc]
    loaders.close()
    assert not any(worker.is_alive() for worker in workers)
    fourth = next(iter(loaders.train))[0].tolist()  # a new pool, where the old one stopped
    plain = [b.data[0].tolist() for b in small_run().loader if b.source == "train"]
    assert [*first, fourth] == plain[:4]


def random_numbers_of_a_loop(train: Any, val: Any, test: Any, generator: Any) -> list[Any]:
    """A loop over a train and two eval loaders whose steps draw from the global generator
    (as dropout does): what it loaded and the numbers it drew, in order."""
    seen: list[Any] = []
    for _ in range(2):
        for loader in (train, val, test):
            seen += [(batch[0].tolist(), torch.rand(()).item()) for batch in loader]
        seen.append(torch.randint(1000, (), generator=generator).item())
    return seen


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_split_loaders_draw_the_random_numbers_plain_loaders_draw(num_workers: int) -> None:
    """Each iter() draws what a DataLoader iterator draws from its generator (the global
    one by default), so a model's dropout masks are those of a loop over plain loaders."""
    epoch_end = SamplerIntervalConfig  # both sets after every epoch: the loop's order

    def sets() -> list[Any]:
        return [PidDataset(24, 0), PidDataset(5, 100), PidDataset(3, 200)]

    def plain(generator: Any) -> list[Any]:
        torch.manual_seed(5)
        loaders = [
            torch.utils.data.DataLoader(data, batch_size=4, num_workers=num_workers, generator=g)
            for data, g in zip(sets(), [generator, None, None], strict=True)
        ]
        return random_numbers_of_a_loop(*loaders, generator)

    def split(generator: Any) -> list[Any]:
        torch.manual_seed(5)
        train, val, test = sets()
        run = InterleavedSampler(
            SequentialSampler(train),
            InterleavedSamplerConfig(batch_size=4, max_epochs=2, drop_last=False),
            callback_samplers=[
                epoch_end(SequentialSampler(val), every_n_epochs=1, name="val"),
                epoch_end(SequentialSampler(test), every_n_epochs=1, name="test"),
            ],
        )
        loaders = run.get_loaders(num_workers=num_workers)
        loaders.train.generator = generator
        return random_numbers_of_a_loop(loaders.train, *loaders.evaluation.values(), generator)

    assert split(None) == plain(None)
    assert split(torch.Generator().manual_seed(2)) == plain(torch.Generator().manual_seed(2))


def test_close_inside_an_epoch_of_an_unrepeatable_order_never_raises() -> None:
    """Shutting down (an error in a step, early stopping) never raises over what stopped
    the run; the position is refused only when a run resumes from it."""
    run = InterleavedSampler(
        RandomSampler(range(8)), InterleavedSamplerConfig(batch_size=2, max_epochs=2)
    )
    loaders = run.get_loaders(num_workers=2)
    train = iter(loaders.train)
    next(train)
    loaders.close()  # inside epoch 0 of a RandomSampler: no error here
    assert loaders.state_dict()["position"]["update"] == 1
    with pytest.raises(ValueError, match="repeats its epoch order"):
        next(iter(loaders.train))


def test_dropping_the_loaders_shuts_the_pool_down_at_once() -> None:
    loaders = small_run(num_workers=2)
    evaluation = loaders.evaluation["val"]
    next(iter(loaders.train))
    workers = list(loaders.loader._iteration()._workers)  # type: ignore[union-attr,misc]
    del loaders, evaluation  # no reference cycle: freed now, not by a later collection
    assert not any(worker.is_alive() for worker in workers)


def test_apart_serves_a_whole_pass_in_the_main_process_and_moves_nothing() -> None:
    loaders = small_run(num_workers=2)
    first = next(iter(loaders.train))
    apart = list(loaders.evaluation["val"].apart())
    assert [batch[0].tolist() for batch in apart] == [[100, 101], [102, 103], [104]]
    assert {pid for batch in apart for pid in batch[1].tolist()} == {os.getpid()}
    assert loaders.state_dict()["batches"] == 1
    train = iter(loaders.train)
    four = [first[0].tolist()] + [next(train)[0].tolist() for _ in range(3)]
    plain = [b.data[0].tolist() for b in small_run().loader if b.source == "train"]
    assert four == plain[:4]


def test_a_resume_can_skip_the_passes_due_at_its_position() -> None:
    loaders = small_run()
    train = iter(loaders.train)
    for _ in range(4):
        next(train)
    state = loaders.state_dict()  # after update 4: the val pass (3 batches) is due
    resumed = small_run()
    resumed.load_state_dict(state, skip_due_passes=True)
    assert resumed.state_dict()["batches"] == state["batches"] + 3
    assert len(list(loaders.evaluation["val"])) == 3  # the uninterrupted run evaluates
    assert next(iter(resumed.train))[0].tolist() == next(iter(loaders.train))[0].tolist()
    again = small_run()
    again.load_state_dict(resumed.state_dict(), skip_due_passes=True)  # nothing due there
    assert again.state_dict() == resumed.state_dict()


def test_next_place_is_known_without_loading() -> None:
    loaders = small_run()
    train = iter(loaders.train)
    for _ in range(4):
        next(train)
    place = loaders.next_place
    assert place is not None and (place.source_index, place.update) == (1, 4)
    assert loaders.state_dict()["batches"] == 4


def test_bare_batches_by_default() -> None:
    batch = next(iter(small_run().train))
    assert isinstance(batch, list) and isinstance(batch[0], torch.Tensor)


def shuffled_loop(train: Any, val: Any, generator: Any, bounded: bool) -> list[Any]:
    """Three epochs of a loop over a train and a val loader that draws from the global
    generator at every step (as dropout does), validating after every 5th update; ``bounded``:
    it takes ``len(train)`` batches per epoch (as Lightning does) instead of a for loop."""
    seen: list[Any] = []
    update = 0
    for _ in range(3):
        epoch = islice(train, len(train)) if bounded else train
        for batch in epoch:
            seen.append((batch[0].tolist(), torch.rand(()).item(), set(batch[1].tolist())))
            update += 1
            if update % 5 == 0:
                seen += [(b[0].tolist(), torch.rand(()).item(), set(b[1].tolist())) for b in val]
    seen.append(torch.randint(1000, (), generator=generator).item() if generator else None)
    return seen


def plain_shuffled(
    workers: int, seed: int | None, drop_last: bool, val_shuffle: bool, persistent: bool = False
) -> Any:
    torch.manual_seed(5)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    arguments: dict[str, Any] = {"num_workers": workers}
    if workers:
        arguments["multiprocessing_context"] = "fork"
        arguments["persistent_workers"] = persistent
    train = torch.utils.data.DataLoader(
        PidDataset(22, 0), 4, shuffle=True, drop_last=drop_last, generator=generator, **arguments
    )
    val = torch.utils.data.DataLoader(PidDataset(5, 100), 2, shuffle=val_shuffle, **arguments)
    return train, val, generator


def split_shuffled(
    workers: int, seed: int | None, drop_last: bool, val_shuffle: bool, persistent: bool = False
) -> Any:
    torch.manual_seed(5)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    val_set = PidDataset(5, 100)
    run = InterleavedSampler(
        RandomSampler(PidDataset(22, 0), generator=generator),
        InterleavedSamplerConfig(batch_size=4, max_epochs=3, drop_last=drop_last),
        callback_samplers=[
            SamplerIntervalConfig(
                RandomSampler(val_set) if val_shuffle else SequentialSampler(val_set),
                every_n_updates=5,
                batch_size=2,
                name="val",
            )
        ],
    )
    arguments = {"multiprocessing_context": "fork"} if workers else {}
    loaders = run.get_loaders(num_workers=workers, **arguments)
    loaders.train.generator = generator
    for loader in (loaders.train, loaders.evaluation["val"]):
        loader.persistent_workers = persistent
    return loaders.train, loaders.evaluation["val"], generator


@pytest.mark.parametrize("bounded", [False, True], ids=["for-loop", "len-bounded"])
@pytest.mark.parametrize("val_shuffle", [False, True], ids=["val-sequential", "val-shuffled"])
@pytest.mark.parametrize("drop_last", [False, True], ids=["keep-last", "drop-last"])
@pytest.mark.parametrize("seed", [None, 3], ids=["global", "generator"])
@pytest.mark.parametrize("workers", [0, 2])
def test_shuffled_loaders_take_their_orders_where_plain_loaders_take_them(
    workers: int, seed: int | None, drop_last: bool, val_shuffle: bool, bounded: bool
) -> None:
    """torch's RandomSampler draws its seed (with a generator: its permutation) when its
    epoch starts: the split loaders start each epoch's order where a plain loader does, so
    batches and every random number the loop draws are the plain loop's, on one pool that
    never restarts (it pauses before an epoch's first batches until the order is taken)."""
    plain = shuffled_loop(*plain_shuffled(workers, seed, drop_last, val_shuffle), bounded)
    split = shuffled_loop(*split_shuffled(workers, seed, drop_last, val_shuffle), bounded)
    assert [row[:2] if isinstance(row, tuple) else row for row in split] == [
        row[:2] if isinstance(row, tuple) else row for row in plain
    ]
    pids = set().union(*(row[2] for row in split if isinstance(row, tuple)))
    assert len(pids) == max(workers, 1)  # one pool for the whole run, never restarted


@pytest.mark.parametrize("seed", [None, 3], ids=["global", "generator"])
def test_split_loaders_standing_for_persistent_loaders_draw_their_seed_once(
    seed: int | None,
) -> None:
    """A persistent DataLoader's iterator draws its workers' base seed in its first iter()
    only: split loaders with persistent_workers=True draw as such loaders do."""
    plain = shuffled_loop(*plain_shuffled(2, seed, False, True, persistent=True), True)
    split = shuffled_loop(*split_shuffled(2, seed, False, True, persistent=True), True)
    assert [row[:2] if isinstance(row, tuple) else row for row in split] == [
        row[:2] if isinstance(row, tuple) else row for row in plain
    ]


def test_load_update_resumes_after_a_framework_counted_update() -> None:
    """A framework's checkpoint counts training batches only: the run continues after that
    update, before the passes due there, or after them (skip_due_passes)."""
    loaders = small_run()
    loaders.load_update(4)  # val is due after every 4th update
    place = loaders.next_place
    assert place is not None and (place.source_index, place.update) == (1, 4)
    loaders.load_update(4, skip_due_passes=True)
    place = loaders.next_place
    assert place is not None and (place.source_index, place.update) == (0, 4)
    rest = [batch[0].tolist() for batch in loaders.train]
    plain = [b.data[0].tolist() for b in small_run().loader if b.source == "train"]
    assert rest == plain[4:6]  # the rest of epoch 0 (6 updates per epoch)
    loaders.load_update(10**6)  # past the end: the end
    assert loaders.next_place is None
