"""Hugging Face Accelerate with one interleaved loader, in one or several processes.

    python examples/accelerate_train.py
    torchrun --standalone --nproc-per-node=2 examples/accelerate_train.py   # 2 processes, CPU
    python examples/accelerate_train.py --stop-at 13 --state s/   # save_state after 13 updates
    python examples/accelerate_train.py --resume s/                # load_state and continue
    python examples/accelerate_train.py --accumulation 2           # gradient accumulation

The recipe: ``accelerator.prepare(model, optimizer)``, but NOT the loader (nor the LR
scheduler, see ``run``); ``prepare(loader)`` raises ``TypeError``.
Accelerate would iterate the loader's batch sampler with a DataLoader of its own, whose
position ``save_state`` does not keep, and with several processes re-shard its batches
round-robin, so the ranks would see different sources at the same step; the interleaved
sampler splits the run itself instead: its samplers are global and ``InterleavedSampler(...,
num_replicas=accelerator.num_processes, rank=accelerator.process_index)`` gives every rank
its part of every global batch (``--batch-size`` is the global batch size), on one global
schedule. Batches are moved with ``batch.to(accelerator.device)``. For checkpoints the
loader is registered with ``accelerator.register_for_checkpointing``: ``save_state`` stores
its position (the global run's, the same on every rank) with the model and optimizer,
``load_state`` restores it, and the loader yields exactly the rest, also on another number
of processes. After ``load_state`` the step counter of gradient accumulation is set from
the loader's position (``accelerator.step = loader.progress.update``): Accelerate restores
it per process from a file that only the processes of the saving run have, so on another
number of processes the ranks would disagree on when to synchronize and wait for each
other forever.

For CPU runs use ``torchrun`` as above: ``accelerate launch --cpu --num_processes 2`` starts
one process (``--cpu`` takes Accelerate's single-process launcher).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.distributed import gather_by_index


@dataclass(frozen=True)
class RunConfig:
    """One run.

    Args:
        epochs: epochs of the training set.
        batch_size: training samples per update, over all processes.
        val_every: a validation pass every this many updates.
        workers: DataLoader worker processes per process.
        stop_at: ``save_state`` to ``state`` after this many updates and stop.
        state: the folder of ``stop_at``.
        resume: a folder of ``save_state`` to continue from.
    """

    epochs: int = 2
    batch_size: int = 8
    val_every: int = 5
    workers: int = 0
    stop_at: int | None = None
    state: Path | None = None
    resume: Path | None = None


@dataclass
class Outcome:
    """What a run did: every batch (source, progress.update, indices), the validation
    results, the updates and the final weights."""

    seen: list[tuple[str, int, list[int]]] = field(default_factory=list)
    results: list[tuple[int, float]] = field(default_factory=list)
    updates: int = 0
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def regression(size: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 4, generator=generator)
    return TensorDataset(x, torch.sin(x @ torch.linspace(-1, 1, 4))[:, None])


def make_loader(config: RunConfig, world: int, rank: int) -> DataLoader[Any]:
    """96 training samples and a validation set of 20; this process's part of the run."""
    train, val = regression(96, 0), regression(20, 1)
    sampler = InterleavedSampler(
        SeededRandomSampler(train, seed=0),
        InterleavedSamplerConfig(batch_size=config.batch_size, max_epochs=config.epochs),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(val), every_n_updates=config.val_every, batch_size=6, name="val"
            )
        ],
        num_replicas=world,
        rank=rank,
    )
    return sampler.get_data_loader(num_workers=config.workers, tagged=True)


def run(config: RunConfig, accelerator: Accelerator) -> Outcome:
    """Train (or continue from ``config.resume``) and return what this process did."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Not prepared: a prepared scheduler steps once per process at every step (Accelerate
    # assumes per-process batches unless split_batches=True); one update of the global
    # batch is one step.
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.8)
    loader = make_loader(config, accelerator.num_processes, accelerator.process_index)
    if config.stop_at is not None or config.resume is not None:
        accelerator.register_for_checkpointing(loader, scheduler)
    outcome = Outcome()
    if config.resume is not None:
        accelerator.load_state(str(config.resume))
        # the same on every rank, whatever number of processes saved the state
        accelerator.step = outcome.updates = loader.progress.update
    errors: list[torch.Tensor] = []
    indices: list[int] = []
    for batch in loader:
        batch = batch.to(accelerator.device)
        outcome.seen.append((batch.source, batch.progress.update, batch.indices))
        x, y = batch.data
        if batch.source == "train":
            model.train()
            with accelerator.accumulate(model):  # synchronizes every accumulation steps
                loss = torch.nn.functional.mse_loss(model(x), y)
                accelerator.backward(loss)
                optimizer.step()  # prepared: steps only where gradients synchronize
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                scheduler.step()
            outcome.updates += 1
            if outcome.updates == config.stop_at:
                assert config.state is not None, "--stop-at needs --state"
                accelerator.save_state(str(config.state))
                break
            continue
        model.eval()
        with torch.no_grad():
            errors.append(((model(x) - y) ** 2).squeeze(1))
        indices.extend(batch.indices)
        if batch.is_last_in_pass:
            mse = gather_by_index(torch.cat(errors), indices).mean().item()
            outcome.results.append((batch.progress.update, mse))
            errors, indices = [], []
    unwrapped = accelerator.unwrap_model(model)
    outcome.weights = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
    return outcome


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RunConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--val-every", type=int, default=defaults.val_every)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--accumulation", type=int, default=1, help="gradient accumulation")
    args = vars(parser.parse_args(argv))
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=args.pop("accumulation"))
    outcome = run(RunConfig(**args), accelerator)
    if accelerator.is_main_process:
        for update, mse in outcome.results:
            print(f"update {update:3d}  val mse {mse:.6f}")
        print(f"updates {outcome.updates}")
    return outcome


if __name__ == "__main__":
    main()
