"""One test per entry of the error catalogue (docs/errors.md, E1..E43; the stream errors
E44..E50 are tested in tests/test_stream.py) and per documented non-error (N1..N4): each
triggers the condition and checks that the message names the field or sampler, the value and
what is valid."""

from __future__ import annotations

import multiprocessing
import sys
import traceback
import types
from typing import Any

import pytest
import torch
from faulty import (
    BadLenSampler,
    FailingDataset,
    LockedDataset,
    LyingSampler,
    MixedDataset,
    NoDatasetSampler,
    PidDataset,
    failing_collate,
)
from helpers import batches, seq
from pydantic import ValidationError
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)
from interleaved_sampler.agreement import RankFacts, Ranks

pytestmark = pytest.mark.timeout(60)


def assert_names(error: pytest.ExceptionInfo[BaseException], *fragments: str) -> None:
    """Every fragment (field, value, what is valid) appears in the error's full text."""
    text = "".join(traceback.format_exception_only(error.type, error.value))
    text += "".join(getattr(error.value, "__notes__", []))
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


def config(**kwargs: Any) -> InterleavedSamplerConfig:
    return InterleavedSamplerConfig(**{"batch_size": 2, "max_epochs": 1, **kwargs})


def every(sampler: Any, **kwargs: Any) -> SamplerIntervalConfig:
    if not any(key.startswith("every_n_") for key in kwargs):
        kwargs["every_n_epochs"] = 1
    return SamplerIntervalConfig(sampler, **kwargs)


# --- configuration: pydantic ValidationError -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [(0, ">= 1"), (-3, ">= 1"), ("abc", "valid integer"), (2.5, "valid integer")],
)
def test_e1_main_batch_size_must_be_a_positive_int(value: Any, valid: str) -> None:
    with pytest.raises(ValidationError) as error:
        InterleavedSamplerConfig(batch_size=value, max_epochs=1)
    assert_names(error, "batch_size", repr(value) if isinstance(value, str) else str(value), valid)


def test_e1_batch_size_is_required_and_checked_on_assignment() -> None:
    with pytest.raises(ValidationError) as error:
        InterleavedSamplerConfig(max_epochs=1)  # type: ignore[call-arg]
    assert_names(error, "batch_size", "Field required")
    cfg = config()
    with pytest.raises(ValidationError) as error:
        cfg.batch_size = 0
    assert_names(error, "batch_size", "got 0", ">= 1")
    assert cfg.batch_size == 2


def test_e1_callback_batch_size_must_be_positive() -> None:
    with pytest.raises(ValidationError) as error:
        every(seq(3), batch_size=0)
    assert_names(error, "batch_size", "got 0", ">= 1")


@pytest.mark.parametrize(
    "field", ["max_epochs", "max_updates", "max_samples", "start_epoch", "start_update"]
)
def test_e2_limits_and_starts_must_be_non_negative(field: str) -> None:
    with pytest.raises(ValidationError) as error:
        InterleavedSamplerConfig(**{"batch_size": 2, "max_updates": 5, field: -1})
    assert_names(error, field, "got -1", ">= 0")


