"""A plain, obviously-correct model of the schedule (docs/schedule.md), as nested loops.

It shares no code with the library: it reads the samplers and follows the words of the page
step by step. Tests compare the library against it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any


class SpecError(Exception):
    """docs/schedule.md says this configuration must fail with a clear error."""


@dataclass
class ModelCallback:
    sampler: Any
    offset: int
    every_n_epochs: int | None = None
    every_n_updates: int | None = None
    every_n_samples: int | None = None
    batch_size: int | None = None
    at_updates: tuple[int, ...] | None = None


@dataclass
class ModelConfig:
    batch_size: int
    drop_last: bool = True
    max_epochs: int | None = None
    max_updates: int | None = None
    max_samples: int | None = None
    start_epoch: int | None = None
    start_update: int | None = None
    start_sample: int | None = None
    evaluation: bool = False
    callbacks: list[ModelCallback] = field(default_factory=list)


# What docs/schedule.md says a tagged batch carries: (epoch, update, sample) when handed out,
# its position in its pass (training: in its epoch) and the number of batches of that pass.
ModelTag = tuple[tuple[int, int, int], int, int]


def model_batches(
    main: Any, config: ModelConfig, tags: list[ModelTag] | None = None
) -> list[tuple[int, list[int]]]:
    """The run as a list of ``(source_index, global indices)``: 0 = train, i+1 = callback i.

    With ``tags`` given, the tag of each batch is appended to it."""
    out: list[tuple[int, list[int]]] = []
    tags = [] if tags is None else tags
    length = len(main)
    batch_size = config.batch_size
    if config.drop_last and 0 < length < batch_size:
        batch_size = length
    samples_per_epoch = length // batch_size * batch_size if config.drop_last else length
    if config.drop_last:
        updates_per_epoch = samples_per_epoch // batch_size
    else:
        updates_per_epoch = math.ceil(length / batch_size)

    for callback in config.callbacks:
        if len(callback.sampler) == 0:
            raise SpecError("empty callback")

    def run_pass(i: int, progress: tuple[int, int, int]) -> None:
        callback = config.callbacks[i]
        indices = list(callback.sampler)
        size = callback.batch_size or batch_size
        starts = range(0, len(indices), size)
        for position, start in enumerate(starts):
            out.append((i + 1, [callback.offset + j for j in indices[start : start + size]]))
            tags.append((progress, position, len(starts)))

    limits = [config.max_epochs, config.max_updates, config.max_samples]
    if config.evaluation or 0 in limits:
        for i in range(len(config.callbacks)):
            run_pass(i, (0, 0, 0))
        return out
    if length == 0:
        raise SpecError("empty main sampler")

    epoch = update = sample = 0
    if config.start_epoch is not None:
        epoch = config.start_epoch
        update = epoch * updates_per_epoch
        sample = epoch * samples_per_epoch
    elif config.start_update is not None:
        update = config.start_update
        epoch = update // updates_per_epoch
        sample = epoch * samples_per_epoch + (update - epoch * updates_per_epoch) * batch_size
    elif config.start_sample is not None:
        # walk the updates until the sample count matches
        u = s = 0
        while s < config.start_sample:
            position = u % updates_per_epoch
            s += (
                batch_size
                if position < updates_per_epoch - 1
                else (samples_per_epoch - (updates_per_epoch - 1) * batch_size)
            )
            u += 1
        if s != config.start_sample:
            raise SpecError("start_sample not on an update boundary")
        update = u
        epoch = update // updates_per_epoch
        sample = s

    def stopped() -> bool:
        return (
            (config.max_epochs is not None and epoch >= config.max_epochs)
            or (config.max_updates is not None and update >= config.max_updates)
            or (config.max_samples is not None and sample >= config.max_samples)
        )

    if stopped():
        return out
    while True:
        if hasattr(main, "set_epoch"):
            main.set_epoch(epoch)
        indices = list(itertools.islice(iter(main), samples_per_epoch))  # never one more
        batches = [indices[k : k + batch_size] for k in range(0, len(indices), batch_size)]
        if config.drop_last:
            batches = [b for b in batches if len(b) == batch_size]
        skip = update - epoch * updates_per_epoch
        for position in range(skip, len(batches)):
            batch = batches[position]
            tags.append(((epoch, update, sample), position, len(batches)))
            sample_before = sample
            sample += len(batch)
            update += 1
            if position == len(batches) - 1:
                epoch += 1
            out.append((0, batch))
            for i, callback in enumerate(config.callbacks):
                if callback.every_n_epochs is not None:
                    due = position == len(batches) - 1 and epoch % callback.every_n_epochs == 0
                elif callback.every_n_updates is not None:
                    due = update % callback.every_n_updates == 0
                elif callback.at_updates is not None:
                    due = update in callback.at_updates
                else:
                    n = callback.every_n_samples
                    assert n is not None
                    due = sample_before // n < sample // n
                if due:
                    run_pass(i, (epoch, update, sample))
            if stopped():
                return out
