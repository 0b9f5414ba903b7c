"""PyTorch Lightning: one optimizer update per training batch, an evaluation per pass.

Lightning treats every batch of the training loader as a training step. With automatic
optimization it would call the optimizer and the LR schedulers on the evaluation batches
too (and count them in ``global_step``), so :class:`InterleavedLightningModule` uses
manual optimization and routes each tagged batch itself: training batches to
:meth:`~InterleavedLightningModule.train_step` followed by one update, evaluation batches
to :meth:`~InterleavedLightningModule.evaluation_step` without gradients. The whole
interleaved run is one Lightning epoch; :func:`trainer_arguments` sets the Trainer up for
it. Manual optimization means no ``gradient_clip_val``: clip in ``on_before_optimizer_step``
with ``self.clip_gradients(optimizer, gradient_clip_val=...)``.

:class:`InterleavedDataModule` is the other way, for an ordinary LightningModule (automatic
optimization, ``validation_step``, Lightning's callbacks) and its own DataModule, unchanged:
it derives the run from them and hands Lightning split loaders over one pool.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, Timer
from pytorch_lightning.trainer.connectors.data_connector import (
    _check_dataloader_iterable,
    _process_dataloader,
)
from pytorch_lightning.trainer.states import RunningStage, TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.model_helpers import is_overridden
from pytorch_lightning.utilities.signature_utils import is_param_in_hook_signature
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
)

from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.data import InterleavedBatch
from interleaved_sampler.integrations.steps import update_of_step
from interleaved_sampler.sampler import InterleavedSampler
from interleaved_sampler.samplers import repeats_epoch_order
from interleaved_sampler.schedule import EpochStructure
from interleaved_sampler.split import InterleavedLoaders, PassLoader, draw_base_seed
from interleaved_sampler.stream import Stream


def trainer_arguments() -> dict[str, Any]:
    """The ``Trainer`` arguments an interleaved run needs.

    ``max_epochs=1``: the whole run (all epochs of the training sampler and every evaluation
    pass) is one Lightning epoch; the loader ends it. ``use_distributed_sampler=False``: the
    interleaved sampler shards itself (``InterleavedSampler(..., num_replicas=world_size,
    rank=global_rank)``). Leave ``max_steps`` unset: Lightning stops
    right after update ``max_steps``, before the evaluation passes due after it; stop the
    run in ``InterleavedSamplerConfig`` instead. Size LR schedules with
    :attr:`InterleavedLightningModule.training_updates` (the run's updates): Lightning's
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
        if is_overridden("validation_step", self):
            raise ValueError(
                f"{type(self).__name__} overrides validation_step, so Lightning would run its "
                "own validation loop on a second pool of workers; evaluate in evaluation_step "
                "(the passes of the interleaved loader), or keep validation_step and use "
                "InterleavedDataModule with an ordinary LightningModule"
            )
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            monitor = getattr(callback, "monitor", None)
            if isinstance(callback, EarlyStopping | ModelCheckpoint) and monitor is not None:
                raise ValueError(
                    f"{type(callback).__name__}(monitor={monitor!r}) is checked at the end of "
                    "Lightning's epochs and validations, and InterleavedLightningModule's whole "
                    "run is one Lightning epoch without Lightning validations, so it would act "
                    "on stale metrics; use an ordinary LightningModule with validation_step and "
                    "InterleavedDataModule, where it sees every validation's metrics"
                )

    def on_train_start(self) -> None:
        """Apply the loader state of a ``ckpt_path`` resume if Lightning set the loader up
        before restoring (reading ``trainer.estimated_stepping_batches`` in
        ``configure_optimizers`` does: its ``setup_data`` ran before the checkpoint was
        restored, and its own restore is then skipped), and restart the loader there."""
        fit_loop = self.trainer.fit_loop
        pending = fit_loop._combined_loader_states_to_load
        fetcher, combined = fit_loop._data_fetcher, fit_loop._combined_loader
        if pending and fetcher is not None and combined is not None and fit_loop.restarting:
            combined._load_state_dicts(pending)
            fit_loop._combined_loader_states_to_load = []
            iter(fetcher)  # a new iterator at the restored position

    @property
    def training_updates(self) -> int:
        """The run's training updates (what ``global_step`` reaches), for sizing LR schedules
        in ``configure_optimizers`` (``trainer.estimated_stepping_batches`` counts the
        evaluation batches too); it sets the train loader up if Lightning has not yet."""
        fit_loop = self.trainer.fit_loop
        if fit_loop._combined_loader is None:
            fit_loop.setup_data()
        loader = self.trainer.train_dataloader
        schedule = getattr(getattr(loader, "batch_sampler", None), "schedule", None)
        if schedule is None:
            raise TypeError(
                "training_updates needs the train loader of sampler.get_data_loader(tagged=True), "
                f"got {type(loader).__name__}"
            )
        return int(schedule.train_batches)

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


# --- InterleavedDataModule: the user's own DataModule and LightningModule, one pool ---------


@dataclass(frozen=True)
class _LoaderParts:
    """What a ``DataLoader`` of the user's DataModule is made of."""

    dataset: Any
    sampler: Any
    batch_size: int
    drop_last: bool
    collate_fn: Any

    @classmethod
    def of(cls, loader: object, role: str, stream: bool = False) -> _LoaderParts:
        """The parts of ``loader`` (the DataModule's ``role``: ``train_dataloader()``, ...);
        over an ``IterableDataset`` where ``stream`` allows it, a :class:`Stream` in place of
        the sampler.

        Raises:
            TypeError: not a ``DataLoader``, over an ``IterableDataset`` where no stream is
                allowed (no ``len()``), or with a batch sampler that is not torch's
                ``BatchSampler``.
        """
        if not isinstance(loader, DataLoader):
            raise TypeError(
                f"InterleavedDataModule needs torch DataLoaders from the DataModule, got "
                f"{type(loader).__name__} from {role}; return a DataLoader (its dataset, "
                "sampler, batch size and collate function make the run)"
            )
        batch_sampler = loader.batch_sampler
        if isinstance(loader.dataset, IterableDataset):
            if not stream:
                raise TypeError(
                    f"{role} returned a DataLoader over an IterableDataset "
                    f"({type(loader.dataset).__name__}), which has no len(): a schedule needs "
                    "the length of every pass; use a map-style Dataset (the train loader may "
                    "be over one: a stream)"
                )
            if not isinstance(batch_sampler, BatchSampler):  # batch_size=None
                raise TypeError(
                    f"{role} returned a DataLoader over an IterableDataset with batch_size="
                    "None: InterleavedDataModule batches the stream itself and needs its "
                    "batch_size"
                )
            return cls(
                loader.dataset,
                Stream(loader.dataset),
                batch_sampler.batch_size,
                False,  # every batch of a stream is full
                loader.collate_fn,
            )
        if type(batch_sampler) is not BatchSampler:
            raise TypeError(
                f"{role} returned a DataLoader with the batch sampler "
                f"{type(batch_sampler).__name__}; InterleavedDataModule batches the run itself "
                "and needs batch_size=, shuffle= or sampler= (torch's BatchSampler)"
            )
        return cls(
            loader.dataset,
            batch_sampler.sampler,
            batch_sampler.batch_size,
            batch_sampler.drop_last,
            loader.collate_fn,
        )


def _loader_arguments(loader: DataLoader[Any]) -> dict[str, Any]:
    """The arguments of the train loader that the run's one loader takes over."""
    arguments: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "pin_memory": loader.pin_memory,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "timeout": loader.timeout,
    }
    if loader.num_workers:
        arguments["prefetch_factor"] = loader.prefetch_factor
    return arguments


