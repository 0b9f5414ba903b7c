"""DDP training with interleaved evaluation on one global schedule: stop on 2 processes, resume
on 1 (or the reverse), with exactly the losses and metrics of the uninterrupted run.

    torchrun --standalone --nproc-per-node=2 examples/ddp.py   # 2 processes (gloo, CPU)
    python examples/ddp.py --micro-batches 2                   # the same run in one process
    torchrun --standalone --nproc-per-node=2 examples/ddp.py --stop-after 40 --checkpoint c.pt
    python examples/ddp.py --micro-batches 2 --resume --checkpoint c.pt   # continue on 1
    torchrun --standalone --nproc-per-node=2 examples/ddp.py --keep-last  # uneven last batches

Why they all print the same numbers, bit for bit:

- Data: the sampler is global (``SeededRandomSampler`` over the whole training set,
  ``SequentialSampler`` over each evaluation set) and ``InterleavedSampler(...,
  num_replicas=world_size, rank=rank)`` splits every global batch (``--batch-size``
  samples) over the ranks: rank ``r`` loads positions ``r, r + world_size, ...`` of it.
  Counters, evaluation points and the checkpoint's position are the global run's, so a
  checkpoint written by any number of processes continues on any other.
- Gradients: DDP averages the ranks' gradients, ``g0 / 2 + g1 / 2``; one process splits
  each global batch into the same strided micro-batches (``--micro-batches 2``: ``x[r::2]``
  is rank ``r``'s part), accumulates ``g0 + g1`` and halves it: the same floating-point
  result for 2 ranks. (With more ranks the all-reduce may sum in another order: equal up to
  rounding. ``--micro-batches`` must be the world size of the run being reproduced.)
- Uneven parts: with ``--keep-last`` (``drop_last=False``) each epoch ends with a short
  batch (203 = 12 x 16 + 11 samples), split 6 + 5 over 2 ranks. The mean of the ranks'
  mean losses would weigh the 5 samples more than the 6; each part's mean loss is
  weighed by ``part size x parts / global batch size`` (the tags' ``part_size`` and
  ``global_batch_size``), so the update is the one of the global batch's mean loss, as in
  one process (a factor of exactly 1 for an even split).
- Evaluation: every rank evaluates its part of each batch; ``gather_by_index`` collects the
  per-sample errors of all ranks by dataset index (the tagged batches' ``indices``) without
  the padding of short batches, so the mean is taken over the same numbers in the same
  order. (Each sample's prediction is computed alone: a matrix multiply may round a row
  differently depending on the rows that share its batch.)
- Resume: ``--stop-after N`` stops after batch ``N`` of the loader (a training batch or one
  inside an evaluation pass) and writes the model, the optimizer, ``loader.state_dict()``
  and the errors gathered so far of a pass in progress; ``--resume`` loads them and the
  loader yields exactly the rest of the run.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.distributed import gather_by_index


@dataclass(frozen=True)
class RunConfig:
    """One training run.

    Args:
        batch_size: samples per update, over all ranks (a multiple of the world size).
        micro_batches: in one process, how many micro-batches an update has (the world size
            of the DDP run to reproduce); must be 1 in a DDP run.
        max_updates: stop after this many updates.
        stop_after: stop after this many batches of the loader and write ``checkpoint``.
        resume: continue from ``checkpoint``.
        checkpoint: the file ``stop_after`` writes and ``resume`` reads.
        seed: seed of the data order and the model's initial weights.
        workers: DataLoader worker processes per rank.
        drop_last: drop each epoch's short last batch (``False``: train on it too).
    """

    batch_size: int = 16
    micro_batches: int = 1
    max_updates: int = 30
    stop_after: int | None = None
    resume: bool = False
    checkpoint: Path | None = None
    seed: int = 0
    workers: int = 0
    drop_last: bool = True


@dataclass(frozen=True)
class Metric:
    """A metric after ``update`` updates: a training loss or an evaluation mean squared error."""

    update: int
    name: str
    value: float

    def __str__(self) -> str:
        return f"update {self.update:3d}  {self.name:<10} {self.value!r}"


@dataclass
class Pending:
    """The per-sample errors of the evaluation pass in progress, gathered from all ranks."""

    errors: list[torch.Tensor] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    def add(self, errors: torch.Tensor, indices: list[int]) -> None:
        self.errors.append(errors)
        self.indices.extend(indices)

    def gathered(self) -> dict[str, torch.Tensor]:
        """One error per dataset index of all ranks, in index order (repeats kept once)."""
        errors = torch.cat(self.errors) if self.errors else torch.zeros(0)
        rows = {"errors": errors, "index": torch.tensor(self.indices, dtype=torch.long)}
        return gather_by_index(rows, self.indices)


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
    """Training on 203 samples, validation (13 samples) every 5 updates, test (7) per epoch;
    this process's part of the global run."""
    size, rank = world()
    train, validation, test = regression(203, 1), regression(13, 2), regression(7, 3)
    return InterleavedSampler(
        SeededRandomSampler(train, config.seed),
        InterleavedSamplerConfig(
            batch_size=config.batch_size,
            drop_last=config.drop_last,
            max_updates=config.max_updates,
        ),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(validation), every_n_updates=5, batch_size=4, name="validation"
            ),
            SamplerIntervalConfig(
                SequentialSampler(test), every_n_epochs=1, batch_size=4, name="test"
            ),
        ],
        num_replicas=size,
        rank=rank,
    )


