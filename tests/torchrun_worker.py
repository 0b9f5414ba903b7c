"""Run by ``test_torchrun.py`` under torchrun (gloo): one rank's results of every check.

Usage: ``torchrun --standalone --nproc-per-node=2 tests/torchrun_worker.py OUT_DIR SEEDS``.
Each rank writes ``OUT_DIR/rank{r}.json``; the test compares the ranks with each other and
with the same computations in one process. Several checks share one launch (a launch costs
seconds of process start-up).
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.distributed import check_same_schedule, gather_by_index

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
Stream = list[tuple[int, list[int]]]


def random_run(seed: int, world: int | None, rank: int | None, start_update: int = 0) -> Any:
    """A random run with every sampler sharded over ``world`` ranks; ``None`` takes the
    world size and rank from the process group (as ``DistributedSampler`` does)."""
    rng = random.Random(seed)
    replicas = dist.get_world_size() if world is None else world
    shard = dist.get_rank() if rank is None else rank

    def sampler(length: int) -> Any:
        drop_last = rng.random() < 0.5
        if rng.random() < 0.5:
            return SeededRandomSampler(range(length), seed, replicas, shard, drop_last)
        shuffle = rng.random() < 0.5
        return DistributedSampler(range(length), world, rank, shuffle, seed, drop_last)

    main = sampler(rng.randint(2 * replicas, 40))
    batch_size, drop_last = rng.randint(1, 6), rng.random() < 0.5
    stop = rng.choice([{"max_updates": rng.randint(1, 25)}, {"max_epochs": rng.randint(1, 4)}])
    callbacks = []
    for _ in range(rng.randint(0, 3)):
        interval = rng.choice(["every_n_epochs", "every_n_updates", "every_n_samples"])
        callbacks.append(
            SamplerIntervalConfig(
                sampler(rng.randint(replicas, 15)),
                batch_size=rng.randint(1, 5),
                **{interval: rng.randint(1, 12 if interval == "every_n_samples" else 4)},
            )
        )
    config = InterleavedSamplerConfig(
        batch_size=batch_size, drop_last=drop_last, start_update=start_update, **stop
    )
    return InterleavedSampler(main, config, callback_samplers=callbacks)


def global_run(seed: int, world: int, rank: int) -> InterleavedSampler:
    """A random run over global samplers, split over ``world`` ranks by the library; batch
    sizes are multiples of 2 (short batches of every kind remain)."""
    rng = random.Random(seed)

    def sampler(length: int) -> Any:
        if rng.random() < 0.5:
            return SeededRandomSampler(range(length), seed)
        return SequentialSampler(range(length))

    main = sampler(rng.randint(8, 40))
    stop = rng.choice([{"max_updates": rng.randint(1, 25)}, {"max_epochs": rng.randint(1, 4)}])
    callbacks = [
        SamplerIntervalConfig(
            sampler(rng.randint(1, 15)),
            batch_size=2 * rng.randint(1, 3),
            every_n_updates=rng.randint(1, 4),
        )
        for _ in range(rng.randint(0, 3))
    ]
    config = InterleavedSamplerConfig(batch_size=2 * rng.randint(1, 4), **stop)
    return InterleavedSampler(
        main, config, callback_samplers=callbacks, num_replicas=world, rank=rank
    )


def global_schedules(seeds: list[int]) -> list[Stream]:
    """Each global run's stream on this rank (the schedule checked across the ranks)."""
    results = []
    for seed in seeds:
        sampler = global_run(seed, dist.get_world_size(), dist.get_rank())
        check_same_schedule(sampler)
        results.append(stream(sampler))
    return results


def global_evaluations() -> dict[str, Any]:
    """Passes over sets of 7 and 13 samples (batches of 4) split by the library over the
    ranks, the per-sample outputs gathered by index."""
    results: dict[str, Any] = {}
    for size in (7, 13):
        data = evaluation_data(size)
        sampler = InterleavedSampler(
            SequentialSampler(range(4)),
            InterleavedSamplerConfig(batch_size=2, max_epochs=0),  # evaluation only
            callback_samplers=[
                SamplerIntervalConfig(SequentialSampler(data), every_n_epochs=1, batch_size=4)
            ],
            num_replicas=dist.get_world_size(),
            rank=dist.get_rank(),
        )
        batches = [b.indices for b in sampler.get_data_loader(tagged=True)]
        outputs = torch.cat([per_sample_outputs(data[indices]) for indices in batches])
        indices = [i for batch in batches for i in batch]
        results[str(size)] = gather_by_index(outputs, indices).tolist()
    return results


def stream(sampler: InterleavedSampler) -> Stream:
    return [(batch.source_index, list(batch)) for batch in sampler.batch_sampler]


def schedules(seeds: list[int]) -> list[dict[str, Any]]:
    """Each random run's stream, and the stream of the run resumed at a random update."""
    results = []
    for seed in seeds:
        sampler = random_run(seed, None, None)
        check_same_schedule(sampler)
        resume_at = random.Random(-seed).randint(0, sampler.schedule.train_batches)
        resumed = random_run(seed, None, None, start_update=resume_at)
        check_same_schedule(resumed)
        results.append(
            {"full": stream(sampler), "resume_at": resume_at, "resumed": stream(resumed)}
        )
    return results


