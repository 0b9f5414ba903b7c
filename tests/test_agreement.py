"""Ranks that disagree are never silent and never hang: two real ranks (torchrun, gloo) build
global runs that differ, WITHOUT ``check_same_schedule``; the first iteration raises the same
clear error on every rank within seconds. torch's ``RandomSampler`` without a generator gets
rank 0's order on every rank. One process: the agreement's parts, and the refusal of such a
sampler in a global run without a process group."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import torchrun, torchrun_launch
from torch.utils.data import RandomSampler, SequentialSampler, WeightedRandomSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.agreement import RankFacts, Ranks
from interleaved_sampler.distributed import check_same_schedule

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "agreement_worker.py"
LAUNCH_TIMEOUT = 180
SECONDS = 10  # the most a disagreement may take to be raised (the group's timeout is 30 s)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("agreement")
    torchrun(WORKER, ["cases", str(out)], LAUNCH_TIMEOUT)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.timeout(LAUNCH_TIMEOUT + 60)
@pytest.mark.parametrize(
    ("case", "messages"),
    [
        (
            "seeds",
            ["train sampler differs: rank 0: SeededRandomSampler(seed=3), rank 1: "
             "SeededRandomSampler(seed=4)"],
        ),
        (
            "generator seeds",
            ["train sampler differs: rank 0: RandomSampler(seed=0, replacement=False), rank 1: "
             "RandomSampler(seed=1, replacement=False)"],
        ),
        (
            "sampler types",
            ["train sampler differs: rank 0: SeededRandomSampler(seed=3), rank 1: "
             "SequentialSampler()"],
        ),
        ("batch sizes", ["batch_size in use differs: rank 0: 8, rank 1: 10"]),
        (
            "dataset lengths",
            ["len(train sampler) differs: rank 0: 200, rank 1: 201",
             "len(train dataset) differs: rank 0: 200, rank 1: 201"],
        ),
        (
            "ranks",
            ["rank 1: the interleaved sampler has num_replicas=2, rank=0, but the group has 2 "
             "ranks and this is rank 1; use num_replicas=2, rank=1"],
        ),
        ("resume", ["resume after batch differs: rank 0: 0, rank 1: 3"]),
    ],
)  # fmt: skip
def test_ranks_that_disagree_fail_alike_within_seconds(
    ranks: list[dict[str, Any]], case: str, messages: list[str]
) -> None:
    errors = [rank["cases"][case]["error"] for rank in ranks]
    assert errors[0] == errors[1]  # the same error on every rank
    for message in messages:
        assert message in errors[0]
    assert "the interleaved samplers of the ranks do not give every rank the same" in errors[0]
    assert max(rank["cases"][case]["seconds"] for rank in ranks) < SECONDS


@pytest.mark.slow
@pytest.mark.timeout(LAUNCH_TIMEOUT + 60)
def test_ranks_that_agree_pass(ranks: list[dict[str, Any]]) -> None:
    assert [rank["cases"]["agreeing"]["error"] for rank in ranks] == ["no error"] * 2


def interleave(parts: list[list[int]]) -> list[int]:
    return [parts[j % len(parts)][j // len(parts)] for j in range(sum(map(len, parts)))]


@pytest.mark.slow
@pytest.mark.timeout(LAUNCH_TIMEOUT + 60)
def test_a_random_sampler_without_generator_takes_rank_0s_order(
    ranks: list[dict[str, Any]],
) -> None:
    """Each rank seeded its global generator with its rank; every epoch is rank 0's order
    (each sample once), and each rank's generator continues as if it had iterated its own
    sampler (dropout masks unchanged)."""
    parts = [rank["global_rng"]["batches"] for rank in ranks]
    torch.manual_seed(0)
    orders = [list(RandomSampler(range(200))) for _ in range(2)]  # rank 0's two epochs
    batches = [b for b in zip(*parts, strict=True) if len(b[0]) == 4]  # training batches
    joined = [i for pair in batches for i in interleave(list(pair))]
    assert joined == orders[0] + orders[1]
    for rank, record in enumerate(ranks):
        torch.manual_seed(rank)
        for _ in range(2):
            list(RandomSampler(range(200)))
        assert record["global_rng"]["after"] == torch.rand(4).tolist()


@pytest.mark.slow
@pytest.mark.timeout(LAUNCH_TIMEOUT + 60)
def test_a_ddp_loop_with_different_batch_sizes_fails_instead_of_hanging() -> None:
    """Without the check, DDP's first all-reduce would wait forever for the other rank."""
    start = time.perf_counter()
    launch = torchrun_launch(WORKER, ["ddp", "unused"], LAUNCH_TIMEOUT)
    seconds = time.perf_counter() - start
    assert launch.returncode != 0
    output = launch.stdout + launch.stderr
    assert output.count("batch_size in use differs: rank 0: 8, rank 1: 10") >= 2  # both ranks
    print(f"the launch failed after {seconds:.1f} s")


