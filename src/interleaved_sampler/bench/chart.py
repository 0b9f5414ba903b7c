"""The benchmark's chart: wall time (with the limits) and peak memory of each variant."""

from __future__ import annotations

import itertools
from pathlib import Path

from interleaved_sampler.bench.measure import MIB
from interleaved_sampler.bench.report import BenchReport
from interleaved_sampler.extras import require


def plot(report: BenchReport, path: Path) -> None:
    """Write a bar chart of wall time (with the limit) and peak memory to ``path`` (PNG).

    Args:
        report: the benchmark's results.
        path: where to write the chart.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    figure_class = require("matplotlib.figure", "the benchmark's chart").Figure
    names = [variant.name for variant in report.variants]
    colors = [variant.color for variant in report.variants]
    summaries = [report.summary(name) for name in names]
    figure = figure_class(figsize=(11, 4), layout="tight")
    wall, memory = figure.subplots(1, 2)
    walls = [s.wall_s for s in summaries]
    spread = [
        [s.wall_s - s.wall_min_s for s in summaries],
        [s.wall_max_s - s.wall_s for s in summaries],
    ]
    wall.bar(names, walls, yerr=spread, capsize=4, color=colors)
    wall.bar(
        names,
        [s.wait_s for s in summaries],
        color="none",
        hatch="//",
        edgecolor="black",
        label="waiting for data",
    )
    for limit, style in zip(report.limits, itertools.cycle(("--", ":", "-.")), strict=False):
        wall.axhline(
            limit.seconds(report.scenario), color="black", linestyle=style, label=limit.name
        )
    wall.set_ylabel("wall time (s)")
    wall.set_ylim(top=1.3 * max(s.wall_max_s for s in summaries))  # room for the legend
    wall.legend(loc="upper left")
    memory.bar(names, [s.peak_pss / MIB for s in summaries], color=colors)
    memory.set_ylabel("peak PSS of process tree (MiB)")
    figure.suptitle("training with periodic evaluation: one loader vs one per dataset")
    figure.savefig(path, dpi=100)