def test_e2_limits_must_be_ints() -> None:
    with pytest.raises(ValidationError) as error:
        InterleavedSamplerConfig(batch_size=2, max_epochs="many")
    assert_names(error, "max_epochs", "'many'", "valid integer")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": True, "max_epochs": 1}, "batch_size"),
        ({"batch_size": 2, "max_updates": False}, "max_updates"),
        ({"batch_size": 2, "max_epochs": 1, "start_epoch": True}, "start_epoch"),
    ],
)
def test_e2_counts_must_not_be_bools(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        InterleavedSamplerConfig(**kwargs)
    assert_names(error, field, "got the bool", "must be an integer")


def test_e8_intervals_must_not_be_bools() -> None:
    with pytest.raises(ValidationError) as error:
        every(seq(3), every_n_updates=True)
    assert_names(error, "every_n_updates", "got the bool True", "must be an integer")


def test_e3_at_least_one_limit() -> None:
    with pytest.raises(ValidationError) as error:
        InterleavedSamplerConfig(batch_size=2)
    assert_names(error, "max_epochs, max_updates, max_samples", "all are None", "use 0")


def test_e4_at_most_one_start() -> None:
    with pytest.raises(ValidationError) as error:
        config(start_epoch=1, start_update=3)
    assert_names(error, "at most one of start_epoch", "'start_epoch': 1", "'start_update': 3")


def test_e5_start_sample_must_be_a_multiple_of_batch_size() -> None:
    with pytest.raises(ValidationError) as error:
        InterleavedSamplerConfig(batch_size=4, max_epochs=1, start_sample=6)
    assert_names(error, "start_sample=6", "batch_size=4", "4 or 8")


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"drop_last": "maybe"}, ("drop_last", "'maybe'", "valid boolean")),
        ({"evaluation": [1]}, ("evaluation", "[1]", "valid boolean")),
        ({"max_epoch": 3}, ("unknown field 'max_epoch'", "did you mean 'max_epochs'?")),
        ({"zzz": 3}, ("unknown field 'zzz'; valid fields: batch_size, drop_last, max_epochs",)),
    ],
)
def test_e6_wrong_types_and_unknown_fields(kwargs: dict[str, Any], fragments: tuple[str]) -> None:
    with pytest.raises(ValidationError) as error:
        config(**kwargs)
    assert_names(error, *fragments)


def test_e6_callback_name_must_be_a_string_and_fields_known() -> None:
    with pytest.raises(ValidationError) as error:
        every(seq(3), name=3)
    assert_names(error, "name", "input_value=3", "valid string")
    with pytest.raises(ValidationError) as error:
        every(seq(3), every_n_epoch=3)
    assert_names(error, "unknown field 'every_n_epoch'", "did you mean 'every_n_epochs'?")
    assert "every_n_epochs, every_n_updates, every_n_samples, batch_size, name" in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "got"),
    [({}, "got none"), ({"every_n_epochs": 1, "every_n_updates": 2}, "'every_n_updates': 2")],
)
def test_e7_exactly_one_interval(kwargs: dict[str, int], got: str) -> None:
    with pytest.raises(ValidationError) as error:
        SamplerIntervalConfig(seq(3), **kwargs)
    assert_names(error, "exactly one of every_n_epochs, every_n_updates, every_n_samples", got)


@pytest.mark.parametrize("field", ["every_n_epochs", "every_n_updates", "every_n_samples"])
def test_e8_intervals_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError) as error:
        SamplerIntervalConfig(seq(3), batch_size=1, **{field: 0})
    assert_names(error, field, "got 0", ">= 1")


def test_e9_every_n_samples_needs_a_batch_size() -> None:
    with pytest.raises(ValidationError) as error:
        SamplerIntervalConfig(seq(3), every_n_samples=10)
    assert_names(
        error,
        "batch_size is required with every_n_samples=10",
        "sample-based passes are scheduled by sample counts",
        "batch size must be explicit",
        "batch_size=None",
    )


@pytest.mark.parametrize("value", [5, None])
def test_e10_callback_sampler_must_be_a_sampler(value: Any) -> None:
    with pytest.raises(ValidationError) as error:
        SamplerIntervalConfig(value, every_n_epochs=1)
    assert_names(error, "sampler must be a sampler", f"got {value!r}", "__len__")


def test_e10_a_dataset_instead_of_a_sampler_gets_a_hint() -> None:
    with pytest.raises(ValidationError) as error:
        SamplerIntervalConfig(PidDataset(5), every_n_epochs=1)
    assert_names(error, "got the dataset PidDataset (5 samples)", "e.g. SequentialSampler(dataset)")


def test_e11_pipeline_must_be_callable() -> None:
    with pytest.raises(ValidationError) as error:
        every(seq(3), pipeline="collate")
    assert_names(error, "pipeline", "'collate'", "callable")


# --- InterleavedSampler construction: TypeError / ValueError --------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"config": {"batch_size": 2}}, ("config must be an InterleavedSamplerConfig", "dict")),
        ({"train_sampler": 7}, ("train_sampler must be a sampler", "7 (int)")),
        ({"train_collator": "stack"}, ("train_collator must be a collate", "'stack' (str)")),
        ({"callback_samplers": "every"}, ("callback_samplers[0] must be a Sampler", "'e'")),
        ({"callback_samplers": 3}, ("callback_samplers must be a list", "3 (int)")),
    ],
)
def test_e12_argument_types(kwargs: dict[str, Any], fragments: tuple[str]) -> None:
    arguments = {"train_sampler": seq(4), "config": config(), **kwargs}
    with pytest.raises(TypeError) as error:
        InterleavedSampler(**arguments)
    assert_names(error, *fragments)


