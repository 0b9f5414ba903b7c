"""Run by ``test_agreement.py`` under torchrun (2 ranks, gloo): global runs whose ranks
disagree, WITHOUT ``check_same_schedule``.

Usage: ``torchrun --standalone --nproc-per-node=2 tests/agreement_worker.py MODE OUT_DIR``.

- ``cases``: each rank builds each disagreeing run, iterates its loader and records the
  error (or ``"no error"``) and the seconds it took; and a run over torch's
  ``RandomSampler`` without a generator after a per-rank ``torch.manual_seed``: each rank's
  batches and the random numbers its global generator gives afterwards. Writes
  ``OUT_DIR/rank{r}.json``.
- ``ddp``: a DDP training loop whose ranks have different batch sizes; the error is not
  caught, so the launch fails (without the check it hangs in DDP's first all-reduce).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import RandomSampler, SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)

LENGTH, EPOCHS = 200, 2
CONFIG = InterleavedSamplerConfig(batch_size=8, max_epochs=EPOCHS)


def run(train: Any, config: InterleavedSamplerConfig = CONFIG, rank: int | None = None) -> Any:
    """A global run over 2 ranks with a validation pass every 5 updates."""
    return InterleavedSampler(
        train,
        config,
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(range(30)), every_n_updates=5, batch_size=6)
        ],
        num_replicas=2,
        rank=dist.get_rank() if rank is None else rank,
    )


def resumed(rank: int) -> Any:
    """Rank 1 loads a state after 3 batches, rank 0 starts from the beginning."""
    loader = run(SeededRandomSampler(range(LENGTH), seed=3)).get_data_loader(tagged=True)
    if rank == 1:
        loader.load_position(3)  # as load_state_dict of a state after 3 batches does
    return loader


def disagreeing(rank: int) -> dict[str, Callable[[], Any]]:
    """Loaders of runs that differ between the ranks."""
    data = range(LENGTH)
    return {
        "seeds": lambda: run(SeededRandomSampler(data, seed=3 + rank)).get_data_loader(),
        "generator seeds": lambda: run(
            RandomSampler(data, generator=torch.Generator().manual_seed(rank))
        ).get_data_loader(),
        "sampler types": lambda: run(
            SequentialSampler(data) if rank else SeededRandomSampler(data, seed=3)
        ).get_data_loader(),
        "batch sizes": lambda: run(
            SeededRandomSampler(data, seed=3),
            InterleavedSamplerConfig(batch_size=8 + 2 * rank, max_epochs=EPOCHS),
        ).get_data_loader(num_workers=2),
        "dataset lengths": lambda: run(
            SeededRandomSampler(range(LENGTH + rank), seed=3)
        ).get_data_loader(tagged=True),
        "ranks": lambda: run(SeededRandomSampler(data, seed=3), rank=0).get_data_loader(),
        "resume": lambda: resumed(rank),
        "agreeing": lambda: run(SeededRandomSampler(data, seed=3)).get_data_loader(),
    }


def outcome(make_loader: Callable[[], Any]) -> dict[str, Any]:
    """The error the loader's first batches raise, and the seconds from the iteration's
    start to it."""
    loader = make_loader()
    dist.barrier()  # both ranks start iterating together: the time is the check's
    start = time.perf_counter()
    try:
        for _ in islice(loader, 3):
            pass
        error = "no error"
    except ValueError as raised:
        error = str(raised)
    return {"error": error, "seconds": time.perf_counter() - start}


def global_rng_order(rank: int) -> dict[str, Any]:
    """torch's RandomSampler without a generator after a per-rank seed: the rank's parts of
    every batch, and the global generator's next numbers afterwards."""
    torch.manual_seed(rank)
    sampler = run(RandomSampler(range(LENGTH)))
    batches = [list(batch) for batch in sampler.batch_sampler]
    return {"batches": batches, "after": torch.rand(4).tolist()}


def ddp() -> None:
    """A DDP loop whose ranks have different batch sizes (8 and 10): an error, not a hang."""
    rank = dist.get_rank()
    data = TensorDataset(torch.randn(LENGTH, 4), torch.randn(LENGTH, 1))
    config = InterleavedSamplerConfig(batch_size=8 + 2 * rank, max_epochs=EPOCHS)
    sampler = InterleavedSampler(SeededRandomSampler(data), config, num_replicas=2, rank=rank)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in sampler.get_data_loader():
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()  # type: ignore[no-untyped-call]
        optimizer.step()


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo", timeout=timedelta(seconds=30))  # a hang: an error
    rank = dist.get_rank()
    try:
        if mode == "ddp":
            ddp()
            return
        results = {
            "cases": {name: outcome(make) for name, make in disagreeing(rank).items()},
            "global_rng": global_rng_order(rank),
        }
        (out / f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
