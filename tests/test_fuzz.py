"""Fuzzing: random, partly invalid configurations and samplers.

Each case either works, and then yields exactly the schedule of docs/schedule.md
(``spec_model``) with
``len()`` equal to the number of batches, or fails with a clear error: a ``ValidationError``
from a config, a ``TypeError``/``ValueError`` at construction, or (a sampler whose ``len()``
lies) a ``ValueError`` at the point the lie shows. The oracle below predicts which, from the
specification (docs/schedule.md, docs/errors.md) alone. Never a hang, a wrong stream or an
internal error (``IndexError``,
``ZeroDivisionError``, ``AttributeError``, ...): those fail the test as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from faulty import BadLenSampler, LyingSampler, NoDatasetSampler
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from spec_model import ModelCallback, ModelConfig, SpecError, model_batches
from torch.utils.data import RandomSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)

STOPS = ("max_epochs", "max_updates", "max_samples")
STARTS = ("start_epoch", "start_update", "start_sample")
INTERVALS = ("every_n_epochs", "every_n_updates", "every_n_samples")
BAD_TYPES = ("abc", 1.5, [2])
VALID_KINDS = ("sequential", "seeded", "random")
INVALID_KINDS = ("nodataset", "badlen", "notasampler")
Expected = list[tuple[type[Exception], str]]  # any of these (type, message fragment)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplerCase:
    kind: str  # VALID_KINDS, "lying", "nodataset", "badlen", "notasampler"
    dataset_len: int
    reported: Any = None  # lying: its len(); badlen: the invalid len()
    actual: int | None = None  # lying: indices per iteration (None: forever)

    def build(self) -> Any:
        data = range(self.dataset_len)
        if self.kind == "lying":
            return LyingSampler(data, self.reported, self.actual)
        if self.kind == "nodataset":
            return NoDatasetSampler(self.dataset_len)
        if self.kind == "badlen":
            return BadLenSampler(data, self.reported)
        if self.kind == "notasampler":
            return 5
        return self.twin()

    def twin(self) -> Any:
        """An honest sampler with the order docs/schedule.md expects (a fresh one per call)."""
        data = range(self.dataset_len)
        if self.kind == "lying":
            return LyingSampler(data, self.reported, self.reported)
        if self.kind == "seeded":
            return SeededRandomSampler(data, seed=self.dataset_len % 3)
        if self.kind == "random":
            return RandomSampler(data, generator=torch.Generator().manual_seed(7))
        return SequentialSampler(data)

    @property
    def lies(self) -> bool:
        return self.kind == "lying" and self.actual != self.reported

    @property
    def has_no_valid_dataset_or_len(self) -> bool:
        return self.kind in ("nodataset", "badlen")

    @property
    def length(self) -> int:
        return int(self.reported) if self.kind == "lying" else self.dataset_len


@dataclass(frozen=True)
class CallbackCase:
    sampler: SamplerCase
    kwargs: dict[str, Any]  # every_n_*, batch_size, pipeline, name
    index: int

    @property
    def name(self) -> str:
        return str(self.kwargs.get("name") or f"callback{self.index}")

    def problems(self) -> list[str]:
        """Message fragments of the ValidationError docs/errors.md demands (empty: valid)."""
        problems = [f for f, v in self.kwargs.items() if f in INTERVALS and not _positive(v)]
        if "batch_size" in self.kwargs and not _positive(self.kwargs["batch_size"]):
            problems.append("batch_size")
        if self.kwargs.get("pipeline") is not None:
            problems.append("pipeline")
        if self.sampler.kind == "notasampler":
            problems.append("sampler")
        if problems:
            return problems
        given_intervals = [f for f in INTERVALS if f in self.kwargs]
        if len(given_intervals) != 1:
            return ["exactly one of every_n_epochs"]
        if "every_n_samples" in self.kwargs and "batch_size" not in self.kwargs:
            return ["batch_size is required"]
        return []

    def build(self) -> SamplerIntervalConfig:
        return SamplerIntervalConfig(self.sampler.build(), **self.kwargs)


def _positive(value: object) -> bool:
    return is_int(value) and int(value) >= 1  # type: ignore[call-overload]


@dataclass(frozen=True)
class Case:
    main: SamplerCase
    config: dict[str, Any]
    callbacks: tuple[CallbackCase, ...]
    wrong_argument: str | None = None  # "config", "train_collator" or "callback_samplers"

    def config_problems(self) -> list[str]:
        """Fragments of the config's ValidationError that docs/errors.md demands (empty: valid)."""
        problems = [f for f in self.config if f == "max_epoch"]
        if "batch_size" not in self.config or not _positive(self.config["batch_size"]):
            problems.append("batch_size")
        if not isinstance(self.config.get("drop_last", True), bool):
            problems.append("drop_last")
        for f in (*STOPS, *STARTS):
            value = self.config.get(f)
            if value is not None and not (is_int(value) and value >= 0):
                problems.append(f)
        if problems:
            return problems
        if not any(f in self.config for f in STOPS):
            return ["at least one of max_epochs"]
        if sum(f in self.config for f in STARTS) > 1:
            return ["at most one of start_epoch"]
        if self.config.get("start_sample", 0) % self.config["batch_size"]:
            return ["start_sample"]
        return []

    def construction_problems(self) -> Expected:
        """The TypeErrors/ValueErrors of InterleavedSampler that docs/errors.md demands."""
        expected: Expected = []
        if self.wrong_argument:
            expected.append((TypeError, self.wrong_argument))
        if self.main.kind == "notasampler":
            expected.append((TypeError, "train_sampler"))
        if self.main.has_no_valid_dataset_or_len:
            expected.append((TypeError, "the train sampler"))
        for c in self.callbacks:
            if c.sampler.has_no_valid_dataset_or_len:
                expected.append((TypeError, f"the {c.name} sampler"))
        if expected:
            return expected
        return [
            (ValueError, f"the {c.name} sampler") for c in self.callbacks if not c.sampler.length
        ]

    def build(self) -> InterleavedSampler:
        config: Any = InterleavedSamplerConfig(**self.config)
        callbacks: Any = [c.build() for c in self.callbacks]
        collator: Any = None
        if self.wrong_argument == "config":
            config = dict(self.config)
        elif self.wrong_argument == "train_collator":
            collator = "stack"
        elif self.wrong_argument == "callback_samplers":
            callbacks = callbacks[0]
        return InterleavedSampler(self.main.build(), config, collator, callbacks)

    # --- the specified run, from the honest twins ---

    def model_config(self) -> ModelConfig:
        offset, callbacks = self.main.dataset_len, []
        for c in self.callbacks:
            intervals = {k: v for k, v in c.kwargs.items() if k in (*INTERVALS, "batch_size")}
            callbacks.append(ModelCallback(c.sampler.twin(), offset, **intervals))
            offset += c.sampler.dataset_len
        settings = {k: v for k, v in self.config.items() if k != "batch_size"}
        return ModelConfig(batch_size=self.config["batch_size"], callbacks=callbacks, **settings)

    def structure(self) -> tuple[int, int, int]:
        """``(B, S, U)`` of the main sampler as docs/schedule.md defines them."""
        length, size = self.main.length, self.config["batch_size"]
        drop_last = self.config.get("drop_last", True)
        if drop_last and 0 < length < size:
            size = length
        samples = length // size * size if drop_last else length
        return size, samples, samples // size if drop_last else math.ceil(length / size)

    def start_update(self) -> int:
        size, samples, updates = self.structure()
        if "start_epoch" in self.config:
            return int(self.config["start_epoch"]) * updates
        if "start_sample" in self.config:
            sample = int(self.config["start_sample"])
            return sample // samples * updates + sample % samples // size
        return int(self.config.get("start_update", 0))

    def is_evaluation(self) -> bool:
        return bool(self.config.get("evaluation")) or 0 in [self.config.get(f) for f in STOPS]

    def lie_shows(self, want: list[tuple[int, list[int]]]) -> bool:
        """Whether the run reaches a point where a lying sampler's len() must be detected."""
        shows = any(source > 0 and self.callbacks[source - 1].sampler.lies for source, _ in want)
        trained = sum(source == 0 for source, _ in want)
        if not (self.main.lies and trained):
            return shows
        # The main sampler is asked for exactly the indices each trained batch uses (SPEC
        # rule 1), so its lie shows only when it runs out before the end of such a batch.
        size, samples, updates = self.structure()
        first = self.start_update()
        ends = [min((u % updates + 1) * size, samples) for u in range(first, first + trained)]
        actual = self.main.actual
        return shows or (actual is not None and max(ends) > actual)