def _as_list(loaders: object) -> tuple[list[str], list[object], str]:
    """Val loaders as names and loaders, and how the DataModule returned them
    (``"single"``, ``"sequence"``, ``"mapping"``)."""
    if isinstance(loaders, Mapping):
        return [str(key) for key in loaders], list(loaders.values()), "mapping"
    if isinstance(loaders, list | tuple):
        return [f"val{i}" for i in range(len(loaders))], list(loaders), "sequence"
    return ["val"], [loaders], "single"


def _refuse_settings(trainer: pl.Trainer) -> None:
    """One clear error per Lightning setting that no schedule can follow or that cuts passes."""
    # each setting's trainer attribute (Lightning sets some at run time) and its default
    defaults = {
        "fast_dev_run": ("fast_dev_run", False),  # first: these two set limits themselves
        "overfit_batches": ("overfit_batches", 0),
        "val_check_interval": ("_val_check_time_interval", None),  # a time
        "reload_dataloaders_every_n_epochs": ("reload_dataloaders_every_n_epochs", 0),
    }
    for setting, (attribute, default) in defaults.items():
        value = getattr(trainer, attribute, default)
        if value != default:
            raise ValueError(
                f"InterleavedDataModule cannot follow Trainer({setting}={value!r}): the schedule "
                "is fixed before fit starts and yields whole epochs and passes; leave it at its "
                "default (to shorten a run, set max_steps or max_epochs)"
            )
    limit_train, limit_val = trainer.limit_train_batches, trainer.limit_val_batches
    if not _whole(limit_train):  # an int is a number of batches: 1 is one batch
        raise ValueError(
            f"InterleavedDataModule cannot follow Trainer(limit_train_batches={limit_train!r}): "
            "the schedule yields whole epochs; leave it at its default, 1.0 (to shorten a run, "
            "set max_steps or max_epochs)"
        )
    if limit_val != 0 and not _whole(limit_val):
        raise ValueError(
            f"InterleavedDataModule cannot follow Trainer(limit_val_batches="
            f"{trainer.limit_val_batches!r}): every validation is a whole pass over each val "
            "set; use 1.0 (whole passes) or 0 (no validation)"
        )
    module = trainer.lightning_module
    if is_param_in_hook_signature(module.training_step, "dataloader_iter", explicit=True):
        raise ValueError(
            "InterleavedDataModule cannot serve training_step(self, dataloader_iter): the step "
            "would fetch batches itself, ahead of the validations due between them; take the "
            "batch argument, training_step(self, batch, batch_idx)"
        )
    if trainer.max_epochs in (None, -1) and trainer.max_steps == -1 and not _timed(trainer):
        raise ValueError(
            "InterleavedDataModule needs the run's end: set Trainer(max_epochs=...), "
            "Trainer(max_steps=...) or Trainer(max_time=...), got none"
        )


