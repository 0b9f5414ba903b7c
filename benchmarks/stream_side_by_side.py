"""A stream and two evaluation sets: a plain PyTorch loop's loaders against one pool.

The training source is an endless ``IterableDataset`` (as torchtitan's infinite training
datasets, or Hugging Face ``datasets`` in streaming mode): worker ``w`` of ``W`` yields the
samples ``w, w + W, ...``, each costing ``--sample-ms`` of CPU (the ``bench`` command's
synthetic samples); two map-style evaluation sets of the same samples are evaluated every
``--eval-every`` updates. The same loop (the Lightning benchmark's MLP, SGD) runs three ways,
alternating rounds:

- ``non-persistent``: ``DataLoader(stream, batch_size, num_workers=W)`` for training, and a new
  ``DataLoader`` per evaluation set at every evaluation, a fresh pool each time (what
  torchtitan's ``Validator.validate()`` does, and the Hugging Face ``Trainer`` and Lightning);
- ``persistent``: the same with ``persistent_workers=True`` on the evaluation loaders: a pool
  for the stream and one per evaluation set, kept for the run;
- ``one pool``: ``InterleavedSampler(Stream(stream), ...).get_loaders(num_workers=W)``: the
  loop's ``train`` and ``evaluation`` loaders read one pool, for the run.

The loop is the same code in all three (``fit_loop``): ``next()`` on the train iterator, and
``for batch in eval_loader`` for every set every ``--eval-every`` updates. Every run must see
the same samples in the same order and end with bit-identical weights, or the script fails.
The measurements, the rounds and the report are those of the framework benchmarks
(``side_by_side.py``): wall time of the loop, peak PSS of the process tree, worker processes
started (a ``StartupCounter`` as every loader's ``worker_init_fn``), CPU time.

Then the cost of a resume inside the stream: ``load_state_dict`` and the first batch of a run
over a Hugging Face ``datasets`` stream whose rows cost ``--sample-ms`` each to produce (a
``.map``), resumed after ``--resume-at`` updates from the state, which brings every copy to its
position by the dataset's own ``load_state_dict``, and from the same state without the copies'
records, which replays them.

Usage: python benchmarks/stream_side_by_side.py [--rounds 3] [--updates 256] [--eval-every 32]
       [--workers 2] [--sample-ms 1] [--start-method spawn] [--resume-at 200] [--quick]
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

import side_by_side as shared
import torch
from torch.utils.data import DataLoader

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    Stream,
)
from interleaved_sampler.bench.scenario import Datasets, SyntheticDataset, burn_cpu


@dataclass(frozen=True)
class StreamSetting(shared.Setting):
    """The benchmarked run (``train_size`` unused: the stream has no end) and the resume.

    Args:
        resume_at: the updates before the resumed position.
        resume_repeats: resumes measured per way (the median is reported).
    """

    resume_at: int = 200
    resume_repeats: int = 3


QUICK = StreamSetting(**shared.QUICK_SIZES, resume_at=16, resume_repeats=1)
VARIANTS = shared.main_variants(shared.Variant, "one pool")


def synthetic_stream(setting: shared.Setting) -> shared.EndlessStream:
    """The bench's synthetic samples as an endless stream."""
    return shared.EndlessStream(SyntheticDataset(0, 0, setting.scenario))


def loop_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Sequence[torch.Tensor]
) -> None:
    """One SGD step of the MLP on a batch of ``(tags, payload)``."""
    _tags, payload = batch
    x = shared.features(payload)
    loss = torch.nn.functional.mse_loss(model(x), shared.target(x))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def fit_loop(
    train: Iterable[Any],
    evaluation: Mapping[str, Iterable[Any]],
    setting: shared.Setting,
    model: torch.nn.Module,
    seen: shared.Seen,
) -> None:
    """The plain loop of every variant: ``updates`` training batches, every set evaluated
    every ``eval_every`` updates."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = iter(train)
    for update in range(1, setting.updates + 1):
        batch = next(batches)
        seen.add("train", batch[0][:, 1])
        loop_step(model, optimizer, batch)
        if update % setting.eval_every == 0:
            with torch.no_grad():
                for name, loader in evaluation.items():
                    for tags, payload in loader:
                        seen.add(name, tags[:, 1])
                        model(shared.features(payload))


def loader_arguments(
    setting: shared.Setting, context: BaseContext, counter: Any, persistent: bool = False
) -> dict[str, Any]:
    if not setting.workers:
        return {}
    arguments = {
        "num_workers": setting.workers,
        "multiprocessing_context": context,
        "worker_init_fn": counter,
    }
    return arguments | ({"persistent_workers": True} if persistent else {})


def eval_sets(setting: shared.Setting) -> dict[str, SyntheticDataset]:
    return {f"eval{i}": data for i, data in enumerate(Datasets.of(setting.scenario).evals)}


def one_pool(setting: shared.Setting) -> InterleavedSampler:
    """The run over ``Stream(synthetic_stream(...))`` with the evaluation sets every
    ``eval_every`` updates."""
    callbacks = [
        SamplerIntervalConfig(
            torch.utils.data.SequentialSampler(data),
            every_n_updates=setting.eval_every,
            batch_size=setting.eval_batch_size,
            name=name,
        )
        for name, data in eval_sets(setting).items()
    ]
    config = InterleavedSamplerConfig(batch_size=setting.batch_size, max_updates=setting.updates)
    return InterleavedSampler(
        Stream(synthetic_stream(setting)), config, callback_samplers=callbacks
    )


class FreshLoaders(Mapping[str, Iterable[Any]]):
    """Evaluation loaders made when the loop asks for them: a new ``DataLoader`` (and pool)
    per evaluation, as ``Validator.validate()`` makes one."""

    def __init__(self, sets: Mapping[str, Any], batch_size: int, arguments: Any) -> None:
        self.sets, self.batch_size, self.arguments = sets, batch_size, arguments

    def __getitem__(self, name: str) -> Iterable[Any]:
        return DataLoader(self.sets[name], self.batch_size, **self.arguments)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sets)

    def __len__(self) -> int:
        return len(self.sets)


def fit_once(variant: shared.Variant, setting: shared.Setting, context: BaseContext) -> shared.Run:
    """Run ``variant`` once, measured."""
    meter = shared.FitMeter(setting, context)
    model = shared.mlp()
    arguments = loader_arguments(setting, context, meter.counter)
    evaluation: Mapping[str, Iterable[Any]]
    if variant.one_pool:
        loaders = one_pool(setting).get_loaders(**arguments)
        train, evaluation = loaders.train, loaders.evaluation
    else:
        train = DataLoader(synthetic_stream(setting), setting.batch_size, **arguments)
        persistent = loader_arguments(setting, context, meter.counter, variant.persistent)
        sets, size = eval_sets(setting), setting.eval_batch_size
        if variant.persistent:
            evaluation = {name: DataLoader(data, size, **persistent) for name, data in sets.items()}
        else:
            evaluation = FreshLoaders(sets, size, arguments)
    with meter:
        fit_loop(train, evaluation, setting, model, meter.seen)
        if variant.one_pool:
            loaders.close()
    del train, evaluation
    if variant.one_pool:
        del loaders
    return meter.run(variant.name, model.state_dict())


# --- resume: the copies' own state_dict against replaying them ---------------------------


def costly(row: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A ``datasets`` ``.map`` function that costs ``seconds`` of CPU per row."""
    burn_cpu(seconds)
    return row


