"""Stop a run after any batch, resume it from its checkpoint, end exactly as if uninterrupted.

The checkpoint holds the model, the optimizer, ``loader.state_dict()`` (the position after
the batches the loop received) and the loop's own state (the errors of a half-done
evaluation pass). ``loader.load_state_dict`` on the rebuilt loader yields the rest of the
run: the same remaining batches in the same order (inside an epoch with
``SeededRandomSampler``, inside an evaluation pass too), the same evaluations at the same
points.

    python examples/resume.py --stop-after 40
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

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


def make_sampler(epochs: int) -> InterleavedSampler:
    return InterleavedSampler(
        SeededRandomSampler(TRAIN, seed=7),
        InterleavedSamplerConfig(batch_size=32, max_epochs=epochs),
        callback_samplers=[
            SamplerIntervalConfig(SequentialSampler(VAL), every_n_updates=10, name="val")
        ],
    )


def train(
    epochs: int, workers: int, checkpoint: Path, resume: bool, stop_after: int | None
) -> list[str]:
    """Train (from ``checkpoint`` if ``resume``), write ``checkpoint`` when stopping after
    ``stop_after`` batches or at the end; return the evaluation log."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = make_sampler(epochs).get_data_loader(num_workers=workers, tagged=True)
    errors: list[torch.Tensor] = []
    if resume:
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        loader.load_state_dict(state["loader"])
        errors = state["errors"]
    log = []
    for batch in loader:
        x, y = batch.data
        if batch.source == "train":
            loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                errors.append((model(x).squeeze(1) - y) ** 2)
            if batch.is_last_in_pass:
                mse = float(torch.cat(errors).mean())
                log.append(f"update {batch.progress.update}: val mse {mse:.6g}")
                errors = []
        if loader.state_dict()["batches"] == stop_after:
            break
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    torch.save({**state, "loader": loader.state_dict(), "errors": errors}, checkpoint)
    return log


def main(argv: Sequence[str] | None = None) -> int:
    """Run uninterrupted, then stopped and resumed; 0 if both end identically."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--stop-after", type=int, default=40, help="batches before the stop")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        full, part = Path(directory, "full.pt"), Path(directory, "part.pt")
        uninterrupted = train(args.epochs, args.workers, full, resume=False, stop_after=None)
        first = train(args.epochs, args.workers, part, resume=False, stop_after=args.stop_after)
        stopped = torch.load(part, weights_only=True)["loader"]["batches"]
        print(f"stopped after {stopped} of {len(make_sampler(args.epochs).batch_sampler)} batches")
        second = train(args.epochs, args.workers, part, resume=True, stop_after=None)
        weights = [torch.load(path, weights_only=True)["model"] for path in (full, part)]
    same_log = first + second == uninterrupted
    same_weights = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    print("\n".join(uninterrupted))
    print(f"stopped + resumed == uninterrupted: log {same_log}, weights {same_weights}")
    return 0 if same_log and same_weights else 1


if __name__ == "__main__":
    raise SystemExit(main())
