"""``demo``: train a small model with two periodic evaluations through one tagged DataLoader.

See :data:`DESCRIPTION` (the command's help) for what it does; :func:`build_sampler` for the
run's configuration.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler, TensorDataset

from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.data import InterleavedBatch
from interleaved_sampler.extras import require
from interleaved_sampler.loader import InterleavedDataLoader
from interleaved_sampler.sampler import InterleavedSampler
from interleaved_sampler.samplers import SeededRandomSampler

Metrics = dict[str, dict[str, float]]
# what a resumed run must share with the run that wrote the checkpoint
RUN_SETTINGS = ("seed", "batch_size")


DESCRIPTION = """\
Train a small model with two periodic evaluations through one tagged DataLoader: a linear
model on a built-in synthetic regression set, a validation pass every --eval-every updates and
a test pass after every epoch. It shows a progress bar with the true total and a metrics table
per evaluation, and writes a checkpoint (model, optimizer, the loader's state, the metrics) when
it ends or stops early (--stop-after-batches: after any batch, also inside an evaluation pass).
--resume continues from the checkpoint to exactly the metrics of an uninterrupted run.
"""
# The options that define the run, with their defaults: a resumed run repeats them.
RUN_OPTIONS: dict[str, tuple[Any, str]] = {
    "epochs": (3, "epochs to train"),
    "batch_size": (32, "training batch size"),
    "workers": (2, "DataLoader worker processes"),
    "seed": (0, "model init and sample order"),
    "eval_every": (50, "validation interval (updates)"),
    "checkpoint": (Path("runs/demo/checkpoint.pt"), "checkpoint file"),
}


def add_parser(subparsers: Any) -> None:
    """Register the ``demo`` command.

    Args:
        subparsers: the ``add_subparsers()`` object of the main parser.
    """
    parser = subparsers.add_parser(
        "demo",
        help="train a small model with two periodic evaluations",
        description=DESCRIPTION,
        formatter_class=_HelpFormatter,
    )
    for name, (default, text) in RUN_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, help=text)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument(
        "--stop-after-batches",
        type=int,
        default=None,
        metavar="N",
        help="stop (and write the checkpoint) after batch N of the run, training or evaluation",
    )
    parser.set_defaults(func=run)


def synthetic_regression(size: int, seed: int) -> TensorDataset:
    """``y = x @ w + noise`` with a fixed ``w``: a dataset any linear model can learn."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.arange(1.0, 9.0) / 8
    x = torch.randn(size, 8, generator=generator)
    y = x @ weight + 0.1 * torch.randn(size, generator=generator)
    return TensorDataset(x, y)


def build_sampler(args: argparse.Namespace) -> InterleavedSampler:
    """Training on 2048 samples, validation (256) every ``--eval-every`` updates, test (512)
    after every epoch."""
    train = synthetic_regression(2048, seed=1)
    validation, test = synthetic_regression(256, seed=2), synthetic_regression(512, seed=3)
    return InterleavedSampler(
        SeededRandomSampler(train, seed=args.seed),
        InterleavedSamplerConfig(batch_size=args.batch_size, max_epochs=args.epochs),
        callback_samplers=[
            SamplerIntervalConfig(
                SequentialSampler(validation), every_n_updates=args.eval_every, name="validation"
            ),
            SamplerIntervalConfig(
                SequentialSampler(test), every_n_epochs=1, batch_size=128, name="test"
            ),
        ],
    )


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Any) -> float:
    x, y = data
    loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
    optimizer.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return loss.item()


def errors_of(model: torch.nn.Module, data: Any) -> torch.Tensor:
    x, y = data
    with torch.no_grad():
        prediction: torch.Tensor = model(x).squeeze(1)
        error: torch.Tensor = prediction - y
        return error


def pass_metrics(errors: list[torch.Tensor]) -> dict[str, float]:
    error = torch.cat(errors)
    return {"mse": float((error**2).mean()), "mae": float(error.abs().mean())}


def table(title: str, rows: dict[str, dict[str, float]]) -> str:
    """A small text table: one row per entry of ``rows``, one column per metric."""
    columns = sorted({column for row in rows.values() for column in row})
    width = max(len(name) for name in rows)
    lines = [title, "  " + " ".join([" " * width, *(f"{c:>10}" for c in columns)])]
    for name, row in rows.items():
        lines.append("  " + " ".join([f"{name:<{width}}", *(f"{row[c]:10.4g}" for c in columns)]))
    return "\n".join(lines)


