"""Hugging Face ``Trainer`` -> ``InterleavedTrainer``: one word changed, one worker pool.

    python examples/hf_trainer.py             # InterleavedTrainer
    python examples/hf_trainer.py --plain     # the same arguments with Trainer
    torchrun --standalone --nproc-per-node=2 examples/hf_trainer.py   # 2 processes (gloo)
    python examples/hf_trainer.py --save-steps 5 --output runs/hf      # checkpoints
    python examples/hf_trainer.py --resume runs/hf/checkpoint-5
    python examples/hf_trainer.py --gpu --full-determinism   # on a GPU

A tiny regression model (no downloads, ``--dropout`` for one that draws random numbers), a
train set of 90 samples and two eval sets (a dict; ``--eval-sets 1``: one eval set),
evaluated every ``--eval-steps`` optimizer steps. With ``InterleavedTrainer`` the train set
and the eval sets are loaded by one pool of ``--workers`` workers, started once; the printed
``log_history`` is ``Trainer``'s, bit for bit, on ``Trainer``'s own defaults (its train
sampler, its seed).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from interleaved_sampler.integrations.transformers import InterleavedTrainer

# log_history entries measured in seconds: they differ between any two runs
TIMINGS = ("runtime", "per_second")


@dataclass(frozen=True)
class RunConfig:
    """One run.

    Args:
        plain: ``Trainer`` instead of ``InterleavedTrainer``.
        epochs: ``num_train_epochs``.
        max_steps: ``max_steps`` (-1: from the epochs).
        batch_size: ``per_device_train_batch_size``.
        eval_batch_size: ``per_device_eval_batch_size``.
        eval_strategy: ``"steps"`` or ``"epoch"``.
        eval_steps: ``eval_steps`` (optimizer steps).
        accumulation: ``gradient_accumulation_steps``.
        workers: ``dataloader_num_workers`` (spawn).
        output: ``output_dir``.
        save_steps: save a checkpoint every this many steps (0: none).
        resume: a checkpoint folder to continue from.
        ignore_data_skip: ``ignore_data_skip``.
        learning_rate: ``learning_rate`` (0: the weights stay as initialized).
        json: write ``log_history`` (without timings) to ``output/history.json``.
        dropout: the dropout probability of the model's hidden layer.
        eval_sets: 2: a dict of two eval sets; 1: one eval set (``eval_dataset=dataset``).
        use_cpu: ``use_cpu`` (False: on the GPU where there is one).
        full_determinism: ``full_determinism`` (on a GPU: the same results every run, bit
            for bit).
    """

    plain: bool = False
    epochs: float = 2
    max_steps: int = -1
    batch_size: int = 8
    eval_batch_size: int = 2
    eval_strategy: str = "steps"
    eval_steps: int = 5
    accumulation: int = 1
    workers: int = 0
    output: Path = Path("runs/hf_trainer")
    save_steps: int = 0
    resume: Path | None = None
    ignore_data_skip: bool = False
    learning_rate: float = 0.05
    json: bool = False
    dropout: float = 0.0
    eval_sets: int = 2
    use_cpu: bool = True
    full_determinism: bool = False


def regression(size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` samples ``{"x": 4 features, "labels": sin(x @ w), "id": i}``; the model takes
    no ``id``, so ``Trainer`` removes it (``remove_unused_columns``)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 4, generator=generator)
    y = torch.sin(x @ torch.linspace(-1, 1, 4)) * 10
    return [
        {"x": row, "labels": label, "id": i}
        for i, (row, label) in enumerate(zip(x, y, strict=True))
    ]


class Regression(torch.nn.Module):
    """A small MLP returning ``{"loss", "logits"}`` as ``transformers`` models do.

    Args:
        dropout: the dropout probability of the hidden layer (0: none).
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 16),
            torch.nn.Tanh(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        out = self.net(x).squeeze(-1)
        loss = torch.nn.functional.mse_loss(out, labels) if labels is not None else None
        return {"loss": loss, "logits": out}


def arguments(config: RunConfig) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(config.output),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.accumulation,
        eval_strategy=config.eval_strategy,
        eval_steps=config.eval_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        logging_steps=1,
        learning_rate=config.learning_rate,
        dataloader_num_workers=config.workers,
        dataloader_multiprocessing_context="spawn" if config.workers else None,
        ignore_data_skip=config.ignore_data_skip,
        report_to=[],
        use_cpu=config.use_cpu,
        full_determinism=config.full_determinism,
        disable_tqdm=True,
        seed=0,
    )


def eval_sets(config: RunConfig) -> Any:
    """The eval set (one) or sets (a dict) of a run."""
    if config.eval_sets == 1:
        return regression(7, 1)
    return {"a": regression(7, 1), "b": regression(12, 2)}


def run(config: RunConfig, trainer_class: type[Trainer] | None = None) -> Trainer:
    """Train (or continue from ``config.resume``) and return the trainer."""
    trainer_class = trainer_class or (Trainer if config.plain else InterleavedTrainer)
    trainer = trainer_class(
        model=Regression(config.dropout),
        args=arguments(config),
        train_dataset=regression(90, 0),
        eval_dataset=eval_sets(config),
    )
    trainer.train(resume_from_checkpoint=str(config.resume) if config.resume else None)
    if config.json and trainer.is_world_process_zero():
        config.output.mkdir(parents=True, exist_ok=True)
        (config.output / "history.json").write_text(json.dumps(history(trainer)))
    return trainer


def history(trainer: Trainer) -> list[dict[str, float]]:
    """``log_history`` without what depends on the clock."""
    return [
        {k: v for k, v in entry.items() if not any(t in k for t in TIMINGS)}
        for entry in trainer.state.log_history
    ]


def main(argv: list[str] | None = None) -> Trainer:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RunConfig()
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--epochs", type=float, default=defaults.epochs)
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)
    parser.add_argument("--eval-strategy", default=defaults.eval_strategy)
    parser.add_argument("--eval-steps", type=int, default=defaults.eval_steps)
    parser.add_argument("--accumulation", type=int, default=defaults.accumulation)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--output", type=Path, default=defaults.output)
    parser.add_argument("--save-steps", type=int, default=defaults.save_steps)
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--ignore-data-skip", action="store_true")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--eval-sets", type=int, choices=(1, 2), default=defaults.eval_sets)
    parser.add_argument("--gpu", dest="use_cpu", action="store_false")
    parser.add_argument("--full-determinism", action="store_true")
    trainer = run(RunConfig(**vars(parser.parse_args(argv))))
    if trainer.is_world_process_zero():
        for entry in history(trainer):
            evals = {k: v for k, v in entry.items() if k.startswith("eval_") and k.endswith("loss")}
            if evals:
                shown = ", ".join(f"{k} {v:.6f}" for k, v in evals.items())
                print(f"step {entry['step']:3d}  {shown}")
        print(f"global_step {trainer.state.global_step}")
    return trainer


if __name__ == "__main__":
    main()
    if torch.distributed.is_initialized():  # end the group on every rank together
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
