"""``bench``: one interleaved DataLoader against one DataLoader per dataset, end to end.

Needs the optional extra ``bench`` (psutil for the measurements, matplotlib for the chart);
``import interleaved_sampler`` never imports this package, and importing it imports neither.

A training run with periodic evaluation over synthetic, worker-bound datasets, run several ways
(the :data:`~interleaved_sampler.bench.variants.VARIANTS`) in one process, alternating and
repeated:

- ``interleaved``: this library: one (tagged) DataLoader, one worker pool for the whole run;
- ``interleaved + cache``: the same with the evaluation cache (``cache=True``): each
  evaluation sample is loaded once, later passes are served from memory;
- ``per-dataset``: one DataLoader per dataset without persistent workers: a fresh pool for
  every training epoch and for every evaluation pass;
- ``persistent``: one DataLoader per dataset with ``persistent_workers=True``: one pool per
  dataset, each alive for the whole run.

One concern per module:

- :mod:`~interleaved_sampler.bench.scenario`: the run (:class:`Scenario`) and its datasets;
- :mod:`~interleaved_sampler.bench.measure`: worker start-ups, memory and CPU time of the
  process tree;
- :mod:`~interleaved_sampler.bench.samples`: what a loop consumed, and the checks that every
  variant consumed the same samples;
- :mod:`~interleaved_sampler.bench.variants`: the variants and their training loops;
- :mod:`~interleaved_sampler.bench.runner`: running them, measured, in alternating rounds;
- :mod:`~interleaved_sampler.bench.report`: the results, their ratios and the Markdown table;
- :mod:`~interleaved_sampler.bench.chart`: the bar chart;
- :mod:`~interleaved_sampler.bench.cli`: the command line.

Example:
    >>> from interleaved_sampler.bench import Scenario
    >>> Scenario(updates=100, eval_every=50).evaluations
    2
"""

from __future__ import annotations

from interleaved_sampler.bench.cli import add_parser, run
from interleaved_sampler.bench.report import BenchReport, RunResult, Summary, format_report
from interleaved_sampler.bench.runner import run_benchmark, run_once
from interleaved_sampler.bench.samples import SampleMismatchError
from interleaved_sampler.bench.scenario import Datasets, Scenario, SyntheticDataset
from interleaved_sampler.bench.variants import VARIANTS, Variant, variant

__all__ = [
    "VARIANTS",
    "BenchReport",
    "Datasets",
    "RunResult",
    "SampleMismatchError",
    "Scenario",
    "Summary",
    "SyntheticDataset",
    "Variant",
    "add_parser",
    "format_report",
    "run",
    "run_benchmark",
    "run_once",
    "variant",
]