def test_e12_a_dataset_as_train_sampler_gets_a_hint() -> None:
    with pytest.raises(TypeError) as error:
        InterleavedSampler(PidDataset(7), config())  # type: ignore[arg-type]
    assert_names(
        error,
        "train_sampler must be a sampler (with __iter__ and __len__)",
        "got the dataset PidDataset (7 samples)",
        "pass a sampler over the dataset, e.g. SeededRandomSampler(dataset)",
    )


def test_e12_a_single_callback_config_is_not_a_list() -> None:
    with pytest.raises(TypeError) as error:
        InterleavedSampler(seq(4), config(), callback_samplers=every(seq(2)))  # type: ignore[arg-type]
    assert_names(error, "callback_samplers must be a list", "SamplerIntervalConfig")


@pytest.mark.parametrize("callback", [False, True])
def test_e13_samplers_must_expose_their_dataset(callback: bool) -> None:
    main, callbacks = (
        (seq(4), [every(NoDatasetSampler(3))]) if callback else (NoDatasetSampler(4), [])
    )
    with pytest.raises(TypeError) as error:
        InterleavedSampler(main, config(), callback_samplers=callbacks)
    role = "callback0" if callback else "train"
    assert_names(error, f"the {role} sampler NoDatasetSampler", ".data_source", ".dataset")


@pytest.mark.parametrize(("length", "got"), [(-1, ">= 0"), ("10", "cannot be interpreted")])
def test_e14_sampler_len_must_be_a_valid_length(length: Any, got: str) -> None:
    with pytest.raises(TypeError) as error:
        InterleavedSampler(BadLenSampler(range(4), length), config())
    assert_names(error, "the train sampler BadLenSampler", "no valid len()", got, "int >= 0")


def test_e15_empty_train_sampler_in_a_training_run() -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(0), config())
    assert_names(error, "the main (train) sampler is empty", "got len() == 0", "evaluation=True")
    # evaluation only: the train sampler is never used, so it may be empty
    evaluation = InterleavedSampler(
        seq(0), config(evaluation=True), callback_samplers=[every(seq(3))]
    )
    assert batches(evaluation) == [[0, 1], [2]]


def test_e16_empty_callback_sampler() -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(4), config(), callback_samplers=[every(seq(0), name="val")])
    assert_names(error, "the val sampler (SequentialSampler) is empty", "got len() == 0")


def test_e17_start_sample_off_an_update_boundary() -> None:
    # L=10, B=4, no drop_last: updates end at samples 4, 8, 10, 14, ...
    cfg = InterleavedSamplerConfig(batch_size=4, drop_last=False, max_epochs=3, start_sample=12)
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(10), cfg)
    assert_names(error, "start_sample=12", "not on an update boundary", "10 or 14")


def test_e18_mid_epoch_start_needs_a_repeatable_order() -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler(RandomSampler(range(8)), config(start_update=1))
    assert_names(error, "got RandomSampler", "update 1", "SeededRandomSampler", "start_epoch=0")
    # at an epoch boundary any sampler can resume
    resumed = InterleavedSampler(RandomSampler(range(8)), config(max_epochs=2, start_epoch=1))
    assert sorted(i for batch in batches(resumed) for i in batch) == list(range(8))


def test_e19_calculate_start_checks_its_arguments() -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler.calculate_start(config(), -1)
    assert_names(error, "sampler_len must be an int >= 0", "got -1 (int)")
    with pytest.raises(TypeError) as type_error:
        InterleavedSampler.calculate_start(config(), 2.5)  # type: ignore[arg-type]
    assert_names(type_error, "sampler_len must be an int >= 0", "got 2.5 (float)")
    with pytest.raises(TypeError) as type_error:
        InterleavedSampler.calculate_start({"batch_size": 2}, 4)  # type: ignore[arg-type]
    assert_names(type_error, "config must be an InterleavedSamplerConfig", "dict")
    assert InterleavedSampler.calculate_start(config(start_update=3), 4) == (1, 3, 6)


