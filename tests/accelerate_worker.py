"""Run by ``test_accelerate.py`` under torchrun (2 ranks, gloo): one rank's results.

Usage: ``torchrun --standalone --nproc-per-node=2 tests/accelerate_worker.py OUT_DIR``.
Each rank writes ``OUT_DIR/rank{r}.json``: examples/accelerate_train.py uninterrupted
and stopped and resumed, and what ``prepare`` of the
loader does in each data-loader mode of Accelerate.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration, InitProcessGroupKwargs
from torchrun_worker import load_example

example = load_example("accelerate_train")


def outcome(result: Any) -> dict[str, Any]:
    return {
        "seen": result.seen,
        "results": result.results,
        "updates": result.updates,
        "weights": {k: v.tolist() for k, v in result.weights.items()},
    }


def prepared_loader(**mode: bool) -> str:
    """What preparing the loader in this Accelerate mode does: the error, or the sources
    of the first batches this rank gets."""
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(**mode))
    loader = example.make_loader(example.RunConfig(), accelerator.num_processes, 0)
    try:
        batches = [batch.source for batch in islice(accelerator.prepare(loader), 8)]
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return f"no error: {batches}"


def main() -> None:
    out = Path(sys.argv[1])
    # the process group's: ranks that disagree fail within a minute instead of hanging
    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=60))
    accelerator = Accelerator(cpu=True, kwargs_handlers=[timeout])
    rank = accelerator.process_index
    results: dict[str, Any] = {"world": accelerator.num_processes, "out": str(out)}
    results["full"] = outcome(example.run(example.RunConfig(), accelerator))
    state = out / "state"
    # a new Accelerator per run, as in a new process: one registers its objects for good
    stopped = example.run(example.RunConfig(stop_at=7, state=state), Accelerator(cpu=True))
    resumed = example.run(example.RunConfig(resume=state), Accelerator(cpu=True))
    results["stopped"], results["resumed"] = outcome(stopped), outcome(resumed)
    results["prepare"] = {
        "default": prepared_loader(),
        "even_batches=False": prepared_loader(even_batches=False),
        "split_batches": prepared_loader(split_batches=True),
        "dispatch_batches": prepared_loader(dispatch_batches=True),  # refused at prepare
    }
    # a state saved by 1 process after update 7, inside an accumulation of 2 (the test's)
    accumulating = Accelerator(cpu=True, gradient_accumulation_steps=2)
    resume = example.RunConfig(resume=out / "accumulated")
    results["accumulated"] = outcome(example.run(resume, accumulating))
    results["accumulated_step"] = accumulating.step
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    torch.distributed.barrier()  # no rank tears the group down while another still uses it
    accelerator.end_training()


if __name__ == "__main__":
    main()
