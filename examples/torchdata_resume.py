"""torchdata's StatefulDataLoader over an interleaved sampler: stop anywhere, resume exactly.

    python examples/torchdata_resume.py --stop-after 9 --workers 2

Built from the parts of the tagged loader (``parts = sampler.get_data_loader(tagged=True)``;
``StatefulDataLoader(parts.dataset, batch_sampler=parts.batch_sampler,
collate_fn=parts.collate_fn, num_workers=...)``) it yields the same tagged batches as that
loader, so the loop tells training from evaluation (``batch.source``); its
``state_dict()`` after any batch (training or evaluation) and ``load_state_dict`` in a new
loader yield exactly the rest of the run. (``cache=True`` callbacks need the library's own
loader, which serves their later passes from memory: refused here.)
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import SequentialSampler, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from interleaved_sampler import (
    InterleavedBatch,
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)


def make_loader(workers: int) -> StatefulDataLoader:
    """50 training samples in batches of 8 for 2 epochs, a pass over 10 samples every 4."""
    train = TensorDataset(torch.arange(50))
    val = TensorDataset(torch.arange(1000, 1010))
    sampler = InterleavedSampler(
        SeededRandomSampler(train, seed=0),
        InterleavedSamplerConfig(batch_size=8, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(val), every_n_updates=4, batch_size=4)
        ],
    )
    parts = sampler.get_data_loader(tagged=True)  # not iterated: its parts are the recipe
    return StatefulDataLoader(
        parts.dataset,
        batch_sampler=parts.batch_sampler,
        collate_fn=parts.collate_fn,
        num_workers=workers,
    )


def samples(batch: InterleavedBatch) -> tuple[str, list[int]]:
    """Where a batch comes from and its samples."""
    (values,) = batch.data
    return batch.source, [int(v) for v in values]


def main(argv: list[str] | None = None) -> bool:
    """Stop after ``--stop-after`` batches, resume from the state; True if the two parts
    make up the uninterrupted run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-after", type=int, default=9, help="batches before the stop")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    full = [samples(batch) for batch in make_loader(args.workers)]
    first_loader = make_loader(args.workers)
    first = []
    for batch in first_loader:
        first.append(samples(batch))
        if len(first) == args.stop_after:
            break
    state = first_loader.state_dict()
    resumed = make_loader(args.workers)
    resumed.load_state_dict(state)
    rest = [samples(batch) for batch in resumed]
    same = first + rest == full
    training = sum(source == "train" for source, _ in full)
    print(
        f"{len(full)} batches ({training} training, {len(full) - training} evaluation); "
        f"stopped after {len(first)}, resumed {len(rest)}: same {same}"
    )
    return same


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
