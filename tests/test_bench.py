"""The ``bench`` command on tiny settings: it runs, counts and checks what it claims to.

No timing assertions: the figures depend on the machine; these tests pin down behaviour.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from torch.utils.data import Dataset, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    TrainingProgress,
)
from interleaved_sampler.bench import runner
from interleaved_sampler.bench.measure import StartupCounter, tree_memory
from interleaved_sampler.bench.runner import run_benchmark, run_once
from interleaved_sampler.bench.samples import (
    Recorder,
    SampleMismatchError,
    check_same_samples,
    check_tag,
)
from interleaved_sampler.bench.scenario import Datasets, Scenario
from interleaved_sampler.bench.variants import VARIANTS, Variant, variant
from interleaved_sampler.cli import main
from interleaved_sampler.data import InterleavedBatch

# 20 training samples in batches of 4: 5 updates per epoch; 12 updates: 3 epochs started;
# evaluation after updates 5 and 10 over datasets of 6 and 3 samples in batches of 4.
TINY = Scenario(
    train_size=20,
    eval_sizes=(6, 3),
    batch_size=4,
    eval_batch_size=4,
    updates=12,
    eval_every=5,
    load_ms=0.1,
    sample_kib=1,
    step_ms=0.0,
    workers=2,
    start_method="fork",
)

TINY_ARGS = [
    "bench",
    "--train-size=20",
    "--eval-sizes",
    "6",
    "3",
    "--batch-size=4",
    "--eval-batch-size=4",
    "--updates=12",
    "--eval-every=5",
    "--load-ms=0.1",
    "--sample-kib=1",
    "--step-ms=0",
    "--memory-interval=0.05",
]


NAMES = [v.name for v in VARIANTS]


def skipping_the_last_batch(
    scenario: Scenario, data: Datasets, common: dict[str, Any], rec: Recorder
) -> None:
    """A variant that loses samples: the training batches only, without the very last one."""
    config = InterleavedSamplerConfig(batch_size=scenario.batch_size, max_updates=scenario.updates)
    sampler = InterleavedSampler(SequentialSampler(data.train), config)
    for batch in list(rec.fetch(sampler.get_data_loader(**common)))[:-1]:
        rec.consume(batch, 0.0)


def test_an_added_variant_gets_the_same_samples_check(monkeypatch: pytest.MonkeyPatch) -> None:
    lossy = Variant("lossy", skipping_the_last_batch, lambda s: 1, "tab:blue")
    monkeypatch.setattr(runner, "VARIANTS", (VARIANTS[0], lossy))  # what run_benchmark runs
    with pytest.raises(SampleMismatchError, match="lossy and interleaved consumed different"):
        run_benchmark(TINY, repeats=1, memory_interval_s=0.05, log=lambda line: None)


def test_scenario_counts() -> None:
    assert (TINY.updates_per_epoch, TINY.epochs_started, TINY.evaluations) == (5, 3, 2)
    assert TINY.samples_loaded == 12 * 4 + 2 * (6 + 3)
    assert TINY.worker_bound_s == pytest.approx(66 * 0.1 / 1000 / 2)
    default = Scenario()  # docs/performance.md's scenario: 400 updates of 32, 8 passes of 512
    assert default.samples_loaded == 16896
    assert default.worker_bound_s == pytest.approx(16.896)
    assert variant("per-dataset").startups(default) == (4 + 8) * 2
    assert TINY.samples_loaded_cached == 12 * 4 + 6 + 3  # each evaluation sample once
    assert default.samples_loaded_cached == 12800 + 512


def test_every_variant_consumes_the_schedule_with_the_expected_pools() -> None:
    lines: list[str] = []
    report = run_benchmark(TINY, repeats=2, memory_interval_s=0.05, log=lines.append)
    assert len(report.runs) == len(lines) == 8
    # alternating, the order rotated each round
    assert [run.variant for run in report.runs] == [*NAMES, *NAMES[1:], NAMES[0]]
    # one pool; a pool per epoch (3) and per pass (2 x 2); a pool per dataset (3); 2 workers each
    startups = {name: report.summary(name).startups for name in NAMES}
    assert startups == {
        "interleaved": 2,
        "interleaved + cache": 2,
        "per-dataset": 14,
        "persistent": 6,
    }
    assert all(variant(name).startups(TINY) == n for name, n in startups.items())
    for run in report.runs:
        assert 0 < run.wait_s < run.wall_s
        assert run.peak_pss > 0 and 0 < run.peak_uss <= run.peak_pss
        assert run.cpu_s > 0 and run.other_cores >= 0


def test_phases_are_the_interleaved_schedule() -> None:
    context = multiprocessing.get_context("fork")
    _, trace = run_once(variant("interleaved"), TINY, Datasets.of(TINY), context, 0.05)
    assert [source for source, _ in trace] == [0, 1, 2, 0, 1, 2, 0]
    assert [len(indices) for _, indices in trace] == [20, 6, 3, 20, 6, 3, 8]
    assert trace[1][1] == tuple(range(6)) and trace[2][1] == tuple(range(3))
    assert sorted(trace[0][1]) == list(range(20)) != list(trace[0][1])  # epoch 0, shuffled


def test_the_cached_variant_consumes_the_same_phases_from_its_cache() -> None:
    context = multiprocessing.get_context("fork")
    data = Datasets.of(TINY)
    plain, trace = run_once(variant("interleaved"), TINY, data, context, 0.05)
    cached, cached_trace = run_once(variant("interleaved + cache"), TINY, data, context, 0.05)
    assert cached_trace == trace
    assert plain.cache_bytes == 0
    # the 6 + 3 evaluation samples: ids (2 int64) and 1 KiB of float32 each
    assert cached.cache_bytes == 9 * (16 + 1024)


def test_cli_runs_only_the_variants_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    variants = ["--variants", "interleaved", "interleaved + cache"]
    assert main([*TINY_ARGS, "--start-method=fork", "--repeats=2", *variants]) == 0
    out = capsys.readouterr().out
    assert "| interleaved + cache |" in out and "| persistent |" not in out
    assert "| worker-bound limit |" in out and "| worker-bound limit with cache |" in out
    assert "wall interleaved / interleaved + cache" in out
    assert "wall interleaved + cache / worker-bound limit with cache" in out
    assert "per-dataset" not in out
    assert "2 runs per variant" in out
    assert "With the cache, 57 samples loaded per run; the cache held 0.0 MiB." in out


def test_a_difference_in_the_samples_fails_loudly() -> None:
    same = ((0, (3, 1, 2)), (1, (0, 1)))
    check_same_samples({"interleaved": same, "persistent": same})
    with pytest.raises(SampleMismatchError, match=r"persistent and interleaved.*phase 1"):
        check_same_samples({"interleaved": same, "persistent": ((0, (3, 1, 2)), (1, (1, 0)))})
    with pytest.raises(SampleMismatchError, match="1 and 2 phases, first difference in phase 1"):
        check_same_samples({"interleaved": same, "per-dataset": same[:1]})


def test_a_tag_that_disagrees_with_its_samples_fails_loudly() -> None:
    data = (torch.tensor([[1, 4], [1, 5]]), torch.zeros(2, 3))
    progress = TrainingProgress(0, 10, 320)
    check_tag(InterleavedBatch(data, "callback0", 1, progress, 2, 3, False, [4, 5], 2, 2))
    for source_index, indices in ((0, [4, 5]), (1, [5, 4])):
        wrong = InterleavedBatch(data, "x", source_index, progress, 2, 3, False, indices, 2, 2)
        with pytest.raises(SampleMismatchError, match="disagrees with its samples"):
            check_tag(wrong)


def test_tree_memory_includes_child_processes() -> None:
    me = psutil.Process()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child_pss = psutil.Process(child.pid).memory_full_info().pss
        pss, uss = tree_memory(me)
        assert pss > me.memory_full_info().pss + child_pss // 2
        assert 0 < uss < pss
    finally:
        child.kill()
        child.wait()


def test_cli_prints_the_table_and_writes_the_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart, results = tmp_path / "bench.png", tmp_path / "bench.json"
    args = ["--start-method=fork", "--repeats=1", f"--plot={chart}", f"--json={results}"]
    assert main([*TINY_ARGS, *args]) == 0
    out = capsys.readouterr().out
    for row in (*NAMES, "worker-bound limit"):
        assert f"| {row} |" in out
    assert "wall persistent / interleaved" in out and "peak PSS persistent / interleaved" in out
    assert chart.read_bytes().startswith(b"\x89PNG")
    written = json.loads(results.read_text())
    assert written["scenario"]["eval_sizes"] == [6, 3]
    assert sorted(run["variant"] for run in written["runs"]) == sorted(NAMES)
    assert {run["startups"] for run in written["runs"]} == {2, 14, 6}
    assert "wall per-dataset / interleaved" in written["ratios"]


@pytest.mark.parametrize("bad", ["--workers=0", "--load-ms=-1", "--load=disk", "--updates=x"])
def test_cli_rejects_invalid_settings(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*TINY_ARGS, bad])
    assert exit_info.value.code == 2
    assert bad.split("=")[0] in capsys.readouterr().err


@pytest.mark.slow
def test_spawned_workers_get_the_dataset_and_the_counter() -> None:
    scenario = Scenario(
        train_size=8,
        eval_sizes=(3,),
        batch_size=4,
        updates=2,
        eval_every=2,
        load_ms=0.1,
        load="sleep",
        sample_kib=1,
        step_ms=0.0,
        workers=1,
        start_method="spawn",
    )
    context = multiprocessing.get_context("spawn")
    result, trace = run_once(variant("interleaved"), scenario, Datasets.of(scenario), context, 0.05)
    assert result.startups == 1
    assert [source for source, _ in trace] == [0, 1]
    assert sorted(trace[0][1]) == list(range(8)) and trace[1][1] == (0, 1, 2)


class BatchOnlyDataset(Dataset[torch.Tensor]):
    """Loads whole batches only: item ``i`` of a batch of ``n`` is ``[base + i, n]``."""

    def __init__(self, size: int, base: int = 0) -> None:
        self.size, self.base = size, base

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        raise AssertionError("loaded item by item")

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return [torch.tensor([self.base + i, len(indices)]) for i in indices]


def test_workers_load_each_batch_with_one_getitems_call() -> None:
    train, validation = BatchOnlyDataset(10), BatchOnlyDataset(3, base=100)
    sampler = InterleavedSampler(
        SequentialSampler(train),
        InterleavedSamplerConfig(batch_size=4, max_updates=2),
        callback_samplers=[SamplerIntervalConfig(SequentialSampler(validation), every_n_updates=2)],
    )
    loader = sampler.get_data_loader(num_workers=2, multiprocessing_context="fork")
    assert [batch.tolist() for batch in loader] == [
        [[0, 4], [1, 4], [2, 4], [3, 4]],
        [[4, 4], [5, 4], [6, 4], [7, 4]],
        [[100, 3], [101, 3], [102, 3]],
    ]


class LockedDataset(Dataset[int]):
    """A dataset holding a multiprocessing lock (as one sharing a cache between workers)."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        with self.lock:
            return index


def test_locks_and_shared_values_pass_the_pickling_check_for_spawn() -> None:
    context = multiprocessing.get_context("spawn")
    sampler = InterleavedSampler(
        SequentialSampler(LockedDataset(context.Lock())),
        InterleavedSamplerConfig(batch_size=2, max_epochs=1),
    )
    args: dict[str, Any] = {"num_workers": 1, "multiprocessing_context": context}
    loader = sampler.get_data_loader(worker_init_fn=StartupCounter(context), **args)
    assert loader.num_workers == 1  # built: a worker start sends both, as torch allows
    with pytest.raises(TypeError, match="worker_init_fn"):
        sampler.get_data_loader(worker_init_fn=lambda worker_id: None, **args)


def test_cli_help_says_what_the_evaluation_batch_size_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--eval-batch-size EVAL_BATCH_SIZE evaluation batch size (default: 64)" in text
