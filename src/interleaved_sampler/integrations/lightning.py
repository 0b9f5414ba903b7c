"""PyTorch Lightning: one optimizer update per training batch, an evaluation per pass.

Lightning treats every batch of the training loader as a training step. With automatic
optimization it would call the optimizer and the LR schedulers on the evaluation batches
too (and count them in ``global_step``), so :class:`InterleavedLightningModule` uses
manual optimization and routes each tagged batch itself: training batches to
:meth:`~InterleavedLightningModule.train_step` followed by one update, evaluation batches
to :meth:`~InterleavedLightningModule.evaluation_step` without gradients. The whole
interleaved run is one Lightning epoch; :func:`trainer_arguments` sets the Trainer up for
it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch

from interleaved_sampler.data import InterleavedBatch


def trainer_arguments() -> dict[str, Any]:
    """The ``Trainer`` arguments an interleaved run needs.

    ``max_epochs=1``: the whole run (all epochs of the training sampler and every evaluation
    pass) is one Lightning epoch; the loader ends it. ``use_distributed_sampler=False``: the
    interleaved sampler shards itself (``DistributedSampler`` or ``SeededRandomSampler``
    with ``num_replicas``/``rank`` per source). Leave ``max_steps`` unset: Lightning stops
    right after update ``max_steps``, before the evaluation passes due after it; stop the
    run in ``InterleavedSamplerConfig`` instead. Size LR schedules with
    ``sampler.schedule.train_batches`` (the run's updates): Lightning's
    ``estimated_stepping_batches`` counts every batch of the loader.

    Example:
        >>> trainer_arguments()
        {'max_epochs': 1, 'use_distributed_sampler': False}
    """
    return {"max_epochs": 1, "use_distributed_sampler": False}


class InterleavedLightningModule(pl.LightningModule):
    """A ``LightningModule`` trained on a tagged interleaved loader.

    Give the ``Trainer`` the arguments of :func:`trainer_arguments` and ``fit`` it on the
    loader of ``sampler.get_data_loader(tagged=True)``. Subclasses implement
    ``configure_optimizers`` (one optimizer; schedulers with ``interval`` ``"step"`` are
    stepped after every update, ``"epoch"`` ones after every epoch of the training
    sampler), :meth:`train_step`,
    :meth:`evaluation_step` and :meth:`evaluation_end`; ``self.log`` works in all three.
    ``global_step`` counts training updates only, so ``max_steps`` and
    ``ModelCheckpoint(every_n_train_steps=...)`` count updates. A checkpoint resumes
    exactly with ``trainer.fit(..., ckpt_path=...)``: Lightning saves and restores the
    loader's position with it.

    Example:
        >>> class Regression(InterleavedLightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.model = torch.nn.Linear(1, 1)
        ...         self.errors = []
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        ...     def train_step(self, batch):
        ...         x, y = batch.data
        ...         return torch.nn.functional.mse_loss(self.model(x), y)
        ...     def evaluation_step(self, batch):
        ...         x, y = batch.data
        ...         self.errors.append((self.model(x) - y) ** 2)
        ...     def evaluation_end(self, source):
        ...         mse, self.errors = torch.cat(self.errors).mean(), []
        ...         return {"mse": mse}  # logged as f"{source}/mse"
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def train_step(self, batch: InterleavedBatch) -> torch.Tensor:
        """The loss of a training batch (``batch.data``); one update follows it."""
        raise NotImplementedError(f"{type(self).__name__} must implement train_step(batch)")

    def evaluation_step(self, batch: InterleavedBatch) -> None:
        """Evaluate one batch of a pass (``batch.source`` names the evaluation set); runs
        without gradients, with the modules in eval mode."""
        raise NotImplementedError(f"{type(self).__name__} must implement evaluation_step(batch)")

    def evaluation_end(self, source: str) -> Mapping[str, Any]:
        """The metrics of the pass over ``source`` that just ended, logged as
        ``f"{source}/{name}"`` (empty: nothing to log)."""
        return {}

    def on_fit_start(self) -> None:
        if self.trainer.max_epochs != 1:
            raise ValueError(
                f"an interleaved run is one Lightning epoch, got Trainer(max_epochs="
                f"{self.trainer.max_epochs}); use Trainer(**trainer_arguments()) "
                "(max_epochs=1) and set the epochs in InterleavedSamplerConfig"
            )
        if self.trainer.max_steps != -1:
            raise ValueError(
                f"got Trainer(max_steps={self.trainer.max_steps}), which would stop right "
                "after that update and skip the evaluation passes due after it; stop the run "
                "with InterleavedSamplerConfig(max_updates=...) instead"
            )
        for config in self.trainer.lr_scheduler_configs:
            if config.reduce_on_plateau:
                raise ValueError(
                    "InterleavedLightningModule steps LR schedulers after updates and epochs, "
                    "not on a monitored metric; step ReduceLROnPlateau yourself in "
                    "evaluation_end"
                )

    def training_step(self, batch: InterleavedBatch, batch_idx: int) -> torch.Tensor | None:
        """Lightning's entry for every loader batch: routes it (do not override)."""
        if not isinstance(batch, InterleavedBatch):
            raise TypeError(
                f"InterleavedLightningModule needs tagged batches, got {type(batch).__name__}; "
                "give the Trainer sampler.get_data_loader(..., tagged=True)"
            )
        if batch.source_index == 0:
            return self._update(batch)
        with torch.no_grad(), _eval_mode(self):
            self.evaluation_step(batch)
        if batch.is_last_in_pass:
            metrics = self.evaluation_end(batch.source)
            if metrics:
                self.log_dict({f"{batch.source}/{k}": v for k, v in metrics.items()})
        return None

    def _update(self, batch: InterleavedBatch) -> torch.Tensor:
        optimizer = self.optimizers()
        if isinstance(optimizer, list):
            raise TypeError("InterleavedLightningModule supports one optimizer, got several")
        loss = self.train_step(batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        epochs_done = batch.progress.epoch + 1 if batch.is_last_in_pass else None
        for config in self.trainer.lr_scheduler_configs:
            done = self.global_step if config.interval == "step" else epochs_done
            if done is not None and done % config.frequency == 0:
                config.scheduler.step()  # type: ignore[call-arg]
        return loss.detach()


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Every submodule in eval mode; each one's own mode restored on exit."""
    modes = [(each, each.training) for each in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for each, training in modes:
            each.training = training