def error_of_check(sampler: InterleavedSampler) -> str:
    try:
        check_same_schedule(sampler)
    except ValueError as error:
        return str(error)
    return "no error"


def inconsistent_runs(rank: int) -> dict[str, str]:
    """Configurations that would give the ranks different schedules or wrong shards."""
    config = InterleavedSamplerConfig(batch_size=2, max_epochs=1)
    return {
        "lengths": error_of_check(InterleavedSampler(SequentialSampler(range(10 + rank)), config)),
        "world": error_of_check(
            InterleavedSampler(DistributedSampler(range(10), num_replicas=3, rank=rank), config)
        ),
        "rank": error_of_check(
            InterleavedSampler(DistributedSampler(range(10), num_replicas=2, rank=0), config)
        ),
        "config": error_of_check(
            InterleavedSampler(
                DistributedSampler(range(10)),
                InterleavedSamplerConfig(batch_size=2, max_updates=3 + rank),
            )
        ),
    }


def per_sample_outputs(x: torch.Tensor) -> torch.Tensor:
    """A fixed model's outputs, one row per sample, each computed alone (a matrix multiply
    may round a row differently depending on the rows that share its batch, and a rank's
    batches hold other rows than one process's)."""
    model = torch.nn.Linear(x.shape[1], 3)
    with torch.no_grad():
        model.weight.copy_(torch.linspace(-1, 1, 3 * x.shape[1]).reshape(3, -1))
        model.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        return torch.cat([torch.tanh(model(row[None])) for row in x])


def evaluation_data(size: int) -> torch.Tensor:
    return torch.randn(size, 5, generator=torch.Generator().manual_seed(size))


def gathered_evaluations() -> dict[str, Any]:
    """Evaluate sets of 7 and 13 samples in shards (batches of 3) and gather the outputs."""
    results: dict[str, Any] = {}
    for size in (7, 13):
        data = evaluation_data(size)
        indices = list(DistributedSampler(range(size), shuffle=False))
        outputs = torch.cat(
            [per_sample_outputs(data[indices[i : i + 3]]) for i in range(0, len(indices), 3)]
        )
        gathered = gather_by_index(
            {"output": outputs, "index": torch.tensor(indices), "positive": outputs[:, 0] > 0},
            indices,
        )
        results[str(size)] = {key: value.tolist() for key, value in gathered.items()}
    return results


def uneven_gathers(rank: int) -> dict[str, Any]:
    """Ranks with different numbers of samples (none on one rank), and wrong inputs."""
    mine = [[6, 0, 1, 2], [5, 3, 4]][rank]
    empty = [[2, 1], []][rank]
    errors = {}
    for name, values, indices in [
        ("dtype", torch.zeros(2, dtype=[torch.float32, torch.float64][rank]), [0, 1]),
        ("length", torch.zeros(2), [[0, 1], [0, 1, 2]][rank]),
    ]:
        try:
            gather_by_index(values, indices)
            errors[name] = "no error"
        except ValueError as error:
            errors[name] = str(error)
    return {
        "uneven": gather_by_index(torch.tensor(mine) * 10, mine).tolist(),
        "one_empty": gather_by_index(torch.tensor(empty, dtype=torch.float32), empty).tolist(),
        "errors": errors,
    }


def example_runs(out: Path) -> dict[str, Any]:
    """examples/ddp.py on this group: an uninterrupted run, a run stopped inside an
    evaluation pass (its checkpoint is resumed in one process by the test), and the rest of
    a run that one process stopped (``out/one.pt``, written by the test)."""
    ddp = load_example("ddp")
    full = ddp.run(ddp.RunConfig())
    uneven = ddp.run(ddp.RunConfig(drop_last=False))  # epochs end with 11 samples: 6 + 5
    stopped = ddp.run(ddp.RunConfig(stop_after=7, checkpoint=out / "two.pt"))
    from_one = ddp.run(ddp.RunConfig(resume=True, checkpoint=out / "one.pt", workers=1))
    return {
        "full": [[m.update, m.name, m.value] for m in full],
        "uneven": [[m.update, m.name, m.value] for m in uneven],
        "stopped": [[m.update, m.name, m.value] for m in stopped],
        "from_one": [[m.update, m.name, m.value] for m in from_one],
    }


def load_example(name: str) -> Any:
    """Import ``examples/{name}.py`` as module ``name``."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def main() -> None:
    out, seeds = Path(sys.argv[1]), [int(seed) for seed in sys.argv[2].split(",")]
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # no endless hang
    rank = dist.get_rank()
    try:
        results = {
            "world": dist.get_world_size(),
            "out": str(out),
            "schedules": schedules(seeds),
            "global_schedules": global_schedules(seeds),
            "global_gathered": global_evaluations(),
            "inconsistent": inconsistent_runs(rank),
            "gathered": gathered_evaluations(),
            "uneven": uneven_gathers(rank),
            "example": example_runs(out),
        }
    finally:
        dist.destroy_process_group()
    (out / f"rank{rank}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
