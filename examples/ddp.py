"""DDP training with interleaved evaluation, with exactly the metrics of the run in one process.

    torchrun --standalone --nproc-per-node=2 examples/ddp.py   # 2 processes (gloo, CPU)
    python examples/ddp.py --micro-batches 2                   # the same run in one process

Why the two print the same numbers, bit for bit:

- Training data: every rank draws from the same permutation of ``(seed, epoch)``
  (``SeededRandomSampler`` sharded with ``num_replicas``/``rank``), so batch ``k`` of all ranks
  together is global batch ``k`` of the single process (whose batch is ``world_size`` times
  larger); ``drop_last`` on both sides keeps padding duplicates out of training.
- Gradients: DDP averages the ranks' gradients, ``g0 / 2 + g1 / 2``; the single process
  splits each global batch into the same micro-batches (``--micro-batches``), accumulates
  ``g0 + g1`` and halves it: the same floating-point result for 2 ranks (with more ranks
  the order of the all-reduce sum can differ: equal up to rounding).
- Evaluation: every rank evaluates its shard of each evaluation set (``DistributedSampler``,
  padded with repeated samples); ``gather_by_index`` collects the per-sample errors of all
  ranks by dataset index (the tagged batches' ``indices``) without the repeats, so the mean
  is taken over the same numbers in the same order. (Each sample's prediction is computed
  alone: a matrix multiply may round a row differently depending on the rows that share its
  batch.)
- Resume: ``--max-updates K --checkpoint c.pt`` stops after update ``K`` (and the
  evaluations due then); ``--start-update K --checkpoint c.pt`` continues the run exactly.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.distributed import check_same_schedule, gather_by_index


@dataclass(frozen=True)
class RunConfig:
    """One training run.

    Args:
        batch_size: samples per rank (per micro-batch) and update.
        micro_batches: in one process, how many micro-batches an update has (the world size
            of the DDP run to reproduce); must be 1 in a DDP run.
        max_updates: stop after this many updates.
        start_update: resume from ``checkpoint`` after this many updates.
        checkpoint: where the model and optimizer are loaded from at a resume and saved to
            at the end.
        seed: seed of the data order and the model's initial weights.
        workers: DataLoader worker processes per rank.
    """

    batch_size: int = 8
    micro_batches: int = 1
    max_updates: int = 30
    start_update: int = 0
    checkpoint: Path | None = None
    seed: int = 0
    workers: int = 0


@dataclass(frozen=True)
class Metric:
    """A metric after ``update`` updates: a training loss or an evaluation mean squared error."""

    update: int
    name: str
    value: float

    def __str__(self) -> str:
        return f"update {self.update:3d}  {self.name:<10} {self.value!r}"


def regression(size: int, seed: int) -> TensorDataset:
    """``y = sin(x @ w)`` with noise, ``x`` of 8 features."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 8, generator=generator)
    noise = 0.1 * torch.randn(size, generator=generator)
    return TensorDataset(x, torch.sin(x @ torch.linspace(-1, 1, 8)) + noise)


def world() -> tuple[int, int]:
    """``(world size, rank)``, ``(1, 0)`` in a single process."""
    if dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def build_sampler(config: RunConfig) -> InterleavedSampler:
    """Training on 203 samples, validation (13 samples) every 5 updates, test (7) per epoch."""
    size, rank = world()
    train, validation, test = regression(203, 1), regression(13, 2), regression(7, 3)

    def evaluation(dataset: TensorDataset) -> Any:
        if size == 1:
            return SequentialSampler(dataset)
        return DistributedSampler(dataset, num_replicas=size, rank=rank, shuffle=False)

    return InterleavedSampler(
        SeededRandomSampler(train, config.seed, num_replicas=size, rank=rank, drop_last=True),
        InterleavedSamplerConfig(
            batch_size=config.batch_size * config.micro_batches,
            max_updates=config.max_updates,
            start_update=config.start_update,
        ),
        callback_samplers=[
            SamplerIntervalConfig(
                evaluation(validation),
                every_n_updates=5,
                batch_size=4,
                name="validation",
            ),
            SamplerIntervalConfig(
                evaluation(test),
                every_n_epochs=1,
                batch_size=3,
                name="test",
            ),
        ],
    )