def _refuse_stream_settings(trainer: pl.Trainer, validating: bool) -> None:
    """One clear error per Lightning setting that a run over a stream cannot follow: its one
    endless epoch has no end to stop or validate at."""
    if trainer.max_steps == -1:
        raise ValueError(
            f"InterleavedDataModule needs Trainer(max_steps=...) with a train loader over an "
            f"IterableDataset, got max_steps=-1 (max_epochs={trainer.max_epochs!r}): the "
            "stream is served as one endless epoch, which only max_steps ends"
        )
    if not validating:
        return
    interval = trainer.val_check_interval
    if not isinstance(interval, int):
        raise ValueError(
            f"InterleavedDataModule cannot follow Trainer(val_check_interval={interval!r}) with "
            "a train loader over an IterableDataset: Lightning then validates at the end of the "
            "stream, which the one endless epoch of a stream never reaches; set an int, "
            "val_check_interval=k (validate every k training batches)"
        )
    batches = _stream_end_update(trainer)
    if trainer.check_val_every_n_epoch is not None and interval > batches:
        raise ValueError(
            f"InterleavedDataModule cannot follow Trainer(val_check_interval={interval}) with a "
            f"train loader over an IterableDataset and max_steps={trainer.max_steps}: the run "
            f"has {batches - 1} training batches, so no validation would run; set a smaller "
            "val_check_interval, or limit_val_batches=0 to train without validation"
        )
    every = trainer.check_val_every_n_epoch
    if every not in (None, 1):
        raise ValueError(
            f"InterleavedDataModule cannot follow Trainer(check_val_every_n_epoch={every!r}) "
            "with a train loader over an IterableDataset: Lightning would not validate in the "
            "stream's first epoch, and a stream's run is one endless epoch; use 1 or None"
        )


def _whole(limit: float | None) -> bool:
    """Whether a ``limit_*_batches`` is all batches: the float 1.0 (the int 1 is one batch)."""
    return isinstance(limit, float) and limit == 1.0


