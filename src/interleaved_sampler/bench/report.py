"""The results of a benchmark: each run's measurements, their summaries and ratios, and the
Markdown report."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from interleaved_sampler.bench.measure import MIB
from interleaved_sampler.bench.scenario import Scenario
from interleaved_sampler.bench.variants import RATIOS, VARIANTS, WORKER_BOUND, Limit, Variant


@dataclass(frozen=True)
class RunResult:
    """The measurements of one run of one variant.

    Args:
        variant: the name of a :class:`Variant`.
        wall_s: wall time of the whole run (building the loaders to shutting the last pool).
        wait_s: time the loop spent waiting for data (in a loader's ``iter()``/``next()``).
        startups: worker processes started.
        peak_pss: peak of the summed PSS of the process tree, in bytes.
        peak_uss: peak of the summed USS of the process tree, in bytes.
        cpu_s: CPU time of this process and its exited children (the workers, except with
            ``forkserver``) during the run: the loading work plus every overhead.
        other_cores: CPU cores that other processes of the machine kept busy on average
            during the run: the noise a figure carries.
        cache_bytes: the most bytes the evaluation cache held (the loader's
            ``cache_bytes``; 0 without the cache).
    """

    variant: str
    wall_s: float
    wait_s: float
    startups: int
    peak_pss: int
    peak_uss: int
    cpu_s: float
    other_cores: float
    cache_bytes: int = 0


@dataclass(frozen=True)
class Summary:
    """The medians (and the spread of the wall time) of one variant's runs.

    Args:
        variant: the name of a :class:`Variant`.
        runs: how many runs it summarises.
        wall_s: the median wall time.
        wall_min_s: the shortest wall time.
        wall_max_s: the longest wall time.
        wait_s, startups, peak_pss, peak_uss, cpu_s, other_cores: medians of the
            :class:`RunResult` fields of the same names (``startups``: the largest).
    """

    variant: str
    runs: int
    wall_s: float
    wall_min_s: float
    wall_max_s: float
    wait_s: float
    startups: int
    peak_pss: int
    peak_uss: int
    cpu_s: float
    other_cores: float

    @classmethod
    def of(cls, variant: str, runs: Sequence[RunResult]) -> Summary:
        """Summarise the runs of ``variant``.

        Args:
            variant: the variant.
            runs: its runs (at least one).
        """
        walls = [run.wall_s for run in runs]
        return cls(
            variant=variant,
            runs=len(runs),
            wall_s=statistics.median(walls),
            wall_min_s=min(walls),
            wall_max_s=max(walls),
            wait_s=statistics.median(run.wait_s for run in runs),
            startups=max(run.startups for run in runs),
            peak_pss=int(statistics.median(run.peak_pss for run in runs)),
            peak_uss=int(statistics.median(run.peak_uss for run in runs)),
            cpu_s=statistics.median(run.cpu_s for run in runs),
            other_cores=statistics.median(run.other_cores for run in runs),
        )


@dataclass(frozen=True)
class BenchReport:
    """All runs of a benchmark, in the order they ran.

    Args:
        scenario: the benchmarked run.
        runs: every run of every variant.
    """

    scenario: Scenario
    runs: tuple[RunResult, ...]

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The variants that ran, in the order of :data:`VARIANTS`."""
        ran = {run.variant for run in self.runs}
        return tuple(v for v in VARIANTS if v.name in ran)

    @property
    def limits(self) -> tuple[Limit, ...]:
        """The scenario's worker-bound limit, then those of the variants that ran."""
        limits = [WORKER_BOUND, *(v.limit for v in self.variants if v.limit is not None)]
        return tuple(dict.fromkeys(limits))

    def summary(self, variant: str) -> Summary:
        """The summary of ``variant``'s runs."""
        return Summary.of(variant, [run for run in self.runs if run.variant == variant])

    def to_json(self) -> dict[str, Any]:
        """The scenario, every run and the ratios, as JSON-compatible data."""
        return {
            "scenario": asdict(self.scenario),
            "worker_bound_s": self.scenario.worker_bound_s,
            "runs": [asdict(run) for run in self.runs],
            "ratios": self.ratios(),
        }

    def rounds(self) -> list[dict[str, RunResult]]:
        """The runs by round: each round ran every variant once."""
        size = len(self.variants)
        chunks = (self.runs[i : i + size] for i in range(0, len(self.runs), size))
        return [{run.variant: run for run in chunk} for chunk in chunks]

    def ratios(self) -> dict[str, tuple[float, float, float]]:
        """Ratios of the :data:`RATIOS` pairs that both ran (> 1: the second wins) and of the
        variants that have a limit to it (> 1: above it): of the medians, and the lowest and
        highest of the rounds' ratios."""
        ran = {v.name for v in self.variants}
        ratios = {
            f"{metric} {slower} / {faster}": (
                getattr(self.summary(slower), attribute) / getattr(self.summary(faster), attribute),
                [
                    getattr(r[slower], attribute) / getattr(r[faster], attribute)
                    for r in self.rounds()
                ],
            )
            for metric, attribute in (("wall", "wall_s"), ("peak PSS", "peak_pss"))
            for slower, faster in RATIOS
            if slower in ran and faster in ran
        }
        for v in self.variants:
            if v.limit is not None:
                limit = v.limit.seconds(self.scenario)
                ratios[f"wall {v.name} / {v.limit.name}"] = (
                    self.summary(v.name).wall_s / limit,
                    [r[v.name].wall_s / limit for r in self.rounds()],
                )
        return {name: (value, min(each), max(each)) for name, (value, each) in ratios.items()}


def format_report(report: BenchReport) -> str:
    """The report as a table, the ratios and the scenario, in Markdown."""
    scenario = report.scenario
    lines = [
        "| variant | wall s (median; min-max) | waiting for data s | worker start-ups "
        "| peak PSS MiB | peak USS MiB | CPU s | other processes busy (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in report.variants:
        s = report.summary(variant.name)
        lines.append(
            f"| {variant.name} | {s.wall_s:.2f} ({s.wall_min_s:.2f}-{s.wall_max_s:.2f}) "
            f"| {s.wait_s:.2f} | {s.startups} | {s.peak_pss / MIB:.0f} | {s.peak_uss / MIB:.0f} "
            f"| {s.cpu_s:.1f} | {s.other_cores:.2f} |"
        )
    for limit in report.limits:
        seconds = limit.seconds(scenario)
        lines.append(
            f"| {limit.name} | {seconds:.2f} | | | | | {seconds * scenario.workers:.1f} | |"
        )
    lines.append("\nRatios of the medians (in brackets: lowest and highest of the rounds):\n")
    lines.extend(
        f"- {name}: {value:.2f} ({low:.2f}-{high:.2f})"
        for name, (value, low, high) in report.ratios().items()
    )
    lines.append(
        f"\n{len(report.rounds())} runs per variant. {scenario.samples_loaded} "
        f"samples loaded per run ({scenario.updates} updates of {scenario.batch_size}, "
        f"{scenario.evaluations} evaluations of {list(scenario.eval_sizes)} in batches of "
        f"{scenario.eval_batch_size}), {scenario.load_ms} ms {scenario.load} each, "
        f"{scenario.workers} workers ({scenario.start_method})."
    )
    held = max(run.cache_bytes for run in report.runs)
    if held:
        lines.append(
            f"With the cache, {scenario.samples_loaded_cached} samples loaded per run; the "
            f"cache held {held / MIB:.1f} MiB."
        )
    return "\n".join(lines)
