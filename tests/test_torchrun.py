"""Two real ranks (torchrun, gloo, CPU): same schedule, exact evaluation, exact resume.

One launch of ``torchrun_worker.py`` runs every check (start-up costs seconds); the tests
compare what the ranks wrote with each other and with the same computations in this one
process. A hang fails the launch at its timeout instead of stalling the suite.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import torchrun
from torchrun_worker import (
    evaluation_data,
    global_run,
    load_example,
    per_sample_outputs,
    random_run,
    stream,
)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = list(range(40))
LAUNCH_TIMEOUT = 240

pytestmark = [pytest.mark.slow, pytest.mark.timeout(LAUNCH_TIMEOUT + 60)]


def metrics(run: list[Any]) -> list[list[Any]]:
    return [[m.update, m.name, m.value] for m in run]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Launch 2 ranks once; their results, rank 0 first."""
    out = tmp_path_factory.mktemp("torchrun")
    ddp = load_example("ddp")  # one process stops a run that the 2 ranks continue
    one = ddp.run(ddp.RunConfig(micro_batches=2, stop_after=20, checkpoint=out / "one.pt"))
    (out / "one.json").write_text(json.dumps(metrics(one)))
    worker = ROOT / "tests" / "torchrun_worker.py"
    torchrun(worker, [str(out), ",".join(map(str, SEEDS))], LAUNCH_TIMEOUT)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def batches(recorded: list[list[Any]]) -> list[tuple[int, list[int]]]:
    return [(source, indices) for source, indices in recorded]


def test_every_rank_yields_the_same_sources_and_batch_sizes(ranks: list[dict[str, Any]]) -> None:
    assert [r["world"] for r in ranks] == [2, 2]
    sources: set[int] = set()
    for run0, run1 in zip(ranks[0]["schedules"], ranks[1]["schedules"], strict=True):
        shape0 = [(source, len(indices)) for source, indices in run0["full"]]
        assert shape0 == [(source, len(indices)) for source, indices in run1["full"]]
        sources.update(source for source, _ in shape0)
    assert sources == {0, 1, 2, 3}  # the random runs exercised training and 3 callbacks


def test_ranks_yield_their_own_shards(ranks: list[dict[str, Any]]) -> None:
    """Each rank's batches are those of the run built with that rank given explicitly."""
    for seed, run0, run1 in zip(SEEDS, ranks[0]["schedules"], ranks[1]["schedules"], strict=True):
        for rank, run in enumerate((run0, run1)):
            assert batches(run["full"]) == stream(random_run(seed, 2, rank))


def test_every_rank_resumes_at_the_same_update(ranks: list[dict[str, Any]]) -> None:
    for run0, run1 in zip(ranks[0]["schedules"], ranks[1]["schedules"], strict=True):
        assert run0["resume_at"] == run1["resume_at"]
        for run in (run0, run1):
            full = batches(run["full"])
            trained = [i for i, (source, _) in enumerate(full) if source == 0]
            done = run["resume_at"]
            rest = full[trained[done] :] if done < len(trained) else []
            assert batches(run["resumed"]) == rest


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("lengths", "len(train sampler) differs: rank 0: 10, rank 1: 11"),
        ("world", "num_replicas=3, rank=0, but the group has 2 ranks"),
        ("rank", "rank 1: the train sampler (DistributedSampler) has num_replicas=2, rank=0"),
        ("config", "end update differs: rank 0: 3, rank 1: 4"),
    ],
)
def test_inconsistent_ranks_fail_on_every_rank(
    ranks: list[dict[str, Any]], case: str, message: str
) -> None:
    errors = [r["inconsistent"][case] for r in ranks]
    assert errors[0] == errors[1]
    assert message in errors[0]


@pytest.mark.parametrize("size", [7, 13])
def test_gathered_evaluation_equals_one_process(ranks: list[dict[str, Any]], size: int) -> None:
    data = evaluation_data(size)
    outputs = torch.cat([per_sample_outputs(data[i : i + 4]) for i in range(0, size, 4)])
    want = {
        "output": outputs.tolist(),
        "index": list(range(size)),
        "positive": (outputs[:, 0] > 0).tolist(),
    }
    assert ranks[0]["gathered"][str(size)] == want
    assert ranks[1]["gathered"][str(size)] == want


