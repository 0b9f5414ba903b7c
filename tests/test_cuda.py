"""On CUDA: pinned batches from every kind of loader, non-blocking copies of tagged batches,
and the framework integrations on the GPU against the plain frameworks, bit for bit. Every
test is skipped without CUDA (this project's CI has none)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from test_cache import CACHED, check_cached_run
from test_tagged import MIXED, tag_of
from torch.utils.data import SequentialSampler

from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig, SamplerIntervalConfig

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (pinned memory, a GPU device)"
)


def pinned(batches: list[Any], tagged: bool) -> bool:
    """Every batch's data is in pinned memory."""
    return all((b.data if tagged else b).is_pinned() for b in batches)


@pytest.mark.parametrize("tagged", [False, True])
def test_every_batch_of_the_loader_is_pinned(tagged: bool) -> None:
    loader = MIXED.sampler().get_data_loader(num_workers=2, pin_memory=True, tagged=tagged)
    batches = list(loader)
    assert len(batches) == len(loader) and pinned(batches, tagged)


@pytest.mark.parametrize("tagged", [False, True])
def test_every_batch_of_the_cached_loader_is_pinned(tagged: bool) -> None:
    """Cached passes are served from the main process's memory: pinned as loaded."""
    check_cached_run(CACHED, tagged, num_workers=2, pin_memory=True)
    loader = CACHED.sampler().get_data_loader(num_workers=2, pin_memory=True, tagged=tagged)
    batches = list(loader)
    assert len(batches) == len(loader) and pinned(batches, tagged)


def test_every_batch_of_the_split_loaders_is_pinned() -> None:
    """Two epochs of 3 batches, a pass over a set of 5 (batches of 2) after each."""
    sampler = InterleavedSampler(
        SequentialSampler(range(12)),
        InterleavedSamplerConfig(batch_size=4, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(range(5)), every_n_epochs=1, batch_size=2, name="val"
            )
        ],
    )
    loaders = sampler.get_loaders(num_workers=2, pin_memory=True)
    batches = []
    for _ in range(2):
        batches += [*loaders.train, *loaders.evaluation["val"]]
    loaders.close()
    epoch = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [0, 1], [2, 3], [4]]
    assert [b.tolist() for b in batches] == epoch * 2
    assert pinned(batches, tagged=False)


def test_non_blocking_copies_of_tagged_batches_equal_the_host_data() -> None:
    loader = MIXED.sampler().get_data_loader(num_workers=2, pin_memory=True, tagged=True)
    pairs = [(b, b.to("cuda", non_blocking=True)) for b in loader]
    torch.cuda.synchronize()
    assert len(pairs) == len(loader)
    for host, moved in pairs:
        assert moved.data.is_cuda and host.data.is_pinned()
        assert torch.equal(moved.data.cpu(), host.data)
        assert tag_of(moved) == tag_of(host)


# what Lightning's Trainer(deterministic=True) and transformers' full_determinism set
DETERMINISM_VARIABLES = (
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_LAUNCH_BLOCKING",
    "ASCEND_LAUNCH_BLOCKING",
    "HCCL_DETERMINISTIC",
    "FLASH_ATTENTION_DETERMINISTIC",
)


@pytest.fixture
def process_flags() -> Iterator[None]:
    """The frameworks' deterministic modes set torch's flags and environment variables for
    the whole process: put them back after the test."""
    variables = {name: os.environ.get(name) for name in DETERMINISM_VARIABLES}
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    yield
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


@pytest.mark.usefixtures("process_flags")
def test_lightning_on_the_gpu_logs_and_trains_as_plain_lightning() -> None:
    pytest.importorskip("pytorch_lightning")
    from test_lightning_datamodule import BASE, assert_same, example

    config = replace(BASE, accelerator="gpu", deterministic=True)
    wrapped = example.run(config)
    assert_same(wrapped, example.run(replace(config, plain=True)))
    assert all(value.is_cuda for value in wrapped.weights.values())


@pytest.mark.usefixtures("process_flags")
def test_hf_trainer_on_the_gpu_logs_and_trains_as_trainer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from test_transformers import assert_same, example

    config = example.RunConfig(output=tmp_path, use_cpu=False, full_determinism=True)
    interleaved = example.run(config)
    assert_same(interleaved, example.run(replace(config, plain=True)))
    assert all(p.is_cuda for p in interleaved.model.parameters())
