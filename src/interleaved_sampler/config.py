"""Configuration objects, field for field those of the reference API.

Both are validated by pydantic: an invalid value fails at construction (and, with
``validate_assignment``, at assignment) with a ``ValidationError`` that names the field,
the value and what would be valid.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from interleaved_sampler.checks import not_a_sampler
from interleaved_sampler.protocols import SizedIterable

INTERVAL_FIELDS = ("every_n_epochs", "every_n_updates", "every_n_samples")
# When a callback runs: one interval, or the updates given explicitly.
DUE_FIELDS = (*INTERVAL_FIELDS, "at_updates")
STOP_FIELDS = ("max_epochs", "max_updates", "max_samples")
START_FIELDS = ("start_epoch", "start_update", "start_sample")


def _reject_bool(v: object) -> object:
    """pydantic reads ``True`` as 1 for an int field; a flag where a count belongs is a mistake."""
    if isinstance(v, bool):
        raise ValueError(f"must be an integer, got the bool {v}")
    return v


def source_names(callback_names: Sequence[str | None]) -> list[str]:
    """The name of each source: ``"train"``, then each callback's ``name`` or ``"callback{i}"``.

    Example:
        >>> source_names(["val", None])
        ['train', 'val', 'callback1']
    """
    return ["train", *(name or f"callback{i}" for i, name in enumerate(callback_names))]


def _check_field_names(data: Any, fields: Collection[str]) -> Any:
    """Refuse an unknown field, naming the closest valid one (a misspelt field is a typo, and
    the stock "extra inputs are not permitted" does not say which name was meant)."""
    given = data.kwargs if isinstance(data, ArgsKwargs) else data
    for name in given if isinstance(given, Mapping) else ():
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            meant = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown field {name!r}; {meant}valid fields: {', '.join(fields)}")
    return data


def _set_fields(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names if getattr(obj, name) is not None}


@dataclass(
    config=ConfigDict(arbitrary_types_allowed=True, validate_assignment=True, extra="forbid")
)
class SamplerIntervalConfig:
    """When and how to run one pass over a callback (e.g. evaluation) dataset.

    Args:
        sampler: any sized iterable of indices into its dataset, exposing the dataset as
            ``.data_source`` or ``.dataset`` (e.g. ``SequentialSampler(test_set)``), or
            with the dataset given as ``dataset``.
        pipeline: collate function for this dataset's batches (``None``: ``default_collate``).
        every_n_epochs: run a pass after every n-th completed epoch.
        every_n_updates: run a pass after every n-th update.
        every_n_samples: run a pass whenever the training sample count reaches or crosses a
            multiple of n. Requires ``batch_size``.
        at_updates: run a pass after each of these updates (increasing, >= 1): evaluation
            points that no interval expresses, e.g. a training framework's own.
        split: how each global batch of a pass is split over the ranks of a run with
            ``num_replicas`` > 1: ``"strided"`` (rank ``r`` takes positions ``r, r + W,
            ...``; parts differ by at most one) or ``"contiguous"`` (rank ``r`` takes the
            ``r``-th chunk of ``batch_size / W``, as Accelerate shards: the ranks' parts,
            gathered in rank order, are the batch in its order).
        batch_size: batch size of this pass (``None``: the main batch size in use).
        name: tag of this callback's batches (``None``: ``"callback{i}"``).
        cache: keep the batches of the first pass (of each iteration of the loader) in the
            main process and serve every later pass from memory, without loading; needs a
            sampler that yields the same indices in every pass and deterministic loading.
        dataset: the dataset ``sampler`` samples from, for a sampler that does not expose
            it (torch's ``SubsetRandomSampler``, ``WeightedRandomSampler``); ``None``: the
            sampler's. Given both, they must be the same object (checked by
            ``InterleavedSampler``, like the indices' range: see its ``train_dataset``).

    Exactly one ``every_n_*`` or ``at_updates`` must be given.

    Example:
        >>> from torch.utils.data import SequentialSampler
        >>> cfg = SamplerIntervalConfig(SequentialSampler(range(10)), every_n_updates=100)
        >>> cfg.every_n_updates
        100
    """

    sampler: SizedIterable
    pipeline: Callable[..., Any] | None = None
    every_n_epochs: int | None = None
    every_n_updates: int | None = None
    every_n_samples: int | None = None
    batch_size: int | None = None
    name: str | None = None
    cache: bool = False
    at_updates: tuple[int, ...] | None = None
    split: Literal["strided", "contiguous"] = "strided"
    dataset: Any = None

    @field_validator("every_n_epochs", "every_n_updates", "every_n_samples", "batch_size")
    @classmethod
    def check_positive_values(cls, v: int | None) -> int | None:
        """Intervals and batch size must be positive integers when given."""
        if v is not None and v <= 0:
            raise ValueError(f"must be a positive integer (>= 1) or None, got {v}")
        return v

    _counts_are_not_bools = field_validator(*INTERVAL_FIELDS, "batch_size", mode="before")(
        _reject_bool
    )

    @field_validator("at_updates", mode="before")
    @classmethod
    def check_updates(cls, v: object) -> object:
        """Updates after which to run a pass: strictly increasing integers >= 1."""
        if v is None:
            return v
        if isinstance(v, str | bytes) or not isinstance(v, Sequence | range):
            raise ValueError(f"must be a sequence of update numbers, got {v!r}")
        values = list(v)
        for value in values:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"every update must be an integer >= 1, got {value!r}")
        for before, after in itertools.pairwise(values):
            if after <= before:
                raise ValueError(
                    f"updates must be strictly increasing, got {before} before {after}"
                )
        return tuple(values)

    @model_validator(mode="before")
    @classmethod
    def check_field_names(cls, data: Any) -> Any:
        """An unknown field is refused with the closest valid name."""
        return _check_field_names(data, list(cls.__dataclass_fields__))

    @field_validator("sampler", mode="before")
    @classmethod
    def check_sampler(cls, v: object) -> object:
        """The sampler must be a sized iterable; the error names the field even when the
        sampler is passed positionally."""
        if not isinstance(v, SizedIterable):
            raise ValueError(not_a_sampler("sampler", v, "SequentialSampler(dataset)"))
        return v

    @model_validator(mode="after")
    def validate_frequency(self) -> SamplerIntervalConfig:
        """Exactly one ``every_n_*``; ``batch_size`` is required with ``every_n_samples``."""
        given = _set_fields(self, DUE_FIELDS)
        if len(given) != 1:
            shown = {k: v if k != "at_updates" else f"{len(v)} updates" for k, v in given.items()}
            raise ValueError(
                f"exactly one of {', '.join(DUE_FIELDS)} must be set, got {shown or 'none'}"
            )
        if self.every_n_samples is not None and self.batch_size is None:
            raise ValueError(
                f"batch_size is required with every_n_samples={self.every_n_samples}: "
                "sample-based passes are scheduled by sample counts, so the pass's batch size "
                "must be explicit; got batch_size=None, set batch_size to a positive integer"
            )
        return self


class InterleavedSamplerConfig(BaseModel):
    """How to batch the main (training) sampler, when to stop and where to start.

    Args:
        batch_size: batch size of training batches (>= 1).
        drop_last: drop the last incomplete batch of every epoch.
        max_epochs: stop after this many epochs.
        max_updates: stop after this many updates.
        max_samples: stop once this many samples were trained on.
        start_epoch: resume at the start of this epoch.
        start_update: resume after this many updates (may be inside an epoch).
        start_sample: resume after this many samples (must fall on an update boundary).
        evaluation: only run one pass over each callback, no training.

    At least one ``max_*`` is required; whichever is reached first stops training. A
    ``max_* = 0`` means evaluation mode. At most one ``start_*`` may be given.

    Example:
        >>> InterleavedSamplerConfig(batch_size=32, max_epochs=10).drop_last
        True
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    batch_size: int
    drop_last: bool = True
    max_epochs: int | None = None
    max_updates: int | None = None
    max_samples: int | None = None
    start_epoch: int | None = None
    start_update: int | None = None
    start_sample: int | None = None
    evaluation: bool = False

    _counts_are_not_bools = field_validator(
        "batch_size", *STOP_FIELDS, *START_FIELDS, mode="before"
    )(_reject_bool)

    @model_validator(mode="before")
    @classmethod
    def check_field_names(cls, data: Any) -> Any:
        """An unknown field is refused with the closest valid name."""
        return _check_field_names(data, list(cls.model_fields))

    @field_validator(*STOP_FIELDS, *START_FIELDS)
    @classmethod
    def check_positive_values(cls, v: int | None) -> int | None:
        """Limits and start positions must be non-negative integers when given."""
        if v is not None and v < 0:
            raise ValueError(f"must be a non-negative integer (>= 0) or None, got {v}")
        return v

    @field_validator("batch_size")
    @classmethod
    def check_batch_size(cls, v: int) -> int:
        """The batch size must be at least 1 (the reference accepts 0 and then loops forever)."""
        if v < 1:
            raise ValueError(f"must be a positive integer (>= 1), got {v}")
        return v

    @model_validator(mode="after")
    def validate_stop(self) -> InterleavedSamplerConfig:
        """At least one of ``max_epochs``, ``max_updates``, ``max_samples`` must be set."""
        if not _set_fields(self, STOP_FIELDS):
            raise ValueError(
                f"at least one of {', '.join(STOP_FIELDS)} must be set (all are None); "
                "use 0 for an evaluation-only run"
            )
        return self

    @model_validator(mode="after")
    def validate_start(self) -> InterleavedSamplerConfig:
        """At most one ``start_*``; ``start_sample`` must be a multiple of ``batch_size``."""
        given = _set_fields(self, START_FIELDS)
        if len(given) > 1:
            raise ValueError(f"at most one of {', '.join(START_FIELDS)} may be set, got {given}")
        if self.start_sample is not None and self.start_sample % self.batch_size != 0:
            below = self.start_sample - self.start_sample % self.batch_size
            raise ValueError(
                f"start_sample={self.start_sample} must be a multiple of "
                f"batch_size={self.batch_size}; nearest valid values: {below} or "
                f"{below + self.batch_size} (start_update resumes at any update)"
            )
        return self

    @property
    def is_evaluation_run(self) -> bool:
        """True for ``evaluation=True`` or any ``max_* == 0``: one pass per callback only."""
        return self.evaluation or 0 in _set_fields(self, STOP_FIELDS).values()
