"""Hugging Face Trainer side by side: ``Trainer`` and ``InterleavedTrainer``, one word changed.

The same model (the Lightning benchmark's 16-32-1 MLP, ``forward(x, labels) -> {"loss",
"logits"}``, drawing no random numbers), the same ``TrainingArguments`` and the same data
(the ``bench`` command's worker-bound synthetic datasets as dicts ``{"x": payload, "labels"}``:
a map-style train set whose ``__getitem__`` burns ``--sample-ms`` of CPU, two eval sets as a
dict; ``spawn`` workers), evaluated every ``--eval-steps`` optimizer steps
(``eval_strategy="steps"``), trained three ways in alternating rounds:

- ``non-persistent``: ``Trainer``: a fresh pool of workers for every epoch and for every
  evaluation of each eval set;
- ``persistent``: ``Trainer`` with ``dataloader_persistent_workers=True``: a pool for the train
  set and one per eval set, kept for the run;
- ``interleaved``: ``InterleavedTrainer`` with the non-persistent variant's arguments: one pool
  for training and every evaluation, for the run.

All three use ``Trainer``'s own train sampler (no override: Accelerate's seedable order,
which ``InterleavedTrainer`` reproduces), so all must see the same samples in the same order,
end with bit-identical weights and log the same eval losses, or the script fails.
Measured per ``trainer.train()``: wall time, peak PSS summed over the process tree, worker
processes started (a ``StartupCounter`` chained before every loader's ``worker_init_fn``:
``Trainer`` gives one only to its train loaders, so ``_get_dataloader`` is overridden to add
it to every loader; ``InterleavedTrainer``'s one pool gets it through ``_loader_arguments``),
CPU time. The worker-bound limit is the loading work of a fit divided by the workers; the
pool start-up is measured apart. The data, the measurement, the rounds and the report are
those of the Lightning benchmark (``side_by_side.py``).

The main process steps the tiny model with one torch thread (``torch.set_num_threads(1)``, as
a DataLoader worker does), and imports ``transformers`` only in the parent: a spawned worker
re-imports the main script, and a training script that imports ``transformers`` at the top
makes every spawned worker that much dearer, which ``Trainer`` pays more often.

With ``--stream`` the train set is an endless ``IterableDataset`` of the same samples (worker
``w`` of ``W`` yields the samples ``w, w + W, ...``): ``Trainer`` then loads it through one
pool for the run (a stream's one epoch) and still starts evaluation workers per evaluation
(non-persistent) or keeps a pool per eval set (persistent); ``InterleavedTrainer`` serves the
stream and every evaluation from one pool.

Usage: python benchmarks/hf_trainer_side_by_side.py [--rounds 3] [--updates 256]
       [--eval-steps 32] [--workers 2] [--sample-ms 1] [--stream] [--quick]
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

import side_by_side as shared
import torch

from interleaved_sampler.bench.measure import StartupCounter
from interleaved_sampler.bench.scenario import Datasets


@dataclass(frozen=True)
class TrainerSetting(shared.Setting):
    """The benchmarked run (``updates``: ``max_steps``; ``eval_every``: ``eval_steps``).
    ``Trainer`` also evaluates at the last step when it is not a multiple of ``eval_steps``.

    Args:
        stream: the train set an endless ``IterableDataset`` (a stream).
    """

    stream: bool = False

    @property
    def passes(self) -> int:
        """Evaluations of a run: every ``eval_steps`` steps, and at the last step."""
        return -(-self.updates // self.eval_every)


QUICK = TrainerSetting(**shared.QUICK_SIZES)
VARIANTS = shared.main_variants(shared.Variant, "interleaved")


class BenchModel(torch.nn.Module):
    """The shared MLP on the first floats of each payload, returning ``{"loss", "logits"}``
    as ``transformers`` models do.

    Args:
        seen: records every batch it trains or evaluates on (the sample index is every
            float of a payload).
    """

    def __init__(self, seen: shared.Seen) -> None:
        super().__init__()
        self.net, self.seen = shared.mlp(), seen

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.add("train" if self.training else "eval", x[:, 0])
        logits = self.net(shared.features(x))
        return {"loss": torch.nn.functional.mse_loss(logits, labels), "logits": logits}


def datasets(setting: TrainerSetting) -> tuple[Any, dict[str, shared.DictSamples]]:
    """The train set (a stream of its samples with ``setting.stream``) and the eval sets (a
    dict: ``set0``, ``set1``, ...), as dicts of tensors."""
    data = Datasets.of(setting.scenario)
    evals = {f"set{i}": shared.DictSamples(each) for i, each in enumerate(data.evals)}
    train = shared.DictSamples(data.train)
    return (shared.EndlessStream(train) if setting.stream else train), evals


# A spawned worker imports this script again as "__mp_main__" before it starts; it needs
# nothing of transformers, so only the parent imports it (see the module docstring).
if __name__ != "__mp_main__":
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from interleaved_sampler.integrations.transformers import InterleavedTrainer

    class Instrumented:
        """What every benchmarked trainer adds: the start-up counter chained before a
        loader's ``worker_init_fn``."""

        counter: StartupCounter | None = None

        def counting(self, worker_init_fn: Callable[[int], None] | None) -> Any:
            """``worker_init_fn`` with the start-ups counted first."""
            if self.counter is None:
                return worker_init_fn
            return shared.CountingInit(self.counter, worker_init_fn)

    class BenchTrainer(Instrumented, Trainer):
        """``Trainer``, every loader's worker start-ups counted (it gives a ``worker_init_fn``
        only to train loaders)."""

        def _get_dataloader(self, *args: Any, **kwargs: Any) -> Any:
            loader = super()._get_dataloader(*args, **kwargs)
            base = getattr(loader, "base_dataloader", loader)  # under Accelerate's adapter
            base.worker_init_fn = self.counting(base.worker_init_fn)
            return loader

    class BenchInterleavedTrainer(Instrumented, InterleavedTrainer):
        """``InterleavedTrainer``, its one pool's worker start-ups counted."""

        def _loader_arguments(self) -> dict[str, Any]:
            arguments = super()._loader_arguments()
            arguments["worker_init_fn"] = self.counting(arguments["worker_init_fn"])
            return arguments