def run(config: RunConfig) -> list[Metric]:
    """Train (in this process, or in each process of an initialized group) and return the
    metrics in the order they were computed; a DDP run returns the same list on every rank."""
    size, _ = world()
    if size > 1 and config.micro_batches != 1:
        raise ValueError("micro_batches reproduces a DDP run in one process; use 1 with DDP")
    torch.set_num_threads(1)  # as torchrun sets it: the same kernels in both kinds of run
    sampler = build_sampler(config)  # its first iteration checks that every rank built it alike
    torch.manual_seed(config.seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = sampler.get_data_loader(num_workers=config.workers, tagged=True)
    pending = Pending()
    if config.resume:
        assert config.checkpoint is not None, "--resume needs --checkpoint"
        state = torch.load(config.checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        loader.load_state_dict(state["loader"])
        pending.add(state["pending"]["errors"], state["pending"]["index"].tolist())
    trained = DistributedDataParallel(model) if size > 1 else model
    return loop(loader, model, trained, optimizer, pending, config)


def loop(
    loader: Any,
    model: torch.nn.Module,
    trained: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    pending: Pending,
    config: RunConfig,
) -> list[Metric]:
    """The training loop over tagged batches: a step per training batch; the per-sample
    errors of an evaluation pass, gathered from all ranks by dataset index at its end."""
    metrics = []
    for batch in loader:
        x, y = batch.data
        if batch.source == "train":
            loss = train_step(
                trained, optimizer, x, y, config.micro_batches, batch.global_batch_size
            )
            metrics.append(Metric(batch.progress.update + 1, "train", loss))
        else:
            with torch.no_grad():
                # One row at a time: a matrix multiply may round a row differently depending
                # on the rows that share its batch, and a rank's batches hold other rows than
                # the single process's.
                prediction = torch.cat([model(row[None]) for row in x]).squeeze(1)
            pending.add((prediction - y) ** 2, batch.indices)
            if batch.is_last_in_pass:
                mse = pending.gathered()["errors"].mean().item()
                metrics.append(Metric(batch.progress.update, batch.source, mse))
                pending = Pending()
        if loader.batches_consumed == config.stop_after:
            save(config, model, optimizer, loader, pending)
            break
    return metrics


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    micro_batches: int,
    global_batch_size: int,
) -> float:
    """One update; the global batch's mean loss.

    Micro-batch ``r`` takes every ``micro_batches``-th sample from position ``r``: the part
    of the global batch that rank ``r`` of a DDP run loads. The gradients of the parts (the
    ranks' and micro-batches') are averaged, so each part's mean loss is weighed by its
    size x parts / ``global_batch_size``: the average is then the gradient of the global
    batch's mean loss, also when a short batch splits unevenly.
    """
    size, _ = world()
    parts = size * micro_batches
    optimizer.zero_grad()
    loss_sum = torch.zeros(())
    for r in range(micro_batches):
        x_part, y_part = x[r::micro_batches].contiguous(), y[r::micro_batches]
        weight = len(x_part) * parts / global_batch_size  # exactly 1 for an even split
        loss = torch.nn.functional.mse_loss(model(x_part).squeeze(1), y_part) * weight
        loss.backward()  # type: ignore[no-untyped-call]
        loss_sum += loss.detach()
    if size > 1:  # DDP averaged the gradients; average the losses the same way
        dist.all_reduce(loss_sum)
    for parameter in model.parameters():
        assert parameter.grad is not None
        parameter.grad /= micro_batches
    optimizer.step()
    return (loss_sum / (size * micro_batches)).item()


def save(
    config: RunConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    pending: Pending,
) -> None:
    """Rank 0 writes the checkpoint (the loader's state is the same on every rank); every
    rank returns once it is written."""
    assert config.checkpoint is not None, "--stop-after needs --checkpoint"
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "loader": loader.state_dict(),
        "pending": pending.gathered(),  # a collective: on every rank
    }
    if world()[1] == 0:
        torch.save(state, config.checkpoint)
    if dist.is_initialized():
        dist.barrier()


def parse(argv: list[str] | None = None) -> RunConfig:
    """The run configuration from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RunConfig()
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--micro-batches", type=int, default=defaults.micro_batches)
    parser.add_argument("--max-updates", type=int, default=defaults.max_updates)
    parser.add_argument("--stop-after", type=int, default=None, metavar="BATCHES")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument(
        "--keep-last",
        dest="drop_last",
        action="store_false",
        help="train on each epoch's short last batch too (drop_last=False)",
    )
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
