"""benchmarks/side_by_side.py, what the framework benchmarks share: the check that every fit
saw the same samples, ended with the same weights and reported the same metrics."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from benchmark_scripts import load

from interleaved_sampler.bench.scenario import Datasets

pytest.importorskip("psutil")


def test_a_fit_that_saw_other_samples_fails_the_check() -> None:
    shared = load("side_by_side")
    seen, other = shared.Seen(), shared.Seen()
    seen.add("train", torch.tensor([1, 2]))
    other.add("train", torch.tensor([2, 1]))
    weights = {"w": torch.zeros(2)}
    run = shared.Run("a", 1.0, 0.5, 0, 0, 1.0, 1.0, 0.0, seen, weights, (("eval_loss", 0.5),))
    shared.check_same([run, replace(run, variant="b")])
    with pytest.raises(shared.SampleMismatchError, match="b saw other samples than a"):
        shared.check_same([run, replace(run, variant="b", seen=other)])
    with pytest.raises(shared.SampleMismatchError, match="other weights"):
        shared.check_same([run, replace(run, variant="b", weights={"w": torch.ones(2)})])
    with pytest.raises(shared.SampleMismatchError, match="b reported other metrics than a"):
        shared.check_same([run, replace(run, variant="b", metrics=(("eval_loss", 0.25),))])


def test_the_dict_samples_are_the_synthetic_ones() -> None:
    shared = load("side_by_side")
    setting = replace(shared.Setting(), sample_ms=0.0, train_size=3)
    samples = shared.DictSamples(Datasets.of(setting.scenario).train)
    item = samples[2]
    assert len(samples) == 3
    assert torch.equal(item["x"], torch.full((48 * 256,), 2.0))
    assert torch.equal(item["labels"], torch.sin(torch.tensor([3 * 2 / 1024])))
