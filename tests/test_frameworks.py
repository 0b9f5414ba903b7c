"""Device transfer by the frameworks' helpers, and the loader arguments and wrappers that
would break the schedule (refused loudly); in one process, each test small."""

from __future__ import annotations

import subprocess
import sys
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from accelerate.utils import send_to_device
from lightning_fabric.utilities.apply_func import move_data_to_device as fabric_move
from pytorch_lightning import LightningModule
from pytorch_lightning.utilities import move_data_to_device as lightning_move
from torch.utils.data import SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedBatch,
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
)
from interleaved_sampler.data import move_data
from interleaved_sampler.schedule import BatchTag, TrainingProgress

Pair = namedtuple("Pair", ["x", "y"])


@dataclass(frozen=True)
class Frozen:
    x: torch.Tensor
    name: str


def nested() -> Any:
    t = torch.ones(2)
    return {"pair": Pair(t, [t, (t, "label")]), "frozen": Frozen(t, "n"), "n": 3}


def devices(data: Any) -> list[str]:
    """The device of every tensor in ``data``, in order."""
    if isinstance(data, torch.Tensor):
        return [data.device.type]
    if isinstance(data, dict):
        return [d for v in data.values() for d in devices(v)]
    if isinstance(data, (list, tuple)):
        return [d for v in data for d in devices(v)]
    if isinstance(data, Frozen):
        return devices(data.x)
    return []


def tagged_batch() -> InterleavedBatch:
    tag = BatchTag("val", 1, TrainingProgress(1, 8, 64), 0, 2, 2, 2)
    return InterleavedBatch.create(nested(), tag, [4, 5])


def lightning_hook(batch: Any, device: torch.device) -> Any:
    return LightningModule().transfer_batch_to_device(batch, device, 0)


@pytest.mark.parametrize(
    "move",
    [InterleavedBatch.to, lightning_move, fabric_move, send_to_device, lightning_hook],
    ids=["to", "lightning", "fabric", "accelerate", "transfer_batch_to_device"],
)
def test_helpers_move_every_tensor_and_keep_the_tags(move: Any) -> None:
    batch = tagged_batch()
    moved = move(batch, torch.device("meta"))
    assert isinstance(moved, InterleavedBatch)
    assert devices(moved.data) == ["meta"] * 4
    assert devices(batch.data) == ["cpu"] * 4  # a copy: the original stays
    assert (moved.source, moved.source_index, moved.progress) == ("val", 1, batch.progress)
    assert (moved.batch_in_pass, moved.batches_in_pass, moved.indices) == (0, 2, [4, 5])
    assert moved.data["pair"][1][1][1] == "label" and moved.data["frozen"].name == "n"
    assert type(moved.data["pair"]) is Pair


def test_move_data_passes_dtype_and_keyword_arguments() -> None:
    moved = move_data([torch.ones(1)], torch.float64, copy=True)
    assert moved[0].dtype == torch.float64


def small_sampler() -> InterleavedSampler:
    train = TensorDataset(torch.arange(12.0))
    val = TensorDataset(torch.arange(5.0))
    return InterleavedSampler(
        SequentialSampler(train),
        InterleavedSamplerConfig(batch_size=3, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(val), every_n_updates=3, batch_size=2)
        ],
    )


def test_in_order_false_is_refused_and_true_passes() -> None:
    sampler = small_sampler()
    with pytest.raises(TypeError, match="in_order=False"):
        sampler.get_data_loader(in_order=False)
    assert len(list(sampler.get_data_loader(in_order=True))) == len(sampler.batch_sampler)


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("split_batches", [False, True])
def test_accelerate_sharding_is_refused_with_the_fix(tagged: bool, split_batches: bool) -> None:
    """What ``prepare(loader)`` does with several processes: wrap the batch sampler."""
    batch_sampler = small_sampler().get_data_loader(tagged=tagged).batch_sampler
    fix = r"prepare\(model, optimizer\).*num_replicas=accelerator.num_processes"
    with pytest.raises(TypeError, match=fix):
        BatchSamplerShard(
            batch_sampler, num_processes=2, process_index=0, split_batches=split_batches
        )


def test_fabric_setup_dataloaders_yields_tagged_batches() -> None:
    from lightning_fabric import Fabric

    sampler = small_sampler()
    fabric = Fabric(accelerator="cpu", devices=1)
    loader = fabric.setup_dataloaders(sampler.get_data_loader(tagged=True))
    batches = list(loader)
    assert [b.source for b in batches][:5] == ["train"] * 3 + ["callback0"] * 2
    assert all(isinstance(b, InterleavedBatch) for b in batches)


def test_importing_the_library_imports_no_framework() -> None:
    code = (
        "import sys, interleaved_sampler, interleaved_sampler.integrations; "
        "print(sorted({'pytorch_lightning', 'lightning_fabric', 'accelerate', 'torchdata'} "
        "& set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