def run(config: RunConfig) -> list[Metric]:
    """Train (in this process, or in each process of an initialized group) and return the
    metrics in the order they were computed; a DDP run returns the same list on every rank."""
    size, _ = world()
    if size > 1 and config.micro_batches != 1:
        raise ValueError("micro_batches reproduces a DDP run in one process; use 1 with DDP")
    torch.set_num_threads(1)  # as torchrun sets it: the same kernels in both kinds of run
    sampler = build_sampler(config)
    check_same_schedule(sampler)
    torch.manual_seed(config.seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if config.start_update:
        assert config.checkpoint is not None, "a resume needs the checkpoint"
        state = torch.load(config.checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    trained = DistributedDataParallel(model) if size > 1 else model
    metrics = loop(sampler, model, trained, optimizer, config)
    if config.checkpoint is not None:
        save(config.checkpoint, model, optimizer)
    return metrics


def loop(
    sampler: InterleavedSampler,
    model: torch.nn.Module,
    trained: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: RunConfig,
) -> list[Metric]:
    """The training loop over tagged batches: a step per training batch; the per-sample
    errors of an evaluation pass, gathered from all ranks by dataset index at its end."""
    metrics = []
    errors: list[torch.Tensor] = []
    indices: list[int] = []
    for batch in sampler.get_data_loader(num_workers=config.workers, tagged=True):
        x, y = batch.data
        if batch.source == "train":
            loss = train_step(trained, optimizer, x, y, config.micro_batches)
            metrics.append(Metric(batch.progress.update + 1, "train", loss))
            continue
        with torch.no_grad():
            # One row at a time: a matrix multiply may round a row differently depending on
            # the rows that share its batch, and a rank's batches hold other rows than the
            # single process's.
            prediction = torch.cat([model(row[None]) for row in x]).squeeze(1)
            errors.append((prediction - y) ** 2)
        indices.extend(batch.indices)
        if batch.is_last_in_pass:
            per_sample = gather_by_index(torch.cat(errors), indices)
            metrics.append(Metric(batch.progress.update, batch.source, per_sample.mean().item()))
            errors, indices = [], []
    return metrics


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    micro_batches: int,
) -> float:
    """One update; the mean loss over all ranks and micro-batches.

    Micro-batch ``r`` takes every ``micro_batches``-th sample from position ``r``: the
    samples rank ``r`` of the DDP run has (the sharded sampler strides the same way).
    """
    optimizer.zero_grad()
    loss_sum = torch.zeros(())
    for r in range(micro_batches):
        prediction = model(x[r::micro_batches].contiguous()).squeeze(1)
        loss = torch.nn.functional.mse_loss(prediction, y[r::micro_batches])
        loss.backward()  # type: ignore[no-untyped-call]
        loss_sum += loss.detach()
    size, _ = world()
    if size > 1:  # DDP averaged the gradients; average the losses the same way
        dist.all_reduce(loss_sum)
    for parameter in model.parameters():
        assert parameter.grad is not None
        parameter.grad /= micro_batches
    optimizer.step()
    return (loss_sum / (size * micro_batches)).item()


def save(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Rank 0 writes the checkpoint; every rank returns once it is written."""
    if world()[1] == 0:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    if dist.is_initialized():
        dist.barrier()


def parse(argv: list[str] | None = None) -> RunConfig:
    """The run configuration from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RunConfig()
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--micro-batches", type=int, default=defaults.micro_batches)
    parser.add_argument("--max-updates", type=int, default=defaults.max_updates)
    parser.add_argument("--start-update", type=int, default=defaults.start_update)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    return replace(defaults, **vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    """Run with the command line's configuration; under torchrun, in a gloo process group."""
    config = parse(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    try:
        metrics = run(config)
        if world()[1] == 0:
            print("\n".join(map(str, metrics)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
