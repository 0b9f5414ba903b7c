"""A plain PyTorch training loop with two periodic evaluations, driven by tagged batches.

One DataLoader (one worker pool) serves training and both evaluations; every batch says where
it comes from, so the loop needs no batch counting:

    python examples/train_loop.py --epochs 3 --workers 2
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from torch.utils.data import SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)


def blobs(size: int, seed: int) -> TensorDataset:
    """Two Gaussian blobs in the plane, labelled 0 and 1."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (size,), generator=generator)
    points = torch.randn(size, 2, generator=generator) + (labels[:, None] * 3.0 - 1.5)
    return TensorDataset(points, labels)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--val-every", type=int, default=25, help="validation interval (updates)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Train, print one line per evaluation and return the latest accuracy of each set."""
    args = parse(argv)
    torch.manual_seed(args.seed)
    train, val, test = blobs(1024, seed=1), blobs(256, seed=2), blobs(512, seed=3)
    sampler = InterleavedSampler(
        SeededRandomSampler(train, seed=args.seed),
        InterleavedSamplerConfig(batch_size=args.batch_size, max_epochs=args.epochs),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(val), every_n_updates=args.val_every, name="val"
            ),
            SamplerIntervalConfig(
                SequentialSampler(test), every_n_epochs=1, batch_size=256, name="test"
            ),
        ],
    )
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    accuracy: dict[str, float] = {}
    correct = seen = 0
    for batch in sampler.get_data_loader(num_workers=args.workers, tagged=True):
        x, y = batch.data
        if batch.source == "train":
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            continue
        with torch.no_grad():  # a batch of an evaluation pass ("val" or "test")
            correct += int((model(x).argmax(dim=1) == y).sum())
            seen += len(y)
        if batch.is_last_in_pass:
            accuracy[batch.source] = correct / seen
            progress = batch.progress
            print(
                f"epoch {progress.epoch} update {progress.update:4d}  "
                f"{batch.source:<4} accuracy {accuracy[batch.source]:.3f}"
            )
            correct = seen = 0
    return accuracy


if __name__ == "__main__":
    main()