def hf_stream_run(setting: StreamSetting) -> InterleavedSampler:
    """A run over a Hugging Face ``datasets`` stream (built in memory, 8 shards) whose rows
    cost ``sample_ms`` each to produce, long enough that no copy runs out."""
    from datasets import Dataset

    rows = (setting.resume_at + 2) * setting.batch_size
    table = Dataset.from_dict({"x": list(range(rows))})
    stream = table.to_iterable_dataset(num_shards=8).map(
        costly, fn_kwargs={"seconds": setting.sample_ms / 1000}
    )
    config = InterleavedSamplerConfig(
        batch_size=setting.batch_size, max_updates=setting.resume_at + 1
    )
    return InterleavedSampler(Stream(stream), config)


def first_batch_seconds(
    setting: StreamSetting, context: BaseContext, state: dict[str, Any] | None
) -> float:
    """Seconds for ``load_state_dict(state)`` (if given) and the first batch."""
    arguments = loader_arguments(setting, context, None)
    loader = hf_stream_run(setting).get_data_loader(**arguments)
    began = time.perf_counter()
    if state is not None:
        loader.load_state_dict(state)
    next(iter(loader))
    return time.perf_counter() - began


def resume_lines(setting: StreamSetting, context: BaseContext) -> list[str]:
    """The resume's cost both ways, and a fresh start's, median of ``resume_repeats``."""
    loader = hf_stream_run(setting).get_data_loader(**loader_arguments(setting, context, None))
    batches = iter(loader)
    for _ in range(setting.resume_at):
        next(batches)
    with_records = loader.state_dict()
    del batches
    without = {key: value for key, value in with_records.items() if key != "stream_copies"}
    fresh, by_state, by_replay = [], [], []
    for _ in range(setting.resume_repeats):
        fresh.append(first_batch_seconds(setting, context, None))
        by_state.append(first_batch_seconds(setting, context, with_records))
        by_replay.append(first_batch_seconds(setting, context, without))
    state, replay, start = map(statistics.median, (by_state, by_replay, fresh))
    consumed = setting.resume_at * setting.batch_size
    return [
        f"resume after {setting.resume_at} updates ({consumed} rows of a Hugging Face stream, "
        f"{setting.sample_ms:g} ms each; {setting.workers} workers): load_state_dict + first "
        f"batch, median of {setting.resume_repeats}:",
        f"- by the copies' state_dict: **{state:.2f} s**; by replaying them: **{replay:.2f} s** "
        f"({replay / state:.1f}x); a fresh start: {start:.2f} s",
    ]


OPTIONS = {
    **shared.options(
        "training updates",
        ("eval-every", "an evaluation of every set every this many updates"),
        "num_workers of every loader",
    ),
    "start-method": ("start_method", "multiprocessing_context of every loader"),
    "resume-at": ("resume_at", "updates before the resumed position"),
}


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> shared.Report:
    """Run the benchmark, print the table, the ratios and the resume's cost, and return them.

    Raises:
        SampleMismatchError: two runs did not see the same samples or their weights differ.
    """
    setting = shared.parse(argv, __doc__.splitlines()[0], StreamSetting(), QUICK, OPTIONS)
    results = shared.run_rounds(setting, VARIANTS, fit_once, log)
    phases = [("train", "training"), ("eval", "evaluation")]
    head = shared.describe(setting, "updates", "evaluation", source="from an endless stream")
    tail = shared.summary(results, "one pool", "the loop")
    context = multiprocessing.get_context(setting.start_method)
    with shared.one_torch_thread():
        tail += resume_lines(setting, context)
    return shared.report(results, head, shared.same_samples(results, phases), tail, log)


if __name__ == "__main__":
    main()
