"""``demo``: train a small model with two periodic evaluations through one DataLoader."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.data import SequentialSampler, TensorDataset

from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.sampler import InterleavedSampler
from interleaved_sampler.samplers import SeededRandomSampler


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="train a small model with periodic evaluation")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def synthetic_regression(size: int, seed: int) -> TensorDataset:
    """``y = x @ w + noise`` with a fixed ``w``: a dataset any linear model can learn."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.arange(1.0, 9.0) / 8
    x = torch.randn(size, 8, generator=generator)
    y = x @ weight + 0.1 * torch.randn(size, generator=generator)
    return TensorDataset(x, y)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    train = synthetic_regression(2048, seed=1)
    validation, test = synthetic_regression(256, seed=2), synthetic_regression(512, seed=3)
    sampler = InterleavedSampler(
        SeededRandomSampler(train, seed=args.seed),
        InterleavedSamplerConfig(batch_size=args.batch_size, max_epochs=args.epochs),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(validation), every_n_updates=50),
            SamplerIntervalConfig(SequentialSampler(test), every_n_epochs=1, batch_size=128),
        ],
    )
    schedule = sampler.schedule
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = sampler.get_data_loader(num_workers=args.workers)
    print(f"{len(loader)} batches: {schedule.train_batches} training, the rest evaluation")
    update = 0
    pending = list(schedule.firings())
    errors: list[float] = []
    for x, y in loader:
        if not errors and update < schedule.end_update and _next_is_training(pending, update):
            loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            update += 1
            continue
        with torch.no_grad():
            errors.extend(((model(x).squeeze(1) - y) ** 2).tolist())
        firing = pending[0]
        passes = schedule.callbacks[firing.callback]
        if len(errors) == passes.pass_len:
            name = ("validation", "test")[firing.callback]
            mse = sum(errors) / len(errors)
            print(
                f"update {update:4d}  epoch {update / schedule.structure.updates_per_epoch:5.2f}"
                f"  {name:<10} mse {mse:.4f}"
            )
            pending.pop(0)
            errors = []
    return 0


def _next_is_training(pending: list[Any], update: int) -> bool:
    return not pending or pending[0].progress.update > update