@dataclass
class Evaluation:
    """What the evaluations have found: the latest metrics of each evaluation set, and the
    errors of the pass in progress (a run can stop, and resume, inside a pass)."""

    metrics: Metrics = field(default_factory=dict)
    errors: list[torch.Tensor] = field(default_factory=list)

    def add(self, model: torch.nn.Module, batch: InterleavedBatch) -> bool:
        """Evaluate ``model`` on an evaluation batch; True when it ended its pass (whose
        metrics are then in :attr:`metrics`)."""
        self.errors.append(errors_of(model, batch.data))
        if batch.is_last_in_pass:
            self.metrics[batch.source] = pass_metrics(self.errors)
            self.errors = []
        return batch.is_last_in_pass


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: InterleavedDataLoader,
    evaluation: Evaluation,
    args: argparse.Namespace,
) -> None:
    """Write model, optimizer, the loader's state and the evaluations to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "loader": loader.state_dict(),
            "metrics": evaluation.metrics,
            "pass_errors": evaluation.errors,
            "settings": {name: getattr(args, name) for name in RUN_SETTINGS},
        },
        path,
    )


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: InterleavedDataLoader,
    args: argparse.Namespace,
) -> Evaluation:
    """Restore model, optimizer and the loader's position; return the evaluations.

    Raises:
        ValueError: there is no checkpoint, or it was written by another run (other
            settings, another schedule) or by a demo without the loader's state.
    """
    if not path.is_file():
        raise ValueError(f"--resume: no checkpoint at {path}; run without --resume first")
    state = torch.load(path, weights_only=True)
    if "loader" not in state:
        raise ValueError(f"--resume: {path} has no loader state; run without --resume")
    for name, value in state["settings"].items():
        if getattr(args, name) != value:
            option = "--" + name.replace("_", "-")
            raise ValueError(f"--resume: the checkpoint was written with {option} {value}")
    try:
        loader.load_state_dict(state["loader"])
    except ValueError as error:
        raise ValueError(f"--resume: the checkpoint is of another run: {error}") from None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return Evaluation(state["metrics"], state["pass_errors"])


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and every option's default."""


def run(args: argparse.Namespace) -> int:
    """The ``demo`` command: train, evaluate, write the checkpoint."""
    tqdm = require("tqdm", "the demo's progress bar").tqdm
    torch.manual_seed(args.seed)
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    sampler = build_sampler(args)
    schedule = sampler.schedule
    loader = sampler.get_data_loader(num_workers=args.workers, tagged=True)
    evaluation = Evaluation()
    if args.resume:
        try:
            evaluation = load_checkpoint(args.checkpoint, model, optimizer, loader, args)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    total, start = len(loader), loader.batches_consumed
    print(
        f"{total} batches: {schedule.train_batches} training, "
        f"{total - schedule.train_batches} evaluation"
        + (f"; resuming after batch {start}" if args.resume else "")
    )
    stop = total if args.stop_after_batches is None else args.stop_after_batches
    batch: InterleavedBatch
    batches = itertools.islice(loader, max(stop - start, 0))  # asks for no batch past stop
    with tqdm(batches, initial=start, total=total, unit="batch") as bar:
        for batch in bar:
            if batch.source == "train":
                model.train()
                loss = train_step(model, optimizer, batch.data)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                continue
            model.eval()
            if evaluation.add(model, batch):
                p = batch.progress
                title = (
                    f"{batch.source} after epoch {p.epoch}, update {p.update}, sample {p.sample}"
                )
                bar.write(table(title, {batch.source: evaluation.metrics[batch.source]}))
    done = loader.batches_consumed
    save_checkpoint(args.checkpoint, model, optimizer, loader, evaluation, args)
    progress = schedule.structure.progress_at(schedule.seek(done).update)
    print(
        f"checkpoint: {args.checkpoint} (after batch {done} of {total}: "
        f"epoch {progress.epoch}, update {progress.update})"
    )
    if done < total:
        print(f"stopped after batch {done} of {total} (--stop-after-batches); continue with:")
        print(resume_command(args))
        print("latest metrics: " + (metrics_line(evaluation.metrics) or "none yet"))
    else:
        print("final metrics: " + metrics_line(evaluation.metrics))
    return 0


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this run from its checkpoint.

    Example:
        >>> resume_command(argparse.Namespace(**{n: d for n, (d, _) in RUN_OPTIONS.items()}))
        'python -m interleaved_sampler demo --resume'
    """
    options = [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name, (default, _) in RUN_OPTIONS.items()
        if getattr(args, name) != default
    ]
    return " ".join(["python -m interleaved_sampler demo --resume", *options])


def metrics_line(metrics: Metrics) -> str:
    """The latest metrics of every evaluation, to 4 significant digits.

    Example:
        >>> metrics_line({"test": {"mse": 0.0123456, "mae": 0.1}})
        'test mae=0.1 mse=0.01235'
    """
    return "; ".join(
        f"{source} " + " ".join(f"{name}={value:.4g}" for name, value in sorted(values.items()))
        for source, values in sorted(metrics.items())
    )