def arguments(setting: shared.Setting, persistent: bool, output: str) -> TrainingArguments:
    """The ``TrainingArguments`` of every run (``persistent``: persistent workers)."""
    workers = setting.workers
    return TrainingArguments(
        output_dir=output,
        max_steps=setting.updates,
        per_device_train_batch_size=setting.batch_size,
        per_device_eval_batch_size=setting.eval_batch_size,
        learning_rate=0.01,
        eval_strategy="steps",
        eval_steps=setting.eval_every,
        dataloader_num_workers=workers,
        dataloader_multiprocessing_context=setting.start_method if workers else None,
        dataloader_persistent_workers=persistent and workers > 0,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )


def eval_losses(trainer: Trainer) -> tuple[tuple[str, float], ...]:
    """Every eval loss ``trainer`` logged, in order, as ``("step:key", loss)``."""
    return tuple(
        (f"{entry['step']}:{key}", float(value))
        for entry in trainer.state.log_history
        for key, value in entry.items()
        if key.startswith("eval_") and key.endswith("_loss")
    )


def fit_once(variant: shared.Variant, setting: TrainerSetting, context: BaseContext) -> shared.Run:
    """Train ``variant`` once, measured."""
    meter = shared.FitMeter(setting, context)
    model = BenchModel(meter.seen)
    train, evals = datasets(setting)
    kind = BenchInterleavedTrainer if variant.one_pool else BenchTrainer
    with tempfile.TemporaryDirectory() as output:
        trainer = kind(
            model=model,
            args=arguments(setting, variant.persistent, output),
            train_dataset=train,
            eval_dataset=evals,
        )
        trainer.remove_callback(PrinterCallback)  # no metrics printed at every evaluation
        trainer.counter = meter.counter
        with meter:
            trainer.train()
        losses = eval_losses(trainer)
        del trainer
    return meter.run(variant.name, model.state_dict(), losses)


OPTIONS = shared.options(
    "TrainingArguments(max_steps=...)",
    ("eval-steps", "TrainingArguments(eval_steps=...), in optimizer steps"),
    "dataloader_num_workers",
) | {"stream": ("stream", "the train set an endless IterableDataset")}


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> shared.Report:
    """Run the benchmark, print the table and the ratios, and return them.

    Raises:
        SampleMismatchError: two runs did not see the same samples, their weights or their
            eval losses differ.
    """
    setting = shared.parse(argv, __doc__.splitlines()[0], TrainerSetting(), QUICK, OPTIONS)
    results = shared.run_rounds(setting, VARIANTS, fit_once, log)
    phases = [("train", "training"), ("eval", "evaluation")]
    return shared.report(
        results,
        shared.describe(
            setting,
            "steps",
            "evaluation",
            source="from an endless stream" if setting.stream else None,
        ),
        shared.same_samples(results, phases, ", the same eval losses"),
        shared.summary(results, "interleaved", "Trainer"),
        log,
    )


if __name__ == "__main__":
    main()