def global_run(train: Any, rank: int = 0) -> InterleavedSampler:
    return InterleavedSampler(
        train,
        InterleavedSamplerConfig(batch_size=4, max_epochs=1),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(range(6)), every_n_epochs=1, batch_size=2)
        ],
        num_replicas=2,
        rank=rank,
    )


def weighted() -> WeightedRandomSampler:
    sampler = WeightedRandomSampler([1.0] * 8, 8)
    sampler.data_source = range(8)  # type: ignore[attr-defined]  # torch's has no dataset
    return sampler


@pytest.mark.parametrize("train", [RandomSampler(range(8)), weighted()])
def test_a_global_rng_sampler_in_a_global_run_without_a_group_is_refused(train: Any) -> None:
    with pytest.raises(ValueError) as error:
        global_run(train)
    message = str(error.value)
    assert f"the train sampler ({type(train).__name__}) has no generator" in message
    assert "num_replicas=2" in message
    assert "generator=torch.Generator().manual_seed(0)" in message


def test_a_global_rng_sampler_with_a_generator_or_in_one_process_is_accepted() -> None:
    global_run(RandomSampler(range(8), generator=torch.Generator().manual_seed(0)))
    InterleavedSampler(
        RandomSampler(range(8)), InterleavedSamplerConfig(batch_size=4, max_epochs=1)
    )


def test_without_a_process_group_a_global_run_checks_nothing() -> None:
    """No group: the loader iterates without any collective (the ranks may be simulated)."""
    sampler = global_run(SeededRandomSampler(range(8), seed=1), rank=1)
    assert sampler.batch_sampler.ranks is None
    assert len(list(sampler.get_data_loader())) == 2 + 3  # 2 updates, a pass of 3 batches


def test_the_digest_covers_every_fact() -> None:
    """Two runs that differ in any fact the ranks compare have different digests."""
    base = global_run(SeededRandomSampler(range(8), seed=1))
    others = [
        global_run(SeededRandomSampler(range(8), seed=2)),
        global_run(SeededRandomSampler(range(10), seed=1)),
        global_run(SequentialSampler(range(8))),
        InterleavedSampler(
            SeededRandomSampler(range(8), seed=1),
            InterleavedSamplerConfig(batch_size=4, max_epochs=1),
            callback_samplers=[
                SamplerIntervalConfig(SequentialSampler(range(6)), every_n_epochs=1, batch_size=4)
            ],
            num_replicas=2,
        ),
    ]
    digest = RankFacts.of(base.batch_sampler, 0).digest()
    assert (
        RankFacts.of(global_run(SeededRandomSampler(range(8), seed=1)).batch_sampler, 1).digest()
        == digest
    )
    for other in others:
        assert RankFacts.of(other.batch_sampler, 0).digest() != digest
    resumed = global_run(SeededRandomSampler(range(8), seed=1))
    resumed.batch_sampler.load_position(2)
    assert RankFacts.of(resumed.batch_sampler, 0).digest() != digest


def test_one_process_checks_its_own_sharding() -> None:
    """Without a group, check_same_schedule sees one rank: a global run for 2 is reported."""
    with pytest.raises(ValueError, match=r"interleaved sampler has num_replicas=2, rank=1"):
        check_same_schedule(global_run(SeededRandomSampler(range(8)), rank=1))
    assert Ranks.of_group(None) == Ranks(None, 1, 0)