def _timed(trainer: pl.Trainer) -> bool:
    """Whether ``Trainer(max_time=...)`` may end the run (Lightning's ``Timer`` callback)."""
    return any(isinstance(callback, Timer) for callback in trainer.callbacks)  # type: ignore[attr-defined]


# A run that only max_time ends: planned for this many epochs (Lightning's Timer stops it).
_TIMED_EPOCHS = 10**6


def _end_update(trainer: pl.Trainer, updates_per_epoch: int) -> int:
    """The training batches of the run: ``max_epochs`` epochs, or fewer when ``max_steps``
    optimizer steps end it first."""
    ends = []
    if trainer.max_epochs not in (None, -1):
        ends.append(trainer.max_epochs * updates_per_epoch)
    elif trainer.max_steps == -1:  # max_time alone ends it
        ends.append(_TIMED_EPOCHS * updates_per_epoch)
    if trainer.max_steps != -1:
        accumulation = trainer.accumulate_grad_batches
        ends.append(update_of_step(trainer.max_steps, updates_per_epoch, accumulation))
    return min(ends)


def _validation_rule(
    trainer: pl.Trainer, updates_per_epoch: int, end_update: int
) -> dict[str, Any]:
    """When Lightning validates, as a due rule: after training batch ``b`` of an epoch
    (``g`` of the run) if ``(b + 1) % val_check_batch == 0`` (``g`` when
    ``check_val_every_n_epoch`` is None), in the epochs ``check_val_every_n_epoch`` selects
    (``training_epoch_loop._should_check_val_fx``)."""
    interval, every_epochs = trainer.val_check_interval, trainer.check_val_every_n_epoch
    check_batch = (
        interval if isinstance(interval, int) else max(1, int(updates_per_epoch * interval))
    )
    if every_epochs is None or (every_epochs == 1 and updates_per_epoch % check_batch == 0):
        return {"every_n_updates": check_batch}
    if check_batch == updates_per_epoch:
        return {"every_n_epochs": every_epochs}
    if end_update >= _TIMED_EPOCHS * updates_per_epoch:
        raise ValueError(
            f"InterleavedDataModule cannot plan validations every {check_batch} batches in "
            f"every {every_epochs}th epoch of a run that only Trainer(max_time=...) ends; set "
            "max_epochs or max_steps too, or validate every epoch (check_val_every_n_epoch=1)"
        )
    epochs = range(every_epochs - 1, -(-end_update // updates_per_epoch), every_epochs)
    in_epoch = range(check_batch, updates_per_epoch + 1, check_batch)
    updates = [e * updates_per_epoch + b for e in epochs for b in in_epoch]
    return {"at_updates": tuple(u for u in updates if u <= end_update)}


def _lightning_checks_iterability() -> bool:
    """Whether the caller's ``iter()`` is Lightning's check that a loader is iterable
    (``_check_dataloader_iterable``, data_connector.py:385), which drops the iterator; a
    plain ``DataLoader`` skips that check, so a view must not draw random numbers there."""
    return sys._getframe(2).f_code is _check_dataloader_iterable.__code__


class _TrainLoaderView:
    """The train loader Lightning iterates: one epoch of the run per ``iter()``.

    It has no state of its own (the run's position is in the DataModule's state), so that a
    checkpoint written under the wrapper loads into plain Lightning.
    """

    def __init__(self, loaders: InterleavedLoaders) -> None:
        self._loaders = loaders

    def __len__(self) -> int:
        return len(self._loaders.train)

    def __iter__(self) -> Iterator[Any]:
        if _lightning_checks_iterability():
            return iter(())
        return iter(self._loaders.train)


class _ValLoaderView:
    """A val loader Lightning iterates: the run's next pass over the set during fit; a pass
    apart, in the main process, in the sanity check and when Lightning validates outside the
    schedule because ``should_stop`` was set (its rule ``should_stop -> validate``)."""

    def __init__(self, datamodule: InterleavedDataModule, name: str) -> None:
        self._datamodule, self._name = datamodule, name

    def __len__(self) -> int:
        return len(self._loader)

    @property
    def _loader(self) -> PassLoader:
        loaders = self._datamodule.loaders
        assert loaders is not None
        return loaders.evaluation[self._name]

    def __iter__(self) -> Iterator[Any]:
        if _lightning_checks_iterability():
            return iter(())
        trainer, loader = self._datamodule.trainer, self._loader
        assert trainer is not None
        if trainer.sanity_checking:
            return loader.apart()
        loaders = self._datamodule.loaders
        assert loaders is not None
        place = loaders.next_place
        if place is not None and place.source_index == loader.callback + 1:
            return iter(loader)
        if trainer.should_stop:
            return loader.apart()
        # Lightning starts a validation it does not run (it fast-forwards the one due at a
        # resume): draw what its loader draws; reading it would be out of turn
        draw_base_seed(loader.generator)
        return _read_later(loader)


def _read_later(loader: PassLoader) -> Iterator[Any]:
    yield from loader


class _CheckpointBridge(pl.Callback):
    """Checkpoints both ways between plain Lightning and the wrapper: it writes the user's
    DataModule state under the user's DataModule's own key (where plain Lightning restores
    it), and restores a checkpoint without the wrapper's state (plain Lightning's) at the
    position its loops' progress gives."""

    def __init__(self, datamodule: InterleavedDataModule) -> None:
        self._datamodule = datamodule

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        inner = self._datamodule.datamodule
        state = inner.state_dict()
        if state:
            checkpoint[type(inner).__qualname__] = state

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        loader_states = fit_loop.get("state_dict", {})
        if loader_states.get("combined_loader") == [_OLD_VIEW_STATE]:
            del loader_states["combined_loader"]  # a view state of interleaved-sampler 0.3
        if type(self._datamodule).__qualname__ in checkpoint:
            return  # the wrapper's own state, restored by load_state_dict
        inner = self._datamodule.datamodule
        state = checkpoint.get(type(inner).__qualname__)
        if state is not None:
            inner.load_state_dict(state)
        if fit_loop:
            self._datamodule.resume_at_progress(fit_loop)


# The train view state interleaved-sampler 0.3 wrote into checkpoints (it held nothing).
_OLD_VIEW_STATE = {"position": "saved by InterleavedDataModule.state_dict"}


# The hooks a DataModule shares with the LightningModule: Lightning calls the DataModule's
# where it overrides them, else the module's (data_connector.py:359, _DataHookSelector).
_BATCH_TRANSFER_HOOKS = (
    "on_before_batch_transfer",
    "transfer_batch_to_device",
    "on_after_batch_transfer",
)


class InterleavedDataModule(pl.LightningDataModule):
    """Your own ``LightningDataModule``, served by one worker pool for training and every
    validation: ``trainer.fit(model, datamodule=InterleavedDataModule(MyDataModule()))``.

    At ``setup("fit")`` it reads the datasets, samplers, batch sizes, ``drop_last`` and
    collate functions of ``train_dataloader()`` and ``val_dataloader()`` (one loader, a list
    or a dict of them) and the train loader's ``num_workers``, ``pin_memory``,
    ``multiprocessing_context``, ``worker_init_fn``, ``prefetch_factor``; and the Trainer's
    ``max_epochs``, ``max_steps``, ``accumulate_grad_batches``, ``val_check_interval`` and
    ``check_val_every_n_epoch``. From them it builds the run whose validation passes fall
    exactly where Lightning validates, and hands Lightning split loaders over its one pool
    (:meth:`InterleavedSampler.get_loaders
    <interleaved_sampler.InterleavedSampler.get_loaders>`), started right away so that its
    start-up overlaps Lightning's own. The LightningModule stays as it is (automatic
    optimization, ``validation_step`` with ``dataloader_idx``, ``self.log``, callbacks).

    - Every Lightning validation runs all val sets, so every set gets a pass at every
      validation point.
    - The run's position is in this DataModule's ``state_dict``: ``ckpt_path=`` resumes
      exactly from any ``ModelCheckpoint`` checkpoint (Lightning does not run, after a
      resume, the validation due at the checkpointed batch; nor does this). A train sampler
      that cannot replay its order (``shuffle=True``, torch's ``RandomSampler``) resumes
      mid-epoch as a plain loader does (a new order for the rest of the epoch); a warning at
      fit start names ``SeededRandomSampler``, which resumes exactly.
    - With several devices (DDP) each batch size of the DataModule is per device, as in
      Lightning: the run's global batch is ``world_size`` times larger and the wrapper splits
      every batch over the ranks itself (``num_replicas``), so a checkpoint also resumes on
      another number of devices.
    - The sanity check and ``trainer.validate()`` are served apart, in the main process.
    - A train loader over an ``IterableDataset`` (``max_steps``, an integer
      ``val_check_interval``) is served as a :class:`~interleaved_sampler.Stream`: plain
      Lightning's batches, in order, up to the first time a worker's copy runs out (then the
      copy restarts by itself); ``ckpt_path=`` continues the stream exactly.

    - Lightning's defaults give its run bit for bit: ``shuffle=True`` (the epoch's order is
      drawn where Lightning's loader draws it; the pool pauses before the epoch's first
      batches until then), dropout (the views draw what Lightning's loaders draw), a plain
      Lightning checkpoint (resumed at the position of its loops' progress), and this
      wrapper's checkpoints load in plain Lightning. Your DataModule's attributes and
      ``hparams`` are reachable through the wrapper.

    Refused at fit start, one message each: ``limit_train_batches`` other than 1.0,
    ``limit_val_batches`` other than 1.0 or 0, ``overfit_batches``, ``fast_dev_run``, a
    time ``val_check_interval``, ``reload_dataloaders_every_n_epochs``, a
    ``dataloader_iter`` training step, loaders that are not ``DataLoader``\\ s, val loaders
    without ``len()``, with several devices a train sampler that draws its order on each
    rank; over a stream: no ``max_steps``, a float ``val_check_interval``,
    ``check_val_every_n_epoch`` other than 1 or None, ``batch_size=None``.

    Args:
        datamodule: your DataModule.
    """

    def __init__(self, datamodule: pl.LightningDataModule) -> None:
        super().__init__()
        self.datamodule = datamodule
        self.prepare_data_per_node = datamodule.prepare_data_per_node
        self.allow_zero_length_dataloader_with_multiple_devices = (
            datamodule.allow_zero_length_dataloader_with_multiple_devices
        )
        self.loaders: InterleavedLoaders | None = None
        self._val_names: list[str] = []
        self._val_shape = "single"
        self._stream = False  # the train loader is over an IterableDataset
        self._bridge = _CheckpointBridge(self)
        for hook in _BATCH_TRANSFER_HOOKS:  # yours where you override them, else the module's
            if is_overridden(hook, datamodule):
                setattr(self, hook, getattr(datamodule, hook))

    def __getattr__(self, name: str) -> Any:
        """Every attribute of your DataModule (``self.trainer.datamodule.num_classes``)."""
        inner = self.__dict__.get("datamodule")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    @property
    def hparams(self) -> Any:
        """Your DataModule's ``hparams`` (``save_hyperparameters``): logged and checkpointed."""
        return self.datamodule.hparams

    @property
    def hparams_initial(self) -> Any:
        return self.datamodule.hparams_initial

    @property
    def _log_hyperparams(self) -> bool:
        return bool(self.datamodule._log_hyperparams)

    @_log_hyperparams.setter
    def _log_hyperparams(self, value: bool) -> None:
        """The wrapper has no hyperparameters of its own (set by the mixin's ``__init__``)."""

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str) -> None:
        self.datamodule.trainer = self.trainer
        self.datamodule.setup(stage)
        if stage != TrainerFn.FITTING:
            return
        trainer = self.trainer
        assert trainer is not None
        _refuse_settings(trainer)
        self.loaders = self._build(trainer)
        callbacks: list[pl.Callback] = trainer.callbacks  # type: ignore[attr-defined]
        if self._bridge not in callbacks:
            callbacks.append(self._bridge)
        if trainer.ckpt_path is None:  # else the pool starts at the restored position
            self.loaders.start()

    def _build(self, trainer: pl.Trainer) -> InterleavedLoaders:
        inner = self.datamodule
        train_loader = inner.train_dataloader()
        train = _LoaderParts.of(train_loader, "train_dataloader()", stream=True)
        assert isinstance(train_loader, DataLoader)
        self._stream = isinstance(train.sampler, Stream)
        world = trainer.world_size
        validating = is_overridden("validation_step", trainer.lightning_module) and bool(
            trainer.limit_val_batches
        )
        if self._stream:
            _refuse_stream_settings(trainer, validating)
        names, val_loaders, self._val_shape = (
            _as_list(inner.val_dataloader()) if validating else ([], [], "single")
        )
        self._val_names = names
        vals = [_LoaderParts.of(loader, "val_dataloader()") for loader in val_loaders]
        # Lightning's own checks and warnings on your loaders (it sees only the views)
        processed = _process_dataloader(
            trainer, TrainerFn.FITTING, RunningStage.TRAINING, train_loader
        )
        for loader in val_loaders:
            _process_dataloader(trainer, TrainerFn.FITTING, RunningStage.VALIDATING, loader)
        rule: dict[str, Any]
        if self._stream:
            end, rule = _stream_end_update(trainer), {"every_n_updates": trainer.val_check_interval}
        else:
            train = replace(train, sampler=_train_sampler(trainer, train_loader, train.sampler))
            per_epoch = _updates_per_epoch(train, world)
            end = _end_update(trainer, per_epoch)
            rule = _validation_rule(trainer, per_epoch, end)
        if not repeats_epoch_order(train.sampler):
            rank_zero_warn(
                f"the train sampler ({type(train.sampler).__name__}) does not repeat its "
                "epoch order, so a checkpoint inside an epoch resumes with a new order for the "
                "rest of that epoch (as a plain loader does); for an exact resume use "
                "sampler=SeededRandomSampler(dataset, seed=...) in train_dataloader()"
            )
        sampler = InterleavedSampler(
            train.sampler,
            InterleavedSamplerConfig(
                batch_size=train.batch_size * world, drop_last=train.drop_last, max_updates=end
            ),
            train_collator=train.collate_fn,
            callback_samplers=[
                SamplerIntervalConfig(
                    val.sampler,
                    val.collate_fn,
                    batch_size=val.batch_size * world,
                    name=name,
                    dataset=val.dataset,
                    **rule,
                )
                for name, val in zip(names, vals, strict=True)
            ],
            num_replicas=world,
            rank=trainer.global_rank,
            train_dataset=None if self._stream else train.dataset,
        )
        arguments = _loader_arguments(train_loader)
        arguments["worker_init_fn"] = getattr(processed, "worker_init_fn", None)
        loaders = sampler.get_loaders(**arguments)
        # the random numbers each iter() draws, and when: those of your loaders
        for split, loader in [(loaders.train, train_loader)] + [
            (loaders.evaluation[name], val) for name, val in zip(names, val_loaders, strict=True)
        ]:
            assert isinstance(loader, DataLoader)
            split.generator, split.num_workers = loader.generator, loader.num_workers
            split.persistent_workers = loader.persistent_workers
        return loaders

    def resume_at_progress(self, fit_loop: Mapping[str, Any]) -> None:
        """Continue the run where a checkpoint's fit loop progress (``checkpoint["loops"]
        ["fit_loop"]``, of a plain Lightning run) says Lightning continues: after the
        batches of the epochs completed and of the current one, without the validation due
        there; the epoch's order as Lightning's resume has it (a new one for a train sampler
        that does not repeat its order; the exact one for one that does)."""
        assert self.loaders is not None, "setup('fit') builds the loaders"
        epochs = int(fit_loop["epoch_progress"]["current"]["completed"])
        batches = int(fit_loop["epoch_loop.batch_progress"]["current"]["processed"])
        if self._stream and epochs:
            raise ValueError(
                f"a plain Lightning checkpoint after {epochs} epoch(s) of the stream cannot be "
                "placed in the wrapper's run, whose stream is one endless epoch (each worker's "
                "copy restarts by itself): resume it with plain Lightning, or train under "
                "InterleavedDataModule from the start"
            )
        update = epochs * len(self.loaders.train) + batches
        self.loaders.load_update(update, restart_epoch_order=True, skip_due_passes=True)
        self.loaders.start()

    def train_dataloader(self) -> Any:
        assert self.loaders is not None, "setup('fit') builds the loaders"
        return _TrainLoaderView(self.loaders)

    def val_dataloader(self) -> Any:
        assert self.trainer is not None
        if self.trainer.state.fn != TrainerFn.FITTING or self.loaders is None:
            return self.datamodule.val_dataloader()  # trainer.validate(): the user's own
        views = [_ValLoaderView(self, name) for name in self._val_names]
        if self._val_shape == "mapping":
            return dict(zip(self._val_names, views, strict=True))
        return views if self._val_shape == "sequence" else views[0]

    def test_dataloader(self) -> Any:
        return self.datamodule.test_dataloader()

    def predict_dataloader(self) -> Any:
        return self.datamodule.predict_dataloader()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"datamodule": self.datamodule.state_dict()}
        if self.loaders is not None:
            state["interleaved_sampler"] = self.loaders.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.datamodule.load_state_dict(state.get("datamodule", {}))
        if self.loaders is None or "interleaved_sampler" not in state:
            return
        self.loaders.load_state_dict(  # Lightning does not run the validation due at a resume
            state["interleaved_sampler"], restart_epoch_order=True, skip_due_passes=True
        )
        self.loaders.start()

    def teardown(self, stage: str) -> None:
        if stage == TrainerFn.FITTING and self.loaders is not None:
            self.loaders.close()
            callbacks = self.trainer.callbacks if self.trainer is not None else []  # type: ignore[attr-defined]
            if self._bridge in callbacks:
                callbacks.remove(self._bridge)
        self.datamodule.teardown(stage)

    def on_exception(self, exception: BaseException) -> None:
        if self.loaders is not None:
            self.loaders.close()
        self.datamodule.on_exception(exception)


