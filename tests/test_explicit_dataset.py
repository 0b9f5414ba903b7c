"""Samplers that expose no dataset (torch's ``WeightedRandomSampler``, ``SubsetRandomSampler``)
with the dataset given explicitly: ``InterleavedSampler(..., train_dataset=...)`` and
``SamplerIntervalConfig(..., dataset=...)``, in a plain loop, in ``InterleavedDataModule`` and
in ``InterleavedTrainer``; and the errors when it is missing, different or too short."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import IdentityDataset, seq
from test_errors import assert_names, config, every
from test_lightning_datamodule import BASE, validation_steps
from test_lightning_datamodule import assert_same as assert_same_lightning
from test_lightning_datamodule import example as lightning_example
from test_transformers import assert_same as assert_same_trainer
from test_transformers import example as hf_example
from torch.utils.data import (
    DataLoader,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)
from transformers import Trainer

from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.integrations.transformers import InterleavedTrainer


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def weighted(length: int, seed: int = 0, samples: int | None = None) -> WeightedRandomSampler:
    """Later samples drawn more often; ``samples`` draws (default ``length``)."""
    weights = torch.linspace(0.1, 1.0, length)
    return WeightedRandomSampler(weights, samples or length, generator=generator(seed))


def subset(indices: list[int], seed: int = 1) -> SubsetRandomSampler:
    return SubsetRandomSampler(indices, generator=generator(seed))


def plain_batches(dataset: Any, sampler: Sampler[int], batch_size: int, times: int) -> list[Any]:
    """What a plain DataLoader yields in ``times`` iterations (epochs or passes)."""
    loader = DataLoader(dataset, batch_size, sampler=sampler)
    return [batch.tolist() for _ in range(times) for batch in loader]


# --- a plain loop: the loader's batches are a plain DataLoader's --------------------------


def test_weighted_train_and_subset_callback_load_what_plain_dataloaders_load() -> None:
    train, val = IdentityDataset(30), IdentityDataset(12, base=1000)
    run = InterleavedSampler(
        weighted(30, samples=20),
        InterleavedSamplerConfig(batch_size=8, drop_last=False, max_epochs=2),
        callback_samplers=[
            SamplerIntervalConfig(subset([1, 4, 5, 9, 11]), every_n_epochs=1, dataset=val)
        ],
        train_dataset=train,
    )
    got = [(b.source, b.data.tolist()) for b in run.get_data_loader(tagged=True)]
    epochs = iter(plain_batches(train, weighted(30, samples=20), 8, 2))  # 3 batches each
    passes = iter(plain_batches(val, subset([1, 4, 5, 9, 11]), 8, 2))  # 1 batch each
    expected = []
    for _ in range(2):
        expected += [("train", next(epochs)) for _ in range(3)] + [("callback0", next(passes))]
    assert got == expected
    assert all(0 <= i < 30 for source, batch in got if source == "train" for i in batch)
    assert {i for source, batch in got if source != "train" for i in batch} == {
        1001, 1004, 1005, 1009, 1011,
    }  # fmt: skip
    assert run.dataset.datasets == [train, val]  # the datasets given, concatenated


def test_subset_train_sampler_with_workers_and_split_loaders() -> None:
    """A ``SubsetRandomSampler`` of the train set, 2 workers (fork), split loaders: each epoch
    is a permutation of the subset, the evaluation pass the whole val set in order."""
    train = TensorDataset(torch.arange(100, 120))
    indices = [0, 3, 4, 7, 10, 12, 15, 19]
    run = InterleavedSampler(
        subset(indices),
        InterleavedSamplerConfig(batch_size=3, drop_last=False, max_epochs=2),
        callback_samplers=[SamplerIntervalConfig(seq(5, base=50), every_n_epochs=1, name="val")],
        train_dataset=train,
    )
    loaders = run.get_loaders(num_workers=2, multiprocessing_context="fork")
    for _ in range(2):
        epoch = [value for (batch,) in loaders.train for value in batch.tolist()]
        assert sorted(epoch) == [100 + i for i in indices]
        assert [b.tolist() for b in loaders.evaluation["val"]] == [[50, 51, 52], [53, 54]]
    loaders.close()


def test_the_same_dataset_on_the_sampler_and_given_is_accepted() -> None:
    dataset = IdentityDataset(6)
    run = InterleavedSampler(
        SequentialSampler(dataset), config(max_epochs=1, batch_size=3), train_dataset=dataset
    )
    assert [b.tolist() for b in run.get_data_loader()] == [[0, 1, 2], [3, 4, 5]]


# --- resuming: a sampler that draws a new order cannot replay an epoch ---------------------


def test_e18_a_weighted_sampler_resumes_at_epoch_boundaries_only() -> None:
    dataset = IdentityDataset(12)

    def build(**start: int) -> InterleavedSampler:
        settings = {"batch_size": 4, "max_epochs": 2, **start}
        return InterleavedSampler(
            weighted(12), InterleavedSamplerConfig(**settings), train_dataset=dataset
        )

    assert len(list(build(start_epoch=1).get_data_loader())) == 3
    with pytest.raises(ValueError) as error:  # E18, at construction
        build(start_update=2)
    assert_names(error, "repeats its epoch order", "got WeightedRandomSampler", "start_epoch=0")
    loader = build().get_data_loader()
    batches = iter(loader)
    next(batches)
    state = loader.state_dict()
    with pytest.raises(ValueError) as error:  # the same from a state saved inside an epoch
        build().get_data_loader().load_state_dict(state)
    assert_names(error, "repeats its epoch order", "got WeightedRandomSampler")


@pytest.mark.parametrize("sampler", [weighted(4), subset([0, 2])], ids=["weighted", "subset"])
def test_a_cached_callback_over_a_random_sampler_is_refused(sampler: Sampler[int]) -> None:
    callback = SamplerIntervalConfig(sampler, every_n_epochs=1, dataset=range(4), cache=True)
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(4), config(), callback_samplers=[callback])
    assert_names(error, "cache=True", f"sampler {type(sampler).__name__} shuffles")


# --- errors -------------------------------------------------------------------------------


def test_e13_a_sampler_without_dataset_is_told_to_pass_train_dataset() -> None:
    with pytest.raises(TypeError) as error:
        InterleavedSampler(weighted(4), config())
    assert_names(
        error,
        "the train sampler WeightedRandomSampler exposes no dataset",
        ".data_source",
        "pass the dataset it samples from as InterleavedSampler(train_dataset=...)",
    )


def test_e13_a_callback_sampler_without_dataset_is_told_to_pass_dataset() -> None:
    callback = SamplerIntervalConfig(subset([0, 1]), every_n_epochs=1, name="val")
    with pytest.raises(TypeError) as error:
        InterleavedSampler(seq(4), config(), callback_samplers=[callback])
    assert_names(
        error,
        "the val sampler SubsetRandomSampler exposes no dataset",
        "as SamplerIntervalConfig(dataset=...) of callback_samplers[0]",
    )


def test_e35_a_train_dataset_other_than_the_samplers_is_refused() -> None:
    sampler, other = seq(4), IdentityDataset(4)
    with pytest.raises(ValueError) as error:
        InterleavedSampler(sampler, config(), train_dataset=other)
    assert_names(
        error,
        "InterleavedSampler(train_dataset=...) and the dataset of the train sampler "
        "SequentialSampler (its .data_source) are different objects",
        f"IdentityDataset (4 samples, id {id(other):#x})",
        f"IdentityDataset (4 samples, id {id(sampler.data_source):#x})",
    )


def test_e35_a_callback_dataset_other_than_the_samplers_is_refused() -> None:
    callback = every(seq(3), dataset=IdentityDataset(3))
    with pytest.raises(ValueError) as error:
        InterleavedSampler(seq(4), config(), callback_samplers=[callback])
    assert_names(
        error,
        "SamplerIntervalConfig(dataset=...) of callback_samplers[0] and the dataset of the "
        "callback0 sampler SequentialSampler (its .data_source) are different objects",
    )


@pytest.mark.parametrize(
    ("sampler", "indices"),
    [
        (weighted(7), "from 0 to 6"),
        (subset([2, 6]), "from 2 to 6"),
        (SubsetRandomSampler(torch.tensor([6, 3])), "from 3 to 6"),
        (subset([-1]), "from -1"),
    ],
    ids=["weighted", "subset", "subset-tensor", "negative"],
)
def test_e36_indices_outside_the_given_dataset_are_refused(
    sampler: Sampler[int], indices: str
) -> None:
    with pytest.raises(ValueError) as error:
        InterleavedSampler(sampler, config(), train_dataset=IdentityDataset(6))
    assert_names(
        error,
        f"the train sampler {type(sampler).__name__} yields indices {indices}",
        "outside InterleavedSampler(train_dataset=...)",
        "valid: indices in [0, 6)",
    )


def test_e36_a_given_dataset_needs_a_length() -> None:
    with pytest.raises(TypeError) as error:
        InterleavedSampler(weighted(4), config(), train_dataset=iter(range(4)))
    assert_names(
        error, "InterleavedSampler(train_dataset=...) must be a map-style dataset with len()"
    )


# --- InterleavedDataModule: the loader's dataset ------------------------------------------


class WeightedData(lightning_example.RegressionData):  # type: ignore[misc,name-defined]
    """The example's DataModule with a ``WeightedRandomSampler`` in ``train_dataloader``
    (seeded, so the plain and the wrapped runs draw the same)."""

    def train_dataloader(self) -> DataLoader[Any]:
        sampler = weighted(len(self.train_set), samples=64)
        return DataLoader(self.train_set, 8, sampler=sampler, **self.loader_arguments())


class SubsetData(lightning_example.RegressionData):  # type: ignore[misc,name-defined]
    """A ``SubsetRandomSampler`` of the train set, and of the first validation set."""

    def train_dataloader(self) -> DataLoader[Any]:
        sampler = subset(list(range(0, 90, 2)))
        return DataLoader(self.train_set, 8, sampler=sampler, **self.loader_arguments())

    def val_dataloader(self) -> list[DataLoader[Any]]:
        first, second = self.val_sets
        return [
            DataLoader(first, 6, sampler=subset(list(range(0, 20, 3)), seed=2)),
            DataLoader(second, 4),
        ]


@pytest.mark.filterwarnings("ignore:the train sampler")  # no exact mid-epoch resume: warned
@pytest.mark.parametrize("data", [WeightedData, SubsetData], ids=["weighted", "subset"])
def test_datamodule_with_samplers_without_dataset_equals_the_plain_run(data: type) -> None:
    config = replace(BASE, epochs=2)
    wrapped = lightning_example.run(config, data())
    assert_same_lightning(wrapped, lightning_example.run(replace(config, plain=True), data()))
    # 64 draws or 45 samples in batches of 8: 8 or 6 per epoch; validation every 5 batches
    steps, validations = {"WeightedData": (16, [4, 9, 14]), "SubsetData": (12, [4, 9])}[
        data.__name__
    ]
    assert wrapped.global_step == steps
    assert validation_steps(wrapped) == validations


# --- InterleavedTrainer: the dataset it built the sampler over ----------------------------


class WeightedSampling:
    """``_get_train_sampler`` returning a seeded ``WeightedRandomSampler``, which exposes no
    dataset."""

    train_dataset: Any

    def _get_train_sampler(self, train_dataset: Any = None) -> WeightedRandomSampler:
        return weighted(len(train_dataset or self.train_dataset), samples=48)


class WeightedTrainer(WeightedSampling, Trainer):
    """``Trainer`` with the weighted train sampler."""


class WeightedInterleavedTrainer(WeightedSampling, InterleavedTrainer):
    """``InterleavedTrainer`` with the weighted train sampler."""


def test_trainer_with_a_weighted_train_sampler_equals_trainer(tmp_path: Path) -> None:
    config = hf_example.RunConfig(output=tmp_path)
    interleaved = hf_example.run(config, WeightedInterleavedTrainer)
    assert_same_trainer(interleaved, hf_example.run(config, WeightedTrainer))
    assert interleaved.state.global_step == 2 * 6  # 48 draws in batches of 8, 2 epochs


def test_trainer_resumes_a_weighted_sampler_inside_an_epoch_only_restarting_it(
    tmp_path: Path,
) -> None:
    """A checkpoint inside an epoch (step 4 of 6) cannot be continued exactly with a sampler
    that draws a new order each epoch: E18; ``ignore_data_skip`` restarts the epoch's data."""
    saved = hf_example.RunConfig(output=tmp_path / "saved", save_steps=4, eval_strategy="epoch")
    hf_example.run(saved, WeightedInterleavedTrainer)
    resume = replace(
        saved, output=tmp_path / "resumed", save_steps=0, resume=saved.output / "checkpoint-4"
    )
    with pytest.raises(ValueError) as error:
        hf_example.run(resume, WeightedInterleavedTrainer)
    assert_names(error, "repeats its epoch order", "got WeightedRandomSampler", "update 4")
    restarted = hf_example.run(replace(resume, ignore_data_skip=True), WeightedInterleavedTrainer)
    assert restarted.state.global_step == 12
