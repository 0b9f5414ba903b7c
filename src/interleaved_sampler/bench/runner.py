"""Running the variants: each once and measured, then all of them in alternating rounds."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Collection
from multiprocessing.context import BaseContext

from interleaved_sampler.bench.measure import MIB, CpuSnapshot, MemoryPeak, StartupCounter
from interleaved_sampler.bench.report import BenchReport, RunResult
from interleaved_sampler.bench.samples import Phase, Recorder, check_same_samples
from interleaved_sampler.bench.scenario import Datasets, Scenario
from interleaved_sampler.bench.variants import VARIANTS, Variant, loader_args


def run_once(
    variant: Variant,
    scenario: Scenario,
    data: Datasets,
    context: BaseContext,
    memory_interval_s: float,
) -> tuple[RunResult, tuple[Phase, ...]]:
    """Run ``variant`` once and measure it.

    Args:
        variant: the variant.
        scenario: the run.
        data: its datasets.
        context: the multiprocessing context of the workers.
        memory_interval_s: seconds between memory samples.

    Returns:
        The measurements and the samples the loop consumed, per phase.
    """
    counter = StartupCounter(context)
    common = loader_args(scenario, context, counter)
    recorder = Recorder()
    with MemoryPeak(memory_interval_s) as memory:
        cpu = CpuSnapshot.now()
        start = time.perf_counter()
        variant.run(scenario, data, common, recorder)
        wall_s = time.perf_counter() - start  # the pools of the run are shut down by now
        cpu_end = CpuSnapshot.now()
    result = RunResult(
        variant.name,
        wall_s,
        recorder.wait_s,
        counter.count,
        memory.peak_pss,
        memory.peak_uss,
        cpu_end.tree_s - cpu.tree_s,
        cpu_end.other_cores(cpu, wall_s),
        recorder.cache_bytes,
    )
    return result, recorder.trace()


def run_benchmark(
    scenario: Scenario,
    repeats: int,
    memory_interval_s: float = 1.0,
    log: Callable[[str], None] = print,
    variants: Collection[str] | None = None,
) -> BenchReport:
    """Run the variants ``repeats`` times, alternating, rotating the order each round.

    Args:
        scenario: the run.
        repeats: rounds; each runs every variant once.
        memory_interval_s: seconds between memory samples.
        log: receives a line per finished run.
        variants: the names of the variants to run (None: all of :data:`VARIANTS`); they
            run in the order of :data:`VARIANTS`.

    Raises:
        SampleMismatchError: if the variants did not consume exactly the same samples.
    """
    context = multiprocessing.get_context(scenario.start_method)
    data = Datasets.of(scenario)
    runs: list[RunResult] = []
    traces: dict[str, tuple[Phase, ...]] = {}
    order = [v for v in VARIANTS if variants is None or v.name in variants]
    width = max(len(v.name) for v in order)
    for round_ in range(repeats):
        shift = round_ % len(order)
        for variant in order[shift:] + order[:shift]:
            result, traces[variant.name] = run_once(
                variant, scenario, data, context, memory_interval_s
            )
            check_same_samples(traces)
            runs.append(result)
            cache = f"  cache {result.cache_bytes / MIB:.1f} MiB" if result.cache_bytes else ""
            log(
                f"round {round_ + 1}/{repeats}  {variant.name:<{width}} "
                f"wall {result.wall_s:6.2f} s  "
                f"waiting {result.wait_s:6.2f} s  {result.startups:3d} worker start-ups  "
                f"peak PSS {result.peak_pss / MIB:6.0f} MiB  "
                f"other processes busy {result.other_cores:4.2f} cores{cache}"
            )
    return BenchReport(scenario, tuple(runs))