def _train_sampler(trainer: pl.Trainer, loader: DataLoader[Any], sampler: Any) -> Any:
    """The run's train sampler: the DataModule's, except with several devices where each
    rank would draw its own order. There Lightning puts ``DistributedSampler(shuffle=True,
    seed=PL_GLOBAL_SEED or 0)`` in place of a ``RandomSampler`` (data_connector.py:494,
    ``_get_distributed_sampler``); the wrapper takes the same order as one global sampler and
    splits each global batch over the ranks itself, which gives every rank the part of the
    order Lightning's sampler gives it.

    Raises:
        ValueError: several devices and a train sampler that draws its order on each rank
            (neither repeating its order nor torch's ``RandomSampler``), or
            ``use_distributed_sampler=False`` with a ``RandomSampler``.
    """
    if trainer.world_size == 1 or repeats_epoch_order(sampler):
        return sampler
    injects = trainer._accelerator_connector.use_distributed_sampler
    if isinstance(sampler, RandomSampler) and injects:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return DistributedSampler(loader.dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    raise ValueError(
        f"with {trainer.world_size} devices the train sampler {type(sampler).__name__} would "
        "draw its own order on each rank, so the ranks' parts of a batch would overlap; use "
        "sampler=SeededRandomSampler(dataset, seed=...) (or shuffle=True with "
        "use_distributed_sampler=True, Lightning's default)"
    )


def _stream_end_update(trainer: pl.Trainer) -> int:
    """The training batches of a run over a stream: those of ``max_steps`` optimizer steps,
    and one more that is never trained on.

    Lightning reads a loader without ``len()`` one batch ahead (to know whether it ends),
    before the validation of the batch it trains on; so the train view of a stream has a
    length, the run's batches. The one more keeps Lightning from seeing the epoch's last
    batch at the last step, where over a plain stream it sees none (it would step the
    epoch's LR schedulers there).
    """
    return trainer.max_steps * trainer.accumulate_grad_batches + 1


def _updates_per_epoch(train: _LoaderParts, world: int) -> int:
    """Training batches per epoch of the global run (what Lightning reads as ``len``)."""
    structure = EpochStructure.create(len(train.sampler), train.batch_size * world, train.drop_last)
    if train.drop_last and len(train.sampler) < train.batch_size * world:
        raise ValueError(
            f"the train loader has {len(train.sampler)} samples but drop_last=True and a batch "
            f"of {train.batch_size} per device on {world} device(s): an epoch has no batch"
        )
    return structure.updates_per_epoch
