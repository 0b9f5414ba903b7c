"""Small samplers and datasets shared by the tests (module level, so `spawn` can pickle them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset, SequentialSampler

from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig, SamplerIntervalConfig


class IdentityDataset(Dataset[int]):
    """Item ``i`` is ``base + i``: loaded batches show exactly which samples were read."""

    def __init__(self, length: int, base: int = 0) -> None:
        self.length, self.base = length, base

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.base + index


class RecordingDataset(IdentityDataset):
    """Remembers every index it was asked for (use with num_workers=0)."""

    def __init__(self, length: int, base: int = 0) -> None:
        super().__init__(length, base)
        self.loaded: list[int] = []

    def __getitem__(self, index: int) -> int:
        self.loaded.append(index)
        return super().__getitem__(index)


class EpochRecordingSampler(SequentialSampler):
    """A sequential sampler that records the epochs it was set to."""

    def __init__(self, data_source: Any) -> None:
        super().__init__(data_source)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def tagged_collate(samples: list[int]) -> tuple[str, list[int]]:
    """A collate function that marks its batches, to see which one was applied."""
    return ("tagged", list(samples))


def seq(length: int, base: int = 0) -> SequentialSampler:
    return SequentialSampler(IdentityDataset(length, base))


def callback(length: int, **interval: Any) -> SamplerIntervalConfig:
    return SamplerIntervalConfig(seq(length), **interval)


def batches(sampler: InterleavedSampler) -> list[list[int]]:
    return [list(batch) for batch in sampler.batch_sampler]


def run(
    main_len: int, callbacks: list[SamplerIntervalConfig] | None = None, **config: Any
) -> list[list[int]]:
    """Batches of a run over a sequential main sampler of ``main_len`` samples."""
    sampler = InterleavedSampler(
        seq(main_len), InterleavedSamplerConfig(**config), callback_samplers=callbacks
    )
    result = batches(sampler)
    assert len(sampler.batch_sampler) == len(result)
    return result


def as_lists(loader: Any) -> list[Any]:
    return [b.tolist() if isinstance(b, torch.Tensor) else b for b in loader]


def torchrun(script: Path, args: list[str], timeout: float, nproc: int = 2) -> str:
    """Run ``script`` under ``torchrun --standalone`` with ``nproc`` ranks; its stdout.

    Fails the test if the launch fails, or kills it with its ranks (a session of its own)
    and fails if it runs longer than ``timeout`` seconds: a hang never stalls the suite.
    """
    launch = torchrun_launch(script, args, timeout, nproc)
    assert launch.returncode == 0, f"torchrun failed:\n{launch.stdout}\n{launch.stderr[-5000:]}"
    return launch.stdout


def torchrun_launch(
    script: Path, args: list[str], timeout: float, nproc: int = 2
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under ``torchrun --standalone`` with ``nproc`` ranks, whatever its exit
    status; fails the test (killing the ranks) if it runs longer than ``timeout`` seconds."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "src"), str(root / "tests")]))
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
        *(f"--nproc-per-node={nproc}", str(script), *args),
    ]
    launch = subprocess.Popen(
        command, env=env, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = launch.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launch.pid, signal.SIGKILL)
        stdout, stderr = launch.communicate()
        pytest.fail(f"torchrun hung for {timeout} s:\n{stdout}\n{stderr[-5000:]}")
    return subprocess.CompletedProcess(command, launch.returncode, stdout, stderr)