# --- get_data_loader -------------------------------------------------------------------------


@pytest.mark.parametrize("argument", ["batch_size", "shuffle", "sampler", "collate_fn"])
def test_e20_loader_arguments_the_sampler_owns(argument: str) -> None:
    with pytest.raises(TypeError) as error:
        InterleavedSampler(seq(4), config()).get_data_loader(**{argument: None})
    assert_names(error, f"got {argument}", "sets itself", "InterleavedSamplerConfig")


def _lambda_collate(batch: Any) -> Any:
    return batch


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize(
    ("what", "make"),
    [
        (
            "the dataset of train (LockedDataset)",
            lambda: InterleavedSampler(SequentialSampler(LockedDataset(4)), config()),
        ),
        (
            "the collate function of val (<lambda>",
            lambda: InterleavedSampler(
                seq(4),
                config(),
                callback_samplers=[every(seq(2), pipeline=lambda b: b, name="val")],
            ),
        ),
    ],
)
def test_e21_unpicklable_objects_fail_before_workers_start(
    method: str, what: str, make: Any
) -> None:
    sampler, before = make(), multiprocessing.active_children()
    with pytest.raises(TypeError) as error:
        sampler.get_data_loader(num_workers=2, multiprocessing_context=method)
    assert_names(error, what, "cannot be pickled", repr(method), "multiprocessing_context='fork'")
    assert multiprocessing.active_children() == before  # no worker was started


def test_e21_worker_init_fn_is_checked_and_fork_needs_no_pickling() -> None:
    sampler = InterleavedSampler(SequentialSampler(LockedDataset(4)), config())
    context = multiprocessing.get_context("spawn")
    with pytest.raises(TypeError) as error:
        InterleavedSampler(seq(4), config()).get_data_loader(
            num_workers=1, multiprocessing_context=context, worker_init_fn=lambda i: None
        )
    assert_names(error, "worker_init_fn (", "<lambda>", "'spawn'")
    loader = sampler.get_data_loader(num_workers=2, multiprocessing_context="fork")
    assert [batch[0].tolist() for batch in loader] == [[0, 1], [2, 3]]
    assert len(sampler.get_data_loader(num_workers=0)) == 2  # no workers: nothing is pickled


def test_e21_the_default_start_method_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.14 defaults to forkserver: no multiprocessing_context still gets the check."""
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: None)
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["forkserver", "fork"])
    sampler = InterleavedSampler(SequentialSampler(LockedDataset(4)), config())
    with pytest.raises(TypeError) as error:
        sampler.get_data_loader(num_workers=2)
    assert_names(error, "the dataset of train (LockedDataset)", "'forkserver'")


@pytest.mark.parametrize("interactive", [True, False])
def test_e21_classes_of_an_interactive_main_cannot_reach_a_worker(
    monkeypatch: pytest.MonkeyPatch, interactive: bool
) -> None:
    """A notebook's dataset class pickles by reference to a __main__ no worker can import."""
    main = types.ModuleType("__main__")
    if not interactive:
        main.__file__ = "train.py"
    notebook_class = type("NotebookDataset", (PidDataset,), {"__module__": "__main__"})
    main.NotebookDataset = notebook_class  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", main)
    sampler = InterleavedSampler(SequentialSampler(notebook_class(4)), config())
    if not interactive:  # a script's __main__ is imported again by the workers
        sampler.get_data_loader(num_workers=2, multiprocessing_context="spawn")
        return
    with pytest.raises(TypeError) as error:
        sampler.get_data_loader(num_workers=2, multiprocessing_context="forkserver")
    assert_names(
        error, "the dataset of train (NotebookDataset)", "interactive __main__", "'forkserver'"
    )


