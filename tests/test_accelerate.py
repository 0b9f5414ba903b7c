"""Hugging Face Accelerate: examples/accelerate_train.py in one process and in two (torchrun,
gloo), exact resume through save_state/load_state (with gradient accumulation too, also on
another number of processes), and the refusal of a prepared loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from helpers import torchrun
from torchrun_worker import load_example

ROOT = Path(__file__).resolve().parents[1]
example = load_example("accelerate_train")
TINY = example.RunConfig()  # 96 samples, batch 8, 2 epochs: 24 updates, val every 5


def expected(world: int, rank: int) -> list[list[Any]]:
    """What the loop must see: the loader's batches in order."""
    loader = example.make_loader(TINY, world, rank)
    return [[b.source, b.progress.update, b.indices] for b in loader]


def as_lists(seen: list[Any]) -> list[list[Any]]:
    return [[source, update, list(indices)] for source, update, indices in seen]


def test_one_process_follows_the_schedule() -> None:
    result = example.run(TINY, Accelerator(cpu=True))
    assert as_lists(result.seen) == expected(1, 0)
    assert result.updates == 24
    assert [update for update, _ in result.results] == [5, 10, 15, 20]


@pytest.mark.parametrize("workers", [0, 2])
def test_one_process_resumes_exactly(tmp_path: Path, workers: int) -> None:
    # a new Accelerator per run, as in a new process: one registers its objects for good
    full = example.run(example.RunConfig(workers=workers), Accelerator(cpu=True))
    state = tmp_path / "state"
    stop = example.RunConfig(workers=workers, stop_at=7, state=state)
    first = example.run(stop, Accelerator(cpu=True))
    rest = example.run(example.RunConfig(workers=workers, resume=state), Accelerator(cpu=True))
    assert as_lists(first.seen + rest.seen) == as_lists(full.seen)
    assert (first.updates, rest.updates) == (7, 24)
    for name, value in full.weights.items():
        assert torch.equal(rest.weights[name], value), name


@pytest.mark.parametrize(
    "mode",
    [{}, {"use_stateful_dataloader": True}, {"dispatch_batches": True}, {"split_batches": True}],
)
@pytest.mark.parametrize("registered_first", [False, True])
def test_one_process_refuses_a_prepared_loader(
    mode: dict[str, bool], registered_first: bool
) -> None:
    """Accelerate's own loader over the batch sampler keeps no position: save_state would
    save the registered loader's (never iterated: 0 batches) and load_state replay the run."""
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(**mode))
    loader = example.make_loader(TINY, 1, 0)
    if registered_first:
        accelerator.register_for_checkpointing(loader)
    with pytest.raises(TypeError) as error:
        accelerator.prepare(loader)
    assert "accelerator.prepare(model, optimizer) without the loader" in str(error.value)
    assert "register_for_checkpointing(loader)" in str(error.value)


def accumulating() -> Accelerator:
    return Accelerator(cpu=True, gradient_accumulation_steps=2)


def test_one_process_resumes_exactly_with_gradient_accumulation(tmp_path: Path) -> None:
    """save_state after update 8 (the end of an accumulation): the rest equals the run."""
    full = example.run(TINY, accumulating())
    first = example.run(example.RunConfig(stop_at=8, state=tmp_path), accumulating())
    accelerator = accumulating()
    rest = example.run(example.RunConfig(resume=tmp_path), accelerator)
    assert as_lists(first.seen + rest.seen) == as_lists(full.seen)
    for name, value in full.weights.items():
        assert torch.equal(rest.weights[name], value), name
    assert accelerator.step == 24  # restored at 8, then 16 training batches


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("accelerate")
    # one process saves after update 7, inside an accumulation of 2; 2 processes resume
    example.run(example.RunConfig(stop_at=7, state=out / "accumulated"), accumulating())
    torchrun(ROOT / "tests" / "accelerate_worker.py", [str(out)], timeout=240)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_follow_one_schedule_on_their_shards(ranks: list[dict[str, Any]]) -> None:
    assert [r["world"] for r in ranks] == [2, 2]
    for rank, record in enumerate(ranks):
        assert record["full"]["seen"] == expected(2, rank)
        assert record["full"]["updates"] == 24  # the global run's: 96 / 8 x 2 epochs
    assert ranks[0]["full"]["results"] == ranks[1]["full"]["results"]
    assert ranks[0]["full"]["weights"] == ranks[1]["full"]["weights"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_resume_exactly(ranks: list[dict[str, Any]]) -> None:
    for record in ranks:
        stopped, resumed, full = record["stopped"], record["resumed"], record["full"]
        assert stopped["seen"] + resumed["seen"] == full["seen"]
        assert resumed["weights"] == full["weights"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_state_saved_by_two_processes_resumes_in_one(ranks: list[dict[str, Any]]) -> None:
    """save_state after update 7 on 2 processes, load_state on 1: the rest of the global run,
    whose batches are the unions of the 2 ranks' parts."""
    one = example.run(TINY, Accelerator(cpu=True))
    resume = example.RunConfig(resume=Path(ranks[0]["out"]) / "state")
    rest = example.run(resume, Accelerator(cpu=True))
    stopped = [as_lists(r["stopped"]["seen"]) for r in ranks]
    done = len(stopped[0])
    assert len(stopped[1]) == done == 7 + 4  # 7 updates and the 4 batches of a val pass
    for mine, part0, part1 in zip(as_lists(one.seen), *stopped, strict=False):
        assert mine[:2] == part0[:2] == part1[:2]
        assert sorted(mine[2]) == sorted(part0[2] + part1[2])
    assert as_lists(rest.seen) == as_lists(one.seen)[done:]
    assert rest.updates == one.updates == 24
    assert rest.results[-1][0] == one.results[-1][0] == 20
    for name, value in one.weights.items():  # DDP's averaged gradients round differently
        torch.testing.assert_close(rest.weights[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "mode", ["default", "even_batches=False", "split_batches", "dispatch_batches"]
)
def test_prepared_loader_is_refused_with_the_fix(ranks: list[dict[str, Any]], mode: str) -> None:
    for record in ranks:
        error = record["prepare"][mode]
        assert error.startswith("TypeError"), error
        assert "accelerator.prepare(model, optimizer) without the loader" in error


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_state_saved_inside_an_accumulation_resumes_on_two_processes(
    ranks: list[dict[str, Any]],
) -> None:
    """Saved by 1 process after update 7 of accumulations of 2, loaded by 2: the ranks take
    the step counter from the loader's position (Accelerate's file of it exists for rank 0
    only) and synchronize together; the rest is the 1-process resume's (whose accumulation
    restarts alike: the gradient of update 7 is not in the state)."""
    out = Path(ranks[0]["out"])
    one = example.run(example.RunConfig(resume=out / "accumulated"), accumulating())
    parts = [as_lists(record["accumulated"]["seen"]) for record in ranks]
    assert len(parts[0]) == len(parts[1]) == len(one.seen)
    for mine, part0, part1 in zip(as_lists(one.seen), *parts, strict=True):
        assert mine[:2] == part0[:2] == part1[:2]
        assert sorted(mine[2]) == sorted(part0[2] + part1[2])
    for record in ranks:
        assert record["accumulated"]["updates"] == 24
        assert record["accumulated_step"] == 24
        for name, value in one.weights.items():
            got = torch.tensor(record["accumulated"]["weights"][name])
            torch.testing.assert_close(got, value, rtol=1e-5, atol=1e-6)