def rarely(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws (hypothesis favours small integers, so not ``== 0``)."""
    return bool(draw(st.sampled_from([False] * (n - 1) + [True])))


@st.composite
def ints(draw: st.DrawFn, low: int, high: int) -> Any:
    """Mostly ints in ``[low, high]``; one in 30 is negative or of a wrong type."""
    if rarely(draw, 30):
        return draw(st.sampled_from([-2, -1, *BAD_TYPES]))
    return draw(st.integers(low, high))


@st.composite
def sampler_cases(draw: st.DrawFn, max_len: int, valid_weight: int) -> SamplerCase:
    kind = draw(st.sampled_from([*VALID_KINDS * valid_weight, *["lying"] * 4, *INVALID_KINDS]))
    length = draw(st.integers(0, max_len))
    if kind == "lying":
        reported = draw(st.integers(0, max_len))
        actual = draw(st.none() | st.integers(0, max_len + 3) | st.just(reported))
        return SamplerCase(kind, max(length, 1), reported, actual)
    if kind == "random":  # torch's RandomSampler refuses empty datasets itself
        return SamplerCase(kind, max(length, 1))
    if kind == "badlen":
        return SamplerCase(kind, length, draw(st.sampled_from([-1, "3"])))
    return SamplerCase(kind, length)


@st.composite
def callback_cases(draw: st.DrawFn, index: int) -> CallbackCase:
    kwargs: dict[str, Any] = {}
    count = draw(st.sampled_from([1] * 10 + [0, 2]))
    for interval in draw(st.permutations(INTERVALS))[:count]:
        kwargs[interval] = draw(ints(1, 20 if interval == "every_n_samples" else 5))
    wants_batch_size = "every_n_samples" in kwargs or draw(st.booleans())
    if wants_batch_size and not rarely(draw, 8):  # sometimes missing with every_n_samples
        kwargs["batch_size"] = draw(ints(1, 5))
    if rarely(draw, 16):
        kwargs["pipeline"] = "collate"
    if draw(st.booleans()):
        kwargs["name"] = f"eval{index}"
    return CallbackCase(draw(sampler_cases(max_len=6, valid_weight=6)), kwargs, index)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    config: dict[str, Any] = {}
    if not rarely(draw, 30):
        config["batch_size"] = draw(ints(1, 5))
    if draw(st.booleans()):
        config["drop_last"] = draw(st.sampled_from([True, False] * 10 + ["maybe"]))
    upper = {"max_epochs": 4, "max_updates": 30, "max_samples": 80}
    no_stop = rarely(draw, 30)
    stops = st.lists(st.sampled_from(STOPS), min_size=0 if no_stop else 1, max_size=3, unique=True)
    for stop in draw(stops):
        config[stop] = 0 if rarely(draw, 12) else draw(ints(1, upper[stop]))
    starts = draw(st.sampled_from([0] * 18 + [1] * 11 + [2]))
    for start in draw(st.permutations(STARTS))[:starts]:
        if start == "start_sample" and _positive(config.get("batch_size")):
            step = config["batch_size"]
            config[start] = draw(st.integers(0, 8)) * step + int(rarely(draw, 8))
        else:
            config[start] = draw(ints(0, 3 if start == "start_epoch" else 12))
    if rarely(draw, 10):
        config["evaluation"] = True
    if rarely(draw, 40):
        config["max_epoch"] = 1
    callbacks = tuple(draw(callback_cases(i)) for i in range(draw(st.integers(0, 2))))
    wrong = draw(st.sampled_from([None] * 30 + ["config", "train_collator"]))
    if callbacks and rarely(draw, 30):
        wrong = "callback_samplers"
    return Case(draw(sampler_cases(max_len=12, valid_weight=3)), config, callbacks, wrong)


def check_error(error: Exception, expected: Expected) -> None:
    assert any(isinstance(error, kind) and fragment in str(error) for kind, fragment in expected), (
        f"{type(error).__name__}: {error}\nexpected one of {expected}"
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(cases())
@example(  # a mid-epoch start with torch's RandomSampler
    Case(SamplerCase("random", 10), {"batch_size": 3, "max_epochs": 2, "start_update": 1}, ())
)
@example(  # the main sampler yields fewer indices than its len(), found mid-epoch
    Case(SamplerCase("lying", 9, 9, 4), {"batch_size": 2, "max_updates": 3}, ())
)
@example(  # an infinite callback sampler
    Case(
        SamplerCase("sequential", 4),
        {"batch_size": 2, "max_updates": 2},
        (CallbackCase(SamplerCase("lying", 3, 3, None), {"every_n_updates": 2}, 0),),
    )
)
def test_random_inputs_work_exactly_or_fail_clearly(case: Case) -> None:
    problems = case.config_problems()
    if problems:
        with pytest.raises(ValidationError) as error:
            InterleavedSamplerConfig(**case.config)
        check_error(error.value, [(ValidationError, p) for p in problems])
        event("config ValidationError")
        return
    for callback in case.callbacks:
        if callback.problems():
            with pytest.raises(ValidationError) as error:
                callback.build()
            check_error(error.value, [(ValidationError, p) for p in callback.problems()])
            event("callback ValidationError")
            return
    expected = case.construction_problems()
    if expected:
        with pytest.raises((TypeError, ValueError)) as error:
            case.build()
        check_error(error.value, expected)
        event(f"construction {error.type.__name__}")
        return
    run_and_compare(case)


def run_and_compare(case: Case) -> None:
    try:
        want = model_batches(case.main.twin(), case.model_config())
    except SpecError:
        with pytest.raises(ValueError) as error:
            case.build()
        check_error(error.value, [(ValueError, "sampler is empty"), (ValueError, "start_sample")])
        event("schedule ValueError")
        return
    trained = any(source == 0 for source, _ in want)
    mid_epoch = case.start_update() % case.structure()[2] != 0 if case.main.length else False
    if case.main.kind == "random" and mid_epoch and trained and not case.is_evaluation():
        with pytest.raises(ValueError) as error:
            case.build()
        check_error(error.value, [(ValueError, "got RandomSampler")])
        event("mid-epoch ValueError")
        return
    sampler = case.build()
    assert len(sampler.batch_sampler) == len(want)
    got: list[tuple[int, list[int]]] = []
    try:
        for batch in sampler.batch_sampler:
            got.append((batch.source_index, list(batch)))
    except ValueError as error:
        assert got == want[: len(got)]
        liars = [f"the {c.name} sampler" for c in case.callbacks if c.sampler.lies]
        liars += ["the train sampler"] if case.main.lies else []
        check_error(error, [(ValueError, name) for name in liars])
        assert case.lie_shows(want), "raised although no lie shows"
        event("lying len() detected")
        return
    assert got == want
    assert not case.lie_shows(want), "a lying len() went unnoticed"
    lying = case.main.lies or any(c.sampler.lies for c in case.callbacks)
    kind = "lying len() unnoticed" if lying else "honest"
    event(f"works: {kind}, {'no' if not want else 'some'} batches")
