"""A usage example, runnable: one loader for training and two evaluations."""

from __future__ import annotations

import torch
from torch.utils.data import SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)


def main(num_workers: int = 2) -> list[str]:
    """Run 2 epochs; return the kind of every batch ("train", "val" or "test") in order."""
    train_set = TensorDataset(torch.arange(100.0), torch.zeros(100))
    val_set = TensorDataset(torch.arange(20.0), torch.ones(20))
    test_set = TensorDataset(torch.arange(10.0), torch.full((10,), 2.0))
    sampler = InterleavedSampler(
        SeededRandomSampler(train_set, seed=0),
        InterleavedSamplerConfig(batch_size=16, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(val_set), every_n_updates=4, batch_size=8),
            SamplerIntervalConfig(SequentialSampler(test_set), every_n_epochs=1),
        ],
    )
    loader = sampler.get_data_loader(num_workers=num_workers)
    kinds = []
    for _, label in loader:
        kinds.append(("train", "val", "test")[int(label[0])])
    print(f"{len(loader)} batches: " + " ".join(kinds))
    return kinds


if __name__ == "__main__":
    main()