def test_e21_tensor_contents_are_not_pickled_by_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers get tensors through shared memory: the check must not copy them."""

    def refuse(self: torch.Tensor, protocol: int) -> Any:
        raise AssertionError("the check pickled tensor contents")

    monkeypatch.setattr(torch.Tensor, "__reduce_ex__", refuse)
    dataset = torch.utils.data.TensorDataset(torch.zeros(1000, 3))
    sampler = InterleavedSampler(SequentialSampler(dataset), config())
    before = multiprocessing.active_children()
    loader = sampler.get_data_loader(num_workers=2, multiprocessing_context="spawn")
    assert loader.num_workers == 2
    assert multiprocessing.active_children() == before  # building the loader starts no worker


# --- during iteration ------------------------------------------------------------------------


def test_e22_train_sampler_yields_fewer_than_its_len() -> None:
    sampler = InterleavedSampler(LyingSampler(range(10), reported=10, actual=5), config())
    stream = iter(sampler.batch_sampler)
    assert [next(stream), next(stream)] == [[0, 1], [2, 3]]  # the batches before the shortfall
    with pytest.raises(ValueError) as error:
        next(stream)
    assert_names(
        error,
        "the train sampler (LyingSampler)",
        "yielded only 5 indices in epoch 0",
        "len() is 10",
    )


def test_e22_callback_yields_fewer_than_its_len() -> None:
    callback = every(LyingSampler(range(6), reported=6, actual=3), name="val")
    sampler = InterleavedSampler(seq(2), config(), callback_samplers=[callback])
    with pytest.raises(ValueError) as error:
        batches(sampler)
    assert_names(
        error, "the val sampler (LyingSampler)", "yielded only 3 indices in one pass", "len() is 6"
    )


@pytest.mark.parametrize("actual", [5, None])
def test_e23_a_train_sampler_surplus_is_never_requested(actual: int | None) -> None:
    """Rule 1 of the schedule: exactly the indices an epoch uses are read, so no surplus shows."""
    main = LyingSampler(range(10), reported=4, actual=actual)
    sampler = InterleavedSampler(main, config(max_epochs=3))
    assert batches(sampler) == [[0, 1], [2, 3]] * 3


@pytest.mark.parametrize("actual", [5, None])
def test_e23_callback_yields_more_than_its_len(actual: int | None) -> None:
    callback = every(LyingSampler(range(10), reported=3, actual=actual))
    sampler = InterleavedSampler(seq(2), config(), callback_samplers=[callback])
    with pytest.raises(ValueError) as error:
        batches(sampler)
    assert_names(
        error, "the callback0 sampler (LyingSampler)", "more than its len() = 3 indices in one pass"
    )


def test_e29_a_tagged_loader_whose_batches_lost_their_tags() -> None:
    loader = InterleavedSampler(seq(4), config()).get_data_loader(tagged=True)
    rebatched = DataLoader(
        loader.dataset,
        batch_sampler=[list(batch) for batch in loader.batch_sampler],
        collate_fn=loader.collate_fn,
    )
    with pytest.raises(ValueError) as error:
        next(iter(rebatched))
    assert_names(error, "a tagged loader got a batch without its tag", "num_replicas=, rank=")


def test_e30_a_framework_reading_batch_size_to_rebatch() -> None:
    with pytest.raises(TypeError) as error:
        _ = InterleavedSampler(seq(4), config()).batch_sampler.batch_size
    assert_names(error, "no single batch_size", "use_distributed_sampler=False", "prepare(model")


def test_e40_ranks_that_build_different_runs() -> None:
    """Two ranks in one process: the facts of a rank seeded by its rank differ (a real group
    gathers them: tests/test_agreement.py); alone, a global run for rank 1 of 2 is reported."""

    def rank_facts(rank: int) -> RankFacts:
        train = SeededRandomSampler(range(8), seed=3 + rank)
        sampler = InterleavedSampler(train, config(), num_replicas=2, rank=rank)
        return RankFacts.of(sampler.batch_sampler, rank)

    assert rank_facts(0).digest() != rank_facts(1).digest()
    with pytest.raises(ValueError) as error:
        Ranks(None, 1, 0).agree(rank_facts(1))
    assert_names(
        error,
        "do not give every rank the same schedule",
        "the interleaved sampler has num_replicas=2, rank=1, but the group has 1 ranks",
        "the same samplers (type and seed: not one seeded by rank)",
    )


def test_e41_a_global_rng_sampler_in_a_global_run_without_a_group() -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler(RandomSampler(range(8)), config(), num_replicas=2)
    assert_names(
        error,
        "the train sampler (RandomSampler) has no generator",
        "num_replicas=2",
        "SeededRandomSampler(dataset, seed=0)",
    )


def test_e42_accelerate_prepare_of_the_loader() -> None:
    accelerate = pytest.importorskip("accelerate")
    loader = InterleavedSampler(seq(4), config()).get_data_loader()
    with pytest.raises(TypeError) as error:
        accelerate.Accelerator(cpu=True).prepare(loader)
    assert_names(error, "accelerator.prepare() got an interleaved loader", "prepare(model")


def test_e43_another_loader_over_a_caching_batch_sampler() -> None:
    callback = SamplerIntervalConfig(seq(4), every_n_updates=1, batch_size=2, cache=True)
    sampler = InterleavedSampler(seq(4), config(), callback_samplers=[callback])
    parts = sampler.get_data_loader()
    with pytest.raises(TypeError) as error:
        next(iter(DataLoader(parts.dataset, batch_sampler=parts.batch_sampler)))
    assert_names(error, "cached callbacks (cache=True)", "iterate that loader", "cache=False")


@pytest.mark.parametrize(
    ("updates", "fragment"),
    [
        ([3, 0], "every update must be an integer >= 1, got 0"),
        ([4, 4], "strictly increasing, got 4 before 4"),
        ("12", "must be a sequence of update numbers, got '12'"),
        ([True], "every update must be an integer >= 1, got True"),
    ],
)
def test_e34_at_updates_must_be_increasing_update_numbers(updates: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as error:
        SamplerIntervalConfig(seq(3), at_updates=updates)
    assert_names(error, "at_updates", fragment)


def test_e7_at_updates_with_an_interval_is_two_rules() -> None:
    with pytest.raises(ValidationError) as error:
        SamplerIntervalConfig(seq(3), every_n_updates=2, at_updates=[1, 5])
    assert_names(error, "exactly one of", "at_updates", "'at_updates': '2 updates'")


def test_e31_a_run_that_cannot_be_split_over_the_ranks() -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(12), config(batch_size=6, max_epochs=1), num_replicas=4)
    assert_names(
        error, "batch_size=6 must be a multiple of num_replicas=4", "valid num_replicas", "1, 2"
    )
    short = config(batch_size=4, drop_last=False, max_epochs=1)  # 13 = 3 x 4 + 1
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(13), short, num_replicas=2)
    assert_names(
        error,
        "the last training batch of each epoch (13 training samples in batches of batch_size=4,"
        " drop_last=False) has 1 sample, fewer than num_replicas=2",
        "or set drop_last=True",
    )


def test_e32_a_sampler_that_shards_itself_in_a_global_run() -> None:
    sharded = DistributedSampler(range(8), num_replicas=2, rank=0)
    with pytest.raises(ValueError) as error:
        InterleavedSampler(sharded, config(batch_size=2), num_replicas=2)
    assert_names(error, "every sampler must be global", "num_replicas=2, rank=0")


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [({"num_replicas": 0}, "num_replicas must be >= 1"), ({"rank": 1}, "rank must be in [0, ")],
)
def test_e33_num_replicas_and_rank(arguments: dict[str, int], fragment: str) -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(8), config(), **arguments)
    assert_names(error, fragment, "got")


# --- load_state_dict -------------------------------------------------------------------------


def test_e27_a_state_of_another_schedule_or_version() -> None:
    state = InterleavedSampler(seq(8), config()).get_data_loader().state_dict()
    other = InterleavedSampler(seq(10), config()).get_data_loader()
    with pytest.raises(ValueError) as error:
        other.load_state_dict(state)
    assert_names(error, "other data or samplers", "sampler_len: the state has 8, this run has 10")
    with pytest.raises(ValueError) as error:
        other.load_state_dict({**state, "version": 0})
    assert_names(error, "the state has version 0", "reads versions 1 and 2")
    with pytest.raises(ValueError) as error:
        other.load_state_dict({"epoch": 3})  # type: ignore[dict-item]
    assert_names(error, "needs a state from state_dict()", "got {'epoch': 3} (dict)")
    per_rank = InterleavedSampler(DistributedSampler(range(16), 2, 0), config()).get_data_loader()
    with pytest.raises(ValueError) as error:
        per_rank.load_state_dict(state)
    assert_names(error, "per_rank_sampler_replicas", "resumes on the same number of processes")


def test_e28_a_state_inside_a_pass_over_a_shuffling_callback() -> None:
    callback = every(RandomSampler(range(6)), batch_size=2, name="val")
    sampler = InterleavedSampler(seq(2), config(), callback_samplers=[callback])
    with pytest.raises(ValueError) as error:
        sampler.batch_sampler.load_state_dict(sampler.batch_sampler.state_at(2))
    assert_names(error, "resume inside a pass", "the val sampler (RandomSampler)", "batch 1")


def test_e18_also_for_a_state_inside_an_epoch() -> None:
    sampler = InterleavedSampler(RandomSampler(range(8)), config())
    with pytest.raises(ValueError) as error:
        sampler.get_data_loader().load_state_dict(sampler.batch_sampler.state_at(1))
    assert_names(error, "got RandomSampler", "update 1", "start_epoch=0")


def test_e24_index_outside_the_dataset() -> None:
    class Overshooting(SequentialSampler):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            return iter([0, 7])

    loader = InterleavedSampler(Overshooting(range(2)), config()).get_data_loader()
    with pytest.raises(IndexError) as error:
        list(loader)
    assert_names(error, "the sampler of train", "got 7", "valid: 0..1")


def test_e25_dataset_error_names_its_source() -> None:
    callback = every(SequentialSampler(FailingDataset(4, fail_at=3)), name="val")
    loader = InterleavedSampler(seq(2), config(), callback_samplers=[callback]).get_data_loader()
    stream = iter(loader)
    assert next(stream).tolist() == [0, 1]
    next(stream)  # items 0 and 1 of val load fine
    with pytest.raises(ValueError) as error:
        next(stream)
    assert_names(error, "corrupt sample 3", "while loading a batch of val: dataset indices [2, 3]")


@pytest.mark.parametrize(
    ("dataset", "collate", "raised", "message"),
    [
        (MixedDataset(), None, TypeError, "invalid data type 'str'"),
        (PidDataset(8), failing_collate, RuntimeError, "cannot collate 2 samples"),
    ],
)
def test_e25_collate_error_names_its_source(
    dataset: Any, collate: Any, raised: type[Exception], message: str
) -> None:
    sampler = InterleavedSampler(SequentialSampler(dataset), config(), train_collator=collate)
    with pytest.raises(raised) as error:
        list(sampler.get_data_loader())
    assert_names(error, message, "while collating a batch of train")


# --- not errors ------------------------------------------------------------------------------


def test_n1_drop_last_batch_size_larger_than_the_epoch_becomes_its_length() -> None:
    sampler = InterleavedSampler(seq(3), config(batch_size=8, max_epochs=2))
    assert sampler.batch_size == 3
    assert batches(sampler) == [[0, 1, 2], [0, 1, 2]]


def test_n2_callback_batch_size_larger_than_its_dataset_is_one_partial_batch() -> None:
    callback = every(seq(3), batch_size=10)
    sampler = InterleavedSampler(seq(2), config(), callback_samplers=[callback])
    assert batches(sampler) == [[0, 1], [2, 3, 4]]


def test_n3_without_drop_last_a_large_batch_size_is_one_short_batch() -> None:
    sampler = InterleavedSampler(seq(3), config(batch_size=8, drop_last=False, max_epochs=2))
    assert sampler.batch_size == 8
    assert batches(sampler) == [[0, 1, 2], [0, 1, 2]]


@pytest.mark.parametrize("start", [{"start_epoch": 2}, {"start_epoch": 9}, {"start_update": 5}])
def test_n4_a_start_at_or_past_the_stop_yields_nothing(start: dict[str, int]) -> None:
    callbacks = [every(seq(2), every_n_updates=1)]
    sampler = InterleavedSampler(seq(4), config(max_epochs=2, **start), callback_samplers=callbacks)
    assert len(sampler.batch_sampler) == 0
    assert batches(sampler) == []
