"""torchdata's StatefulDataLoader over an interleaved sampler: stop anywhere, resume exactly.

    python examples/torchdata_resume.py --stop-after 9 --workers 2

``StatefulDataLoader(sampler.dataset, batch_sampler=sampler.batch_sampler,
collate_fn=sampler.collator, num_workers=...)`` is a drop-in for the loader of
``get_data_loader``; its ``state_dict()`` after any batch (training or evaluation) and
``load_state_dict`` in a new loader yield exactly the rest of the run.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.data import SequentialSampler, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from interleaved_sampler import (
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
    return StatefulDataLoader(
        sampler.dataset,
        batch_sampler=sampler.batch_sampler,
        collate_fn=sampler.collator,
        num_workers=workers,
    )


def samples(batch: Any) -> list[int]:
    (values,) = batch
    return [int(v) for v in values]


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
    print(f"{len(full)} batches; stopped after {len(first)}, resumed {len(rest)}: same {same}")
    return same


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
