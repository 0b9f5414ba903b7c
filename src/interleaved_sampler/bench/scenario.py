"""The benchmarked training run (:class:`Scenario`) and its synthetic, worker-bound datasets.

Loading a sample costs ``load_ms`` in a worker. With ``load="cpu"`` (the default) that is
``load_ms`` of CPU time on the thread's CPU clock, spent in small torch operations: a fixed
amount of CPU work per sample, like decoding or augmenting, which competes for the cores with
every other process, so more workers than cores cannot make it faster. (A busy loop on the wall
clock would not be honest: descheduled, it still ends on time, as if it had run.) Like image
decoding in C, the operations release the GIL: a pure-Python loop holding it would delay the
worker thread that hands each batch tensor's file descriptor to the main process (up to the
5 ms switch interval per tensor), and every variant would be bound by that instead of by the
loading work. ``load="sleep"`` models I/O-bound loading, which more processes than cores can
overlap. The model step is simulated by sleeping ``step_ms`` per batch in the main process: a
stand-in for a GPU step, which leaves the CPU cores to the workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

LOADS = ("cpu", "sleep")
START_METHODS = ("fork", "spawn", "forkserver")


@dataclass(frozen=True)
class Scenario:
    """One benchmarked training run.

    Args:
        train_size: samples in the training dataset.
        eval_sizes: samples in each evaluation dataset.
        batch_size: training batch size (the incomplete last batch of an epoch is dropped).
        eval_batch_size: evaluation batch size.
        updates: training updates of the run.
        eval_every: a pass over every evaluation dataset after every ``eval_every`` updates.
        load_ms: cost of loading one sample, in milliseconds.
        load: ``"cpu"`` (``load_ms`` of the thread's CPU time, see :func:`burn_cpu`) or
            ``"sleep"``.
        sample_kib: size of a sample's float32 payload, in KiB.
        step_ms: simulated model step per batch in the main process (a sleep), in ms.
        workers: worker processes per DataLoader.
        start_method: ``"fork"``, ``"spawn"`` or ``"forkserver"``.
        prefetch_factor: batches prefetched per worker.
        seed: seed of the training sampler.
    """

    train_size: int = 4096
    eval_sizes: tuple[int, ...] = (512,)
    batch_size: int = 32
    eval_batch_size: int = 64
    updates: int = 400
    eval_every: int = 50
    load_ms: float = 2.0
    load: str = "cpu"
    sample_kib: int = 48
    step_ms: float = 5.0
    workers: int = 2
    start_method: str = "spawn"
    prefetch_factor: int = 2
    seed: int = 0

    @property
    def updates_per_epoch(self) -> int:
        return self.train_size // self.batch_size

    @property
    def epochs_started(self) -> int:
        return math.ceil(self.updates / self.updates_per_epoch)

    @property
    def evaluations(self) -> int:
        return self.updates // self.eval_every

    @property
    def samples_loaded(self) -> int:
        return self.updates * self.batch_size + self.evaluations * sum(self.eval_sizes)

    @property
    def samples_loaded_cached(self) -> int:
        """Samples loaded with the evaluation cache: each evaluation sample once."""
        return self.updates * self.batch_size + min(self.evaluations, 1) * sum(self.eval_sizes)

    @property
    def worker_bound_s(self) -> float:
        """The worker-bound limit: total loading work divided by the workers of one pool."""
        return self.samples_loaded * self.load_ms / 1000 / self.workers

    @property
    def worker_bound_cached_s(self) -> float:
        """The worker-bound limit with the evaluation cache."""
        return self.samples_loaded_cached * self.load_ms / 1000 / self.workers


class SyntheticDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``i`` is ``(tensor([source, i]), payload)``; loading it costs ``load_ms``.

    Args:
        source: the id of this dataset (0 = training), returned with every item.
        size: number of items.
        scenario: the cost (``load_ms``, ``load``) and payload size (``sample_kib``) of an item.
    """

    def __init__(self, source: int, size: int, scenario: Scenario) -> None:
        self.source = source
        self.size = size
        self.load_s = scenario.load_ms / 1000
        self.load = scenario.load
        self.floats = scenario.sample_kib * 256

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.load == "cpu":
            burn_cpu(self.load_s)
        else:
            time.sleep(self.load_s)
        return torch.tensor([self.source, index]), torch.full((self.floats,), float(index))


def burn_cpu(seconds: float) -> None:
    """Compute until this thread has used ``seconds`` of CPU time, mostly without the GIL.

    Args:
        seconds: CPU time to use.
    """
    end = time.thread_time() + seconds
    values = torch.linspace(0, 1, 2048)
    while time.thread_time() < end:
        torch.sin(values, out=values)  # ~10 us in C, GIL released


@dataclass(frozen=True)
class Datasets:
    """The training dataset and the evaluation datasets of a scenario."""

    train: SyntheticDataset
    evals: tuple[SyntheticDataset, ...]

    @classmethod
    def of(cls, scenario: Scenario) -> Datasets:
        """The datasets of ``scenario``: training is source 0, evaluation ``i`` source ``i + 1``.

        Args:
            scenario: the run.
        """
        evals = (SyntheticDataset(i + 1, n, scenario) for i, n in enumerate(scenario.eval_sizes))
        return cls(SyntheticDataset(0, scenario.train_size, scenario), tuple(evals))
