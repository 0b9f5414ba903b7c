"""A schedule as a timeline: the loader's batches in order, grouped into training stretches
and callback passes, and a picture of it.

The picture needs matplotlib (the optional extra ``plot``); it is imported only when a picture
is drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from interleaved_sampler.extras import require
from interleaved_sampler.schedule import Schedule, TrainingProgress, TrainingSpan


@dataclass(frozen=True)
class Segment:
    """A stretch of consecutive batches of the loader from one source.

    Args:
        source_index: 0 for training, ``i + 1`` for callback ``i``.
        start: position of the first batch in the loader.
        batches: number of batches.
        progress: training work done at its start (for a pass: at the update that fired it).
    """

    source_index: int
    start: int
    batches: int
    progress: TrainingProgress


def segments(schedule: Schedule) -> Iterator[Segment]:
    """The loader's batches grouped into training stretches and callback passes, in order."""
    position, training = 0, None  # training: the open stretch of training batches
    for step in schedule.steps():
        if isinstance(step, TrainingSpan):
            if training is None:
                progress = schedule.structure.progress_at(step.first_update)
                training = Segment(0, position, 0, progress)
            span = step.stop_update - step.first_update
            training = replace(training, batches=training.batches + span)
            continue
        if training is not None:
            yield training
            position, training = position + training.batches, None
        batches = schedule.callbacks[step.callback].batches_per_pass
        yield Segment(step.callback + 1, position, batches, step.progress)
        position += batches
    if training is not None:
        yield training


def _figure_class() -> Any:
    return require("matplotlib.figure", "drawing a timeline").Figure


def plot_timeline(schedule: Schedule, names: Sequence[str], path: Path) -> None:
    """Draw ``schedule`` as a timeline into the image file ``path`` (format from its suffix).

    The x axis is the position of a batch in the loader (the order the training loop
    consumes them); each source has a row with a bar per training stretch or callback pass;
    dotted lines mark the ends of epochs.

    Args:
        schedule: the run's schedule.
        names: the name of each source: ``"train"`` first, then one per callback.
        path: the image file to write (``.png``, ``.svg``, ``.pdf``, ...).

    Raises:
        MissingExtraError: matplotlib is not installed.

    Example:
        >>> from interleaved_sampler.plan import RunPlan
        >>> plan = RunPlan.from_dict({"length": 10, "batch_size": 4, "max_epochs": 2})
        >>> plot_timeline(plan.schedule(), plan.names, Path("timeline.png"))  # doctest: +SKIP
    """
    figure = _figure_class()(figsize=(10, 1.2 + 0.5 * len(names)), layout="constrained")
    axes = figure.subplots()
    colors = [f"C{i}" for i in range(len(names))]
    bars: list[list[tuple[int, int]]] = [[] for _ in names]
    for segment in segments(schedule):
        bars[segment.source_index].append((segment.start, segment.batches))
        if segment.source_index == 0:
            _mark_epoch_ends(
                axes, schedule, segment.start, segment.progress.update, segment.batches
            )
    rows = len(names)
    for row, (spans, color) in enumerate(zip(bars, colors, strict=True)):
        axes.broken_barh(spans, (rows - row - 0.8, 0.6), facecolors=color)
    axes.set_yticks([rows - row - 0.5 for row in range(rows)], labels=list(names))
    axes.set_ylim(0, rows)
    axes.set_xlim(0, max(schedule.num_batches, 1))
    axes.set_xlabel("batch of the loader (the order the training loop consumes them)")
    train, total = schedule.train_batches, schedule.num_batches
    axes.set_title(f"{total} batches: {train} training + {total - train} callback", pad=14)
    figure.savefig(path, dpi=120)


def _mark_epoch_ends(axes: Any, schedule: Schedule, start: int, update: int, count: int) -> None:
    """Dotted lines after the training batches (of a stretch) that end an epoch."""
    per_epoch = schedule.structure.updates_per_epoch
    first_end = (update // per_epoch + 1) * per_epoch
    for end in range(first_end, update + count + 1, per_epoch):
        x = start + end - update
        axes.axvline(x, color="0.6", linestyle=":", linewidth=1)
        axes.annotate(
            f"epoch {end // per_epoch}",
            (x, 1),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color="0.4",
            ha="right",
            va="bottom",
        )
