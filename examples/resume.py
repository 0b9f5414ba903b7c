"""Stop a run, resume it from its checkpoint, and end exactly where an uninterrupted run ends.

After training batch ``b`` (and the evaluation passes that follow it) the run has done
``b.progress.update + 1`` updates; a checkpoint of model, optimizer and that number resumes
the run exactly with ``InterleavedSamplerConfig(..., start_update=b.progress.update + 1)``:
the same remaining batches in the same order (even inside an epoch, with
``SeededRandomSampler``), the same evaluations at the same points.

    python examples/resume.py --stop-at 45
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler, TensorDataset

from interleaved_sampler import (
    InterleavedSampler,
    InterleavedSamplerConfig,
    SamplerIntervalConfig,
    SeededRandomSampler,
)

TRAIN = TensorDataset(torch.linspace(-1, 1, 600)[:, None], torch.linspace(-1, 1, 600) ** 2)
VAL = TensorDataset(torch.linspace(-1, 1, 100)[:, None], torch.linspace(-1, 1, 100) ** 2)


def make_sampler(epochs: int, start_update: int) -> InterleavedSampler:
    return InterleavedSampler(
        SeededRandomSampler(TRAIN, seed=7),
        InterleavedSamplerConfig(batch_size=32, max_epochs=epochs, start_update=start_update),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(VAL), every_n_updates=10, name="val")
        ],
    )


def train(
    epochs: int, workers: int, checkpoint: Path, resume: bool, stop_at: int | None
) -> list[str]:
    """Train (from ``checkpoint`` if ``resume``), write ``checkpoint`` when stopping at
    ``stop_at`` updates or at the end; return the evaluation log."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    done = 0
    if resume:
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done = state["updates"]
    log, errors = [], []
    for batch in make_sampler(epochs, start_update=done).get_data_loader(
        num_workers=workers, tagged=True
    ):
        x, y = batch.data
        if batch.source == "train":
            if done == stop_at:  # every pass due after update `done` has been handled
                break
            loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done = batch.progress.update + 1  # the resume point after this batch
            continue
        with torch.no_grad():
            errors.append((model(x).squeeze(1) - y) ** 2)
        if batch.is_last_in_pass:
            mse = float(torch.cat(errors).mean())
            log.append(f"update {batch.progress.update}: val mse {mse!r}")
            errors = []
    state: dict[str, Any] = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    torch.save({**state, "updates": done}, checkpoint)
    return log


def main(argv: Sequence[str] | None = None) -> int:
    """Run uninterrupted, then stopped and resumed; 0 if both end identically."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--stop-at", type=int, default=45, help="updates before the stop")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        full, part = Path(directory, "full.pt"), Path(directory, "part.pt")
        uninterrupted = train(args.epochs, args.workers, full, resume=False, stop_at=None)
        first = train(args.epochs, args.workers, part, resume=False, stop_at=args.stop_at)
        print(f"stopped after {torch.load(part, weights_only=True)['updates']} updates")
        second = train(args.epochs, args.workers, part, resume=True, stop_at=None)
        weights = [torch.load(path, weights_only=True)["model"] for path in (full, part)]
    same_log = first + second == uninterrupted
    same_weights = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    print("\n".join(uninterrupted))
    print(f"stopped + resumed == uninterrupted: log {same_log}, weights {same_weights}")
    return 0 if same_log and same_weights else 1


if __name__ == "__main__":
    raise SystemExit(main())
