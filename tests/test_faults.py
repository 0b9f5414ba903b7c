"""Faults with real DataLoader workers (num_workers=2, fork and spawn): errors reach the loop
with the original traceback, a killed worker ends the loop with an error, and nothing hangs or
leaves worker processes behind."""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from faulty import (
    FailingDataset,
    KillingDataset,
    LyingSampler,
    PidDataset,
    as_list,
    failing_collate,
)
from torch.utils.data import SequentialSampler

from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig, SamplerIntervalConfig

METHODS = [
    "fork",
    pytest.param("spawn", marks=pytest.mark.slow),
]
# generous: only a hang or a leak can exceed it, not a slow machine
SHUTDOWN_BOUND_S = 60.0


def loader_of(
    train: Any,
    method: str,
    callbacks: list[SamplerIntervalConfig] | None = None,
    collate: Any = None,
    **config: Any,
) -> Any:
    sampler = InterleavedSampler(
        SequentialSampler(train),
        InterleavedSamplerConfig(**{"batch_size": 2, "max_epochs": 1, **config}),
        train_collator=collate,
        callback_samplers=callbacks,
    )
    return sampler.get_data_loader(num_workers=2, multiprocessing_context=method)


def assert_workers_gone(pids: set[int]) -> None:
    """The worker processes exit (they are not merely idle) within a generous bound."""
    gc.collect()
    deadline = time.monotonic() + SHUTDOWN_BOUND_S
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)] + [pid for pid in children() if pid in pids]
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"workers still alive: {alive}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def children() -> set[int]:
    """Pids of the running child processes started by ``multiprocessing`` (workers)."""
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


def start(loader: Any) -> tuple[Iterator[Any], set[int]]:
    """Iterate the loader; return the iterator and the pids of the workers it started."""
    before = children()
    stream = iter(loader)
    pids = children() - before
    assert len(pids) == 2, pids
    return stream, pids


# After a worker error torch's shutdown waits its 5 s join timeout per worker: slow tier.
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_dataset_error_in_a_worker_reaches_the_loop_with_its_traceback(method: str) -> None:
    stream, pids = start(loader_of(FailingDataset(16, fail_at=9), method))
    with pytest.raises(ValueError) as error:
        for _ in stream:
            pass
    text = str(error.value)
    assert "Caught ValueError in DataLoader worker process" in text
    assert "Original Traceback" in text
    assert "corrupt sample 9" in text
    assert "in __getitem__" in text  # the frame that raised, from the worker
    assert "while loading a batch of train: dataset indices [8, 9]" in text
    del stream, error  # the traceback's frames hold the iterator too
    assert_workers_gone(pids)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_collate_error_in_a_worker_names_the_callback(method: str) -> None:
    callback = SamplerIntervalConfig(
        SequentialSampler(PidDataset(3)), every_n_updates=2, pipeline=failing_collate, name="val"
    )
    stream, pids = start(loader_of(PidDataset(8), method, [callback]))
    first, second = next(stream), next(stream)
    assert [first[0].tolist(), second[0].tolist()] == [[0, 1], [2, 3]]
    with pytest.raises(RuntimeError) as error:
        next(stream)
    text = str(error.value)
    assert "cannot collate 2 samples" in text
    assert "in failing_collate" in text
    assert "while collating a batch of val with failing_collate" in text
    del stream, error
    assert_workers_gone(pids)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_a_killed_worker_ends_the_loop_with_an_error(method: str) -> None:
    # plain lists: a batch in tensors shared by file descriptor from the killed worker could
    # end the loop with torch's ConnectionResetError instead (also an error, not a hang)
    stream, pids = start(loader_of(KillingDataset(40, kill_at=21), method, collate=as_list))
    seen: list[int] = []
    with pytest.raises(
        RuntimeError, match=r"DataLoader worker .*(killed by signal|exited unexpectedly)"
    ):
        for batch in stream:
            seen.extend(index for index, _ in batch)
    assert 21 not in seen
    del stream
    assert_workers_gone(pids)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_breaking_out_early_shuts_the_workers_down(method: str) -> None:
    stream, pids = start(loader_of(PidDataset(400), method, max_epochs=5))
    loaded_by = set()
    for position, (indices, loader_pids) in enumerate(stream):
        loaded_by.update(loader_pids.tolist())
        assert indices.tolist() == [2 * position, 2 * position + 1]
        if position == 10:
            break  # early stopping
    assert loaded_by <= pids  # the batches came from these workers
    del stream
    assert_workers_gone(pids)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_a_lying_sampler_with_workers_raises_and_shuts_down(method: str) -> None:
    sampler = InterleavedSampler(
        LyingSampler(PidDataset(30), reported=20, actual=15),
        InterleavedSamplerConfig(batch_size=2, max_epochs=2),
    )
    # the lie shows after the prefetch, during the loop
    stream, pids = start(sampler.get_data_loader(num_workers=2, multiprocessing_context=method))
    with pytest.raises(
        ValueError, match=r"the train sampler \(LyingSampler\) yielded only 15"
    ) as error:
        for _ in stream:
            pass
    del stream, error
    assert_workers_gone(pids)