def test_gather_with_different_sample_counts(ranks: list[dict[str, Any]]) -> None:
    for rank in ranks:
        assert rank["uneven"]["uneven"] == [0, 10, 20, 30, 40, 50, 60]
        assert rank["uneven"]["one_empty"] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("case", "message"),
    [("dtype", "different names, dtypes"), ("length", "rank 1: values has 2 rows but there are 3")],
)
def test_gather_mismatch_fails_on_every_rank(
    ranks: list[dict[str, Any]], case: str, message: str
) -> None:
    errors = [r["uneven"]["errors"][case] for r in ranks]
    assert errors[0] == errors[1]
    assert message in errors[0]


def test_ddp_example_equals_one_process_and_resumes_on_another_number_of_processes(
    ranks: list[dict[str, Any]],
) -> None:
    ddp = load_example("ddp")
    single = ddp.RunConfig(micro_batches=2)
    uninterrupted = metrics(ddp.run(single))
    assert {name for _, name, _ in uninterrupted} == {"train", "validation", "test"}
    out = Path(ranks[0]["out"])
    one = json.loads((out / "one.json").read_text())  # stopped by 1 process after batch 20
    for rank in ranks:
        example = rank["example"]
        assert example["full"] == uninterrupted
        assert one + example["from_one"] == uninterrupted  # 1 -> 2 processes
    rest = metrics(ddp.run(replace(single, resume=True, checkpoint=out / "two.pt")))
    assert ranks[0]["example"]["stopped"] + rest == uninterrupted  # 2 -> 1 process


def test_ddp_with_uneven_last_batches_equals_one_process(ranks: list[dict[str, Any]]) -> None:
    """drop_last=False: 203 samples in batches of 16 end each epoch with 11, split 6 + 5.
    Weighing each rank's mean loss by its part of the global batch (the tags' sizes), DDP
    trains as one process does on the whole batch (unweighted: losses off by ~1e-2)."""
    ddp = load_example("ddp")
    micro = metrics(ddp.run(ddp.RunConfig(drop_last=False, micro_batches=2)))
    plain = metrics(ddp.run(ddp.RunConfig(drop_last=False)))
    assert [update for update, name, _ in plain if name == "test"] == [13, 26]  # 2 epoch ends
    for rank in ranks:
        uneven = rank["example"]["uneven"]
        assert uneven == micro  # bit for bit: the same parts, the same arithmetic
        assert [m[:2] for m in uneven] == [m[:2] for m in plain]
        values = torch.tensor([value for *_, value in uneven])
        want = torch.tensor([value for *_, value in plain])
        torch.testing.assert_close(values, want, rtol=1e-5, atol=1e-6)


def test_global_runs_split_every_batch_over_the_ranks(ranks: list[dict[str, Any]]) -> None:
    for seed, run0, run1 in zip(
        SEEDS, ranks[0]["global_schedules"], ranks[1]["global_schedules"], strict=True
    ):
        assert batches(run0) == stream(global_run(seed, 2, 0))
        assert batches(run1) == stream(global_run(seed, 2, 1))
        for (_, whole), (_, part0), (_, part1) in zip(
            stream(global_run(seed, 1, 0)), run0, run1, strict=True
        ):
            assert part0 and part1  # no empty batch on any rank
            if len(whole) > 1:
                assert sorted(part0 + part1) == sorted(whole) and not set(part0) & set(part1)
            else:
                assert part0 == part1 == whole  # a one-sample pass batch, padded


@pytest.mark.parametrize("size", [7, 13])
def test_globally_split_evaluation_equals_one_process(
    ranks: list[dict[str, Any]], size: int
) -> None:
    data = evaluation_data(size)
    want = torch.cat([per_sample_outputs(data[i : i + 4]) for i in range(0, size, 4)]).tolist()
    assert ranks[0]["global_gathered"][str(size)] == want
    assert ranks[1]["global_gathered"][str(size)] == want
