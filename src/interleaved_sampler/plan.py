"""``plan``: when each callback fires, batches per pass and totals, without loading any data.

A run is described by numbers only (:class:`RunPlan`): the main sampler's length, the
configuration fields and, per callback, its length and its fields; only the pure
:class:`~interleaved_sampler.schedule.Schedule` is used. The command reads it from a file
(see :data:`DESCRIPTION` for the format) or from flags.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from interleaved_sampler.config import (
    INTERVAL_FIELDS,
    START_FIELDS,
    STOP_FIELDS,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    source_names,
)
from interleaved_sampler.extras import require
from interleaved_sampler.schedule import Schedule
from interleaved_sampler.sharding import check_sharding
from interleaved_sampler.timeline import plot_timeline, segments

CALLBACK_KEYS = ("name", "length", *INTERVAL_FIELDS, "at_updates", "batch_size", "cache")
STREAM = "stream"  # the main length of a run whose training source is a Stream
# RunPlan fields that flags can set
FLAG_FIELDS = (
    "length",
    "batch_size",
    "drop_last",
    *STOP_FIELDS,
    *START_FIELDS,
    "evaluation",
    "callbacks",
    "num_replicas",
)


@dataclass(frozen=True)
class RunPlan:
    """A run described by numbers only: no sampler, no dataset.

    Args:
        length: number of indices the main sampler yields per epoch (``None``: the
            training source is a stream, ``length: stream`` in a file).
        config: the main sampler's configuration.
        callbacks: one configuration per callback; its ``sampler`` is a ``range`` of the
            callback's length.

    Example:
        >>> plan = RunPlan.from_dict({"length": 10, "batch_size": 4, "max_epochs": 2,
        ...     "callbacks": [{"length": 5, "every_n_epochs": 1}]})
        >>> plan.names, plan.schedule().num_batches  # 2 x (2 updates + a pass of 2 batches)
        (['train', 'callback0'], 8)
    """

    length: int | None
    config: InterleavedSamplerConfig
    callbacks: tuple[SamplerIntervalConfig, ...]
    num_replicas: int = 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunPlan:
        """Build the plan from a mapping like the module's example file.

        Raises:
            ValueError: a length is missing or not a non-negative integer (callbacks: >= 1;
                the main one may be ``"stream"``), or a configuration field is invalid or
                unknown (one line naming it, e.g. ``callbacks[0].every_n_epochs: must be a
                positive integer ...``).
        """
        fields = dict(data)
        length = fields.pop("length", None)
        length = None if length == STREAM else _length(length, "length", minimum=0)
        replicas = _length(fields.pop("num_replicas", 1), "num_replicas", minimum=1)
        callbacks = []
        for i, entry in enumerate(fields.pop("callbacks", None) or []):
            spec = dict(entry)
            size = _length(spec.pop("length", None), f"callbacks[{i}].length", minimum=1)
            try:
                callbacks.append(SamplerIntervalConfig(sampler=range(size), **spec))
            except ValidationError as error:
                raise ValueError(_one_line(error, f"callbacks[{i}]")) from None
        try:
            config = InterleavedSamplerConfig(**fields)
        except ValidationError as error:
            raise ValueError(_one_line(error)) from None
        return cls(length, config, tuple(callbacks), replicas)

    @property
    def names(self) -> list[str]:
        """The name of each source: ``"train"``, then each callback's (``"callback{i}"``)."""
        return source_names([c.name for c in self.callbacks])

    def schedule(self) -> Schedule:
        """The run's schedule, as :class:`~interleaved_sampler.InterleavedSampler` makes it.

        Raises:
            ValueError: the run is invalid, or cannot be split over ``num_replicas`` ranks.
        """
        callbacks = [(c, len(c.sampler)) for c in self.callbacks]
        schedule = Schedule.for_configs(self.config, self.length, callbacks)
        if self.num_replicas > 1:
            own = [c.batch_size is not None for c in self.callbacks]
            check_sharding(schedule, self.names, own, self.num_replicas)
        return schedule

    def per_rank(self, batch_size: int) -> str:
        """A global batch size, with what each rank loads of it when the run is split."""
        if self.num_replicas == 1:
            return str(batch_size)
        return f"{batch_size} ({-(-batch_size // self.num_replicas)}/rank)"


