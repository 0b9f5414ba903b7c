"""The ``bench`` command: its options, and the run that prints (and writes) the report."""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interleaved_sampler.bench.chart import plot
from interleaved_sampler.bench.measure import require_psutil
from interleaved_sampler.bench.report import format_report
from interleaved_sampler.bench.runner import run_benchmark
from interleaved_sampler.bench.scenario import LOADS, START_METHODS, Scenario
from interleaved_sampler.bench.variants import VARIANTS
from interleaved_sampler.extras import require

DESCRIPTION = """\
Time a training run with periodic evaluation on synthetic, worker-bound data, loaded four ways
in one process, alternating and repeated: through one interleaved DataLoader (one worker pool
for the whole run), the same with the evaluation cache (each evaluation sample loaded once,
later passes served from memory), through one DataLoader per dataset (a new pool for every
epoch and every evaluation pass) and through one DataLoader per dataset with persistent workers
(one pool per dataset); --variants runs some of them. It prints wall time, time spent waiting
for data, worker start-ups, peak memory (PSS of the process tree) and CPU time per variant, and
the ratios; it fails unless every variant consumed exactly the same samples. Loading a sample
costs --load-ms of CPU time in a worker (--load sleep: of waiting, like I/O); the model step is
a sleep of --step-ms per batch.

Needs psutil (and matplotlib for --plot): the extra 'bench'.
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``bench`` command.

    Args:
        subparsers: the ``add_subparsers()`` object of the main parser.
    """
    d = Scenario()
    parser = subparsers.add_parser(
        "bench",
        help="one interleaved DataLoader vs one DataLoader per dataset, end to end",
        description=DESCRIPTION,
        formatter_class=_HelpFormatter,
    )
    add = parser.add_argument
    add("--train-size", type=_positive(int), default=d.train_size, help="training samples")
    add("--eval-sizes", type=_positive(int), nargs="+", default=list(d.eval_sizes),
        help="samples of each evaluation dataset")  # fmt: skip
    add("--batch-size", type=_positive(int), default=d.batch_size, help="training batch size")
    add("--eval-batch-size", type=_positive(int), default=d.eval_batch_size,
        help="evaluation batch size")  # fmt: skip
    add("--updates", type=_positive(int), default=d.updates, help="training updates of the run")
    add("--eval-every", type=_positive(int), default=d.eval_every, help="updates between passes")
    add("--load-ms", type=_positive(float), default=d.load_ms, help="loading cost per sample")
    add("--load", choices=LOADS, default=d.load, help="CPU work or sleep (I/O-like)")
    add("--sample-kib", type=_positive(int), default=d.sample_kib, help="payload per sample")
    add("--step-ms", type=_non_negative(float), default=d.step_ms, help="simulated model step")
    add("--workers", type=_positive(int), default=d.workers, help="per DataLoader")
    add("--start-method", choices=START_METHODS, default=d.start_method, help="of the workers")
    add("--prefetch-factor", type=_positive(int), default=d.prefetch_factor, help="per worker")
    add("--seed", type=_non_negative(int), default=d.seed, help="of the training sampler")
    add("--repeats", type=_positive(int), default=2, help="rounds; each runs every variant")
    names = [v.name for v in VARIANTS]
    add("--variants", choices=names, nargs="+", metavar="VARIANT",
        help=f"run only these: {', '.join(map(shlex.quote, names))} (default: all)")  # fmt: skip
    add("--memory-interval", type=_positive(float), default=1.0, help="seconds between samples")
    add("--plot", type=Path, help="write a bar chart (PNG) here")
    add("--json", type=Path, help="write the scenario, every run and the ratios here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``bench`` command: run the comparison, print the table, optionally plot it."""
    scenario = Scenario(
        train_size=args.train_size,
        eval_sizes=tuple(args.eval_sizes),
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        updates=args.updates,
        eval_every=args.eval_every,
        load_ms=args.load_ms,
        load=args.load,
        sample_kib=args.sample_kib,
        step_ms=args.step_ms,
        workers=args.workers,
        start_method=args.start_method,
        prefetch_factor=args.prefetch_factor,
        seed=args.seed,
    )
    if scenario.train_size < scenario.batch_size:
        raise SystemExit(f"--train-size {scenario.train_size} < --batch-size {scenario.batch_size}")
    require_psutil()  # fail in one line before the run, not after it
    if args.plot:
        require("matplotlib.figure", "--plot")
    report = run_benchmark(
        scenario,
        args.repeats,
        args.memory_interval,
        log=lambda line: print(line, flush=True),
        variants=args.variants,
    )
    print(format_report(report))
    if args.plot:
        plot(report, args.plot)
        print(f"chart written to {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=1))
        print(f"results written to {args.json}")
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and the default of every option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    return _at_least(kind, 0, strict=True)


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    return _at_least(kind, 0, strict=False)


def _at_least(kind: Callable[[str], Any], bound: float, strict: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < bound or (strict and value == bound):
            relation = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {relation} {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__ if hasattr(kind, "__name__") else "value"
    return parse