def _one_line(error: ValidationError, where: str | None = None) -> str:
    """pydantic's errors of one configuration as one line, each ``field: message``.

    Example:
        >>> try:
        ...     SamplerIntervalConfig(range(3), every_n_epochs=0)
        ... except ValidationError as error:
        ...     print(_one_line(error, "callbacks[0]"))
        callbacks[0].every_n_epochs: must be a positive integer (>= 1) or None, got 0
    """
    lines = []
    for each in error.errors():
        field = ".".join(map(str, [*([where] if where else []), *each["loc"]]))
        message = each["msg"].removeprefix("Value error, ")
        lines.append(f"{field}: {message}" if field else message)
    return "; ".join(lines)


def _length(value: Any, field: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        stream = f" or {STREAM!r} (a Stream training source)" if field == "length" else ""
        raise ValueError(
            f"{field} must be an integer >= {minimum} (a sampler's length){stream}, got {value!r}"
        )
    return value


def _main_length(text: str) -> int | str:
    """The ``--length`` flag: an integer, or ``stream``."""
    if text == STREAM:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or {STREAM!r}") from None


def describe(plan: RunPlan, max_firings: int) -> str:
    """The plan as text: the epoch structure, one row per callback, totals and the firings."""
    schedule = plan.schedule()
    return "\n".join([*_summary(plan, schedule), "", *_firings(plan, schedule, max_firings)])


def _summary(plan: RunPlan, schedule: Schedule) -> list[str]:
    structure, names = schedule.structure, plan.names
    lines = [
        f"main: {structure.sampler_len} indices per epoch, batch_size "
        f"{plan.per_rank(structure.batch_size)}, drop_last {structure.drop_last}: "
        f"{structure.updates_per_epoch} updates of {structure.samples_per_epoch} samples per "
        "epoch"
    ]
    if structure.stream:
        lines = [
            f"main: a stream (no epochs), batch_size {plan.per_rank(structure.batch_size)}, "
            "every batch full"
        ]
    if plan.num_replicas > 1:
        lines.append(
            f"split over {plan.num_replicas} ranks: every count below is the global run's; each "
            "rank loads its part of every batch"
        )
    if schedule.evaluation:
        lines.append("evaluation run: one pass over each callback, no training")
    else:
        start, end = schedule.start, structure.progress_at(schedule.end_update)
        lines.append(
            f"training: from epoch {start.epoch}, update {start.update}, sample {start.sample} "
            f"to epoch {end.epoch}, update {end.update}, sample {end.sample}: "
            f"{schedule.train_batches} batches"
        )
    cached = any(cfg.cache for cfg in plan.callbacks)
    header = ("callback", "length", "batch_size", "batches/pass", "when", "passes", "batches")
    rows: list[tuple[str, ...]] = [(*header, "from memory") if cached else header]
    served = served_batches = 0
    for i, (callback, cfg) in enumerate(zip(schedule.callbacks, plan.callbacks, strict=True)):
        passes = schedule.passes(i)
        when = f"{callback.rule.field} = {callback.rule.setting}"
        if cfg.at_updates is not None:  # the updates themselves, not the rule's digest
            first = ", ".join(map(str, cfg.at_updates[:4]))
            more = f", ... ({len(cfg.at_updates)} updates)" if len(cfg.at_updates) > 4 else ""
            when = f"at_updates = [{first}{more}]"
        row: tuple[str, ...] = (
            names[i + 1],
            str(callback.pass_len),
            plan.per_rank(callback.batch_size),
            str(callback.batches_per_pass),
            when,
            str(passes),
            str(passes * callback.batches_per_pass),
        )
        if cached:  # in one iteration of the loader, every pass but the first
            from_memory = max(passes - 1, 0) if cfg.cache else 0
            served += from_memory
            served_batches += from_memory * callback.batches_per_pass
            row = (*row, str(from_memory) if cfg.cache else "-")
        rows.append(row)
    callback_batches = schedule.num_batches - schedule.train_batches
    noun = "pass" if served == 1 else "passes"
    note = f", of which {served_batches} ({served} {noun}) served from memory"
    return [
        *lines,
        *(_columns(rows) if plan.callbacks else ["no callbacks"]),
        f"total: {schedule.num_batches} batches = {schedule.train_batches} training + "
        f"{callback_batches} callback{note if cached else ''}",
    ]


def _firings(plan: RunPlan, schedule: Schedule, max_firings: int) -> list[str]:
    names, title = plan.names, "passes (after the training work of epoch/update/sample):"
    rows: list[tuple[str, ...]] = [("at batch", "callback", "epoch", "update", "sample", "batches")]
    passes = (segment for segment in segments(schedule) if segment.source_index)
    for segment in islice(passes, max_firings):
        p = segment.progress
        rows.append(
            tuple(
                map(
                    str,
                    (
                        segment.start,
                        names[segment.source_index],
                        p.epoch,
                        p.update,
                        p.sample,
                        segment.batches,
                    ),
                )
            )
        )
    more = sum(schedule.passes(i) for i in range(len(schedule.callbacks))) - (len(rows) - 1)
    return [title, *_columns(rows), *([f"... {more} more passes"] if more else [])]


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned text columns: numbers (and ``-``) to the right, text to the left."""
    columns = list(zip(*rows, strict=True))
    widths = [max(map(len, column)) for column in columns]
    numeric = [all(cell.isdigit() or cell == "-" for cell in column[1:]) for column in columns]
    return [
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in rows
    ]


class ConfigFileError(ValueError):
    """The ``--config`` file cannot be read, is not valid YAML/JSON, or holds no mapping."""


def load_file(path: Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``, needs pyyaml) or JSON configuration file.

    Raises:
        MissingExtraError: a YAML file and no pyyaml.
        ConfigFileError: the file cannot be read or parsed, or does not hold a mapping (one
            line naming the file).
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigFileError(f"cannot read the --config file {path}: {reason}") from None
    errors: type[Exception]
    if path.suffix in (".yaml", ".yml"):
        yaml = require("yaml", "reading YAML files")
        kind, parse, errors = "YAML", yaml.safe_load, yaml.YAMLError
    else:
        kind, parse, errors = "JSON", json.loads, json.JSONDecodeError
    try:
        data = parse(text)
    except errors as error:
        # YAML's: the problem and where the parser stopped (its str() spans several lines)
        problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
        reason = f"{problem} at line {mark.line + 1}" if problem and mark else str(error)
        raise ConfigFileError(f"the --config file {path} is not valid {kind}: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"the --config file {path} holds no mapping of configuration fields, got "
            f"{type(data).__name__}"
        )
    return data


def parse_callback(text: str) -> dict[str, Any]:
    """``"name=val,length=300,every_n_updates=25"`` as a mapping (numbers as ``int``,
    ``cache=true|false`` as ``bool``, ``at_updates=[500,1000]`` as a list of ``int``: a
    list in brackets, as in a YAML file).

    Example:
        >>> parse_callback("name=val,length=300,at_updates=[25, 50],cache=true")
        {'name': 'val', 'length': 300, 'at_updates': [25, 50], 'cache': True}
    """
    spec: dict[str, Any] = {}
    for item in re.split(r",(?![^\[]*\])", text):  # the commas outside brackets
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in CALLBACK_KEYS:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected key=value with key in {', '.join(CALLBACK_KEYS)}"
            )
        key, value = key.strip(), value.strip()
        if key == "name":
            spec[key] = value
        elif key == "cache":
            spec[key] = _flag(value, key)
        elif key == "at_updates":
            spec[key] = _integers(value, key)
        else:
            spec[key] = _integer(value, key)
    return spec


def _flag(value: str, key: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"{key}={value!r} is not true, false, 1 or 0")
    return value.lower() in ("true", "1")


def _integers(value: str, key: str) -> list[int]:
    if not (value.startswith("[") and value.endswith("]")):
        raise argparse.ArgumentTypeError(
            f"{key}={value!r} is not a list: write the updates in brackets, e.g. "
            f"{key}=[500,1000] (a list, as in a YAML file)"
        )
    inner = value[1:-1].strip()
    return [_integer(each.strip(), key) for each in inner.split(",")] if inner else []


def _integer(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key}={value!r} is not an integer") from None


DESCRIPTION = """\
Print when each callback fires, its batches per pass and the totals of a run, without loading
any data. The run is given by numbers: the main sampler's length, the fields of
InterleavedSamplerConfig and, per callback, its length and the fields of SamplerIntervalConfig.
They come from a YAML or JSON file (--config), from flags, or both (flags win); a run needs
length, batch_size and one of max_epochs, max_updates, max_samples. --plot FILE.png draws the
run's timeline (needs matplotlib: the plot extra). Example file:

    length: 1000          # indices the main sampler yields per epoch ('stream': a Stream)
    batch_size: 64
    drop_last: false
    max_epochs: 4
    num_replicas: 2       # optional: ranks the global run is split over (default 1)
    callbacks:
      - {name: validation, length: 300, every_n_updates: 25, batch_size: 100}
      - {name: test, length: 500, every_n_epochs: 2, batch_size: 128}
      - {name: probe, length: 50, at_updates: [10, 40]}

The same with flags:

    plan --length 1000 --batch-size 64 --no-drop-last --max-epochs 4 --num-replicas 2 \\
      --callback name=validation,length=300,every_n_updates=25,batch_size=100 \\
      --callback name=test,length=500,every_n_epochs=2,batch_size=128 \\
      --callback "name=probe,length=50,at_updates=[10,40]"
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``plan`` command.

    Args:
        subparsers: the ``add_subparsers()`` object of the main parser.
    """
    parser = subparsers.add_parser(
        "plan",
        help="print when each callback fires, batches per pass and totals (loads no data); "
        "--plot draws the timeline",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML or JSON file with the run (see above)"
    )
    parser.add_argument(
        "--length",
        type=_main_length,
        help="indices the main sampler yields per epoch, or 'stream' (a Stream: no epochs)",
    )
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--drop-last", action=argparse.BooleanOptionalAction, default=None)
    for field in (*STOP_FIELDS, *START_FIELDS):
        parser.add_argument("--" + field.replace("_", "-"), type=int, dest=field)
    parser.add_argument("--evaluation", action="store_true", default=None)
    parser.add_argument(
        "--num-replicas",
        type=int,
        help="ranks the global run is split over (batch sizes are global)",
    )
    parser.add_argument(
        "--callback",
        type=parse_callback,
        action="append",
        dest="callbacks",
        metavar="KEY=VALUE,...",
        help=f"a callback (repeatable; replaces the file's), keys: {', '.join(CALLBACK_KEYS)}; "
        "at_updates is a list in brackets, as in the file: at_updates=[500,1000]",
    )
    parser.add_argument("--max-passes", type=int, default=50, help="list at most this many passes")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw the run's timeline into this PNG file (needs matplotlib: the plot extra)",
    )
    parser.set_defaults(func=run)


def plan_from_args(args: argparse.Namespace) -> RunPlan:
    """The file's fields (``--config``), overridden by every flag given.

    Raises:
        ConfigFileError: the ``--config`` file cannot be read or parsed.
        ValueError: the run is incomplete (the message names the flags to pass) or invalid.
        MissingExtraError: a YAML file and no pyyaml.
    """
    data = load_file(args.config) if args.config else {}
    data.update({f: getattr(args, f) for f in FLAG_FIELDS if getattr(args, f) is not None})
    _check_complete(data, from_file=bool(args.config))
    plan = RunPlan.from_dict(data)
    plan.schedule()
    return plan


def _check_complete(data: Mapping[str, Any], from_file: bool) -> None:
    """Raise a ``ValueError`` naming the flags of what a run needs and ``data`` lacks: the
    length, the batch size and a stop limit."""
    missing = [
        (field, f"--{field.replace('_', '-')} N")
        for field in ("length", "batch_size")
        if data.get(field) is None
    ]
    if all(data.get(field) is None for field in STOP_FIELDS):
        missing.append(("a stop limit", "--max-epochs N (or --max-updates, --max-samples)"))
    if missing:
        where = "put them in the --config file" if from_file else "--config FILE with them"
        raise ValueError(
            f"missing {', '.join(field for field, _ in missing)}: pass "
            f"{' '.join(flag for _, flag in missing)}, or {where} (plan --help shows an example)"
        )


def run(args: argparse.Namespace) -> int:
    """The ``plan`` command: print the plan, optionally draw it."""
    try:
        plan = plan_from_args(args)
    except ConfigFileError as error:
        raise SystemExit(f"plan: {error}") from None
    except ValueError as error:
        raise SystemExit(f"plan: invalid run: {error}") from None
    print(describe(plan, args.max_passes))
    if args.plot:
        plot_timeline(plan.schedule(), plan.names, args.plot)
        print(f"timeline: {args.plot}")
    return 0
