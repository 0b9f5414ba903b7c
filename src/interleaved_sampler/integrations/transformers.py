"""Hugging Face ``transformers``: ``Trainer`` -> :class:`InterleavedTrainer`, one worker pool.

:class:`InterleavedTrainer` is a ``transformers.Trainer`` with the same constructor and
``TrainingArguments``. Its train loader and every eval loader are split loaders
(:meth:`InterleavedSampler.get_loaders <interleaved_sampler.InterleavedSampler.get_loaders>`)
over one ``DataLoader``, whose run is built from what ``Trainer`` itself uses: the train
sampler of ``_get_train_sampler`` (an override is kept), the batch sizes, the collator with
unused columns removed, the ``dataloader_*`` arguments, and evaluation exactly where
``Trainer`` evaluates (``eval_strategy``, ``eval_steps`` in optimizer steps under
``gradient_accumulation_steps``, ``eval_delay``, the evaluation at the last step).

Private ``Trainer`` methods it relies on, checked against transformers 5.23:
``_get_train_sampler``, ``_get_eval_sampler``, ``_remove_unused_columns``,
``_get_collator_with_removed_columns`` (to build the datasets and collators as ``Trainer``
does), ``_run_epoch`` (around which ``transformers.trainer.skip_first_batches`` is replaced,
so that a resume continues from the saved position instead of skipping batches),
``_save_rng_state`` (where the position is written into the checkpoint folder).

An ``IterableDataset`` train set (with ``max_steps``, as ``Trainer`` requires) is the run's
:class:`~interleaved_sampler.Stream`: one process, no length, one "epoch" of ``max_steps``
optimizer steps, the batches of ``Trainer``'s own loader up to the first exhaustion of a
worker's copy (``docs/streams.md``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any, cast

import torch
import transformers.trainer as trainer_module
from accelerate.data_loader import DataLoaderStateMixin
from accelerate.state import GradientState
from torch.utils.data import IterableDataset, RandomSampler, Sampler, SequentialSampler
from transformers import Trainer
from transformers.trainer_utils import IntervalStrategy, get_last_checkpoint

from interleaved_sampler.config import InterleavedSamplerConfig, SamplerIntervalConfig
from interleaved_sampler.integrations.steps import steps_per_epoch, update_of_step
from interleaved_sampler.protocols import SizedIterable
from interleaved_sampler.sampler import InterleavedSampler
from interleaved_sampler.schedule import EpochStructure
from interleaved_sampler.split import InterleavedLoaders
from interleaved_sampler.stream import Stream

# The file of the run's position in a checkpoint folder.
STATE_FILE = "interleaved_sampler.json"


class FirstOf(Sampler[int]):
    """The first ``count`` indices of ``sampler`` (an eval set with ``dataloader_drop_last``,
    whose last partial batch ``Trainer`` drops).

    Args:
        sampler: the eval set's sampler.
        count: how many of its indices to keep.
    """

    def __init__(self, sampler: SizedIterable, count: int) -> None:
        self.sampler, self.count = sampler, count
        self.data_source = getattr(sampler, "data_source", None)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        return islice(iter(self.sampler), self.count)


class SeedableOrder(Sampler[int]):
    """The order of ``Trainer``'s own train loader: Accelerate prepares it with a seedable
    random sampler (``accelerate.data_loader.SeedableRandomSampler``, the default
    ``accelerator_config.use_seedable_sampler=True``) whose epoch ``e`` is the order of
    ``sampler`` (a torch ``RandomSampler``) drawn by a generator seeded ``seed + e``. It
    repeats an epoch's order, so a resume inside an epoch is exact, as ``Trainer``'s is.

    Args:
        sampler: the ``RandomSampler`` of ``Trainer._get_train_sampler``.
        seed: ``TrainingArguments.data_seed``, else ``torch.random.initial_seed()`` when
            ``train()`` builds its loader (``args.seed``, which ``train()`` sets).

    Example:
        >>> order = SeedableOrder(RandomSampler(range(4)), seed=3)
        >>> order.set_epoch(1)
        >>> list(order) == torch.randperm(4, generator=torch.Generator().manual_seed(4)).tolist()
        True
    """

    repeats_epoch_order = True

    def __init__(self, sampler: RandomSampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0
        self.data_source = sampler.data_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        sampler = self.sampler
        return iter(
            RandomSampler(
                self.data_source, sampler.replacement, sampler._num_samples, generator=generator
            )
        )


@dataclass(frozen=True)
class _Resume:
    """Where a resumed ``train()`` continues: the checkpoint, the optimizer steps done there
    and whether ``ignore_data_skip`` restarts that epoch's data."""

    checkpoint: str
    steps_done: int
    restart_epoch: bool


class InterleavedTrainer(Trainer):
    """A ``transformers.Trainer`` whose train set and every eval set are loaded by one pool.

    Same constructor, same ``TrainingArguments``; ``eval_dataset`` is one dataset or a dict.
    During ``train()``, each evaluation ``Trainer`` runs reads the next pass of the one
    loader; one that no schedule knows in advance (``eval_on_start``, a callback setting
    ``control.should_evaluate``) loads its pass in the main process from the eval set's
    sampler. ``evaluate()`` outside ``train()`` is ``Trainer``'s own. Eval passes are split
    over the processes as Accelerate does (contiguous per-process batches) and the
    bookkeeping of ``gather_for_metrics`` is kept, so eval metrics are those of one process,
    without padding duplicates. ``resume_from_checkpoint`` continues from the position saved
    in the checkpoint folder (``interleaved_sampler.json``).

    An ``IterableDataset`` train set (a Hugging Face streaming dataset, with ``max_steps``)
    is served as a :class:`~interleaved_sampler.Stream`: each worker iterates its own copy
    and the batches are those of ``Trainer``'s own loader, in order, up to the first time a
    copy runs out (then the copy restarts by itself); one process only.

    Refused with one message: ``IterableDataset`` eval sets, an ``IterableDataset`` train set
    with several processes, a batch sampler from
    ``_get_train_sampler`` (``train_sampling_strategy="batch_rebalance"``),
    ``accelerator_config`` with ``split_batches`` or ``dispatch_batches``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refuse_arguments()
        self._loaders: InterleavedLoaders | None = None
        self._resume: _Resume | None = None
        self._fresh_train_iterations = 1  # train iterations that draw as a new loader's

    def _refuse_arguments(self) -> None:
        datasets = {}
        if isinstance(self.eval_dataset, dict):
            datasets.update({f"eval_dataset[{k!r}]": v for k, v in self.eval_dataset.items()})
        else:
            datasets["eval_dataset"] = self.eval_dataset
        for name, dataset in datasets.items():
            if isinstance(dataset, IterableDataset):
                raise TypeError(
                    f"InterleavedTrainer needs map-style eval datasets, got an IterableDataset "
                    f"as {name} ({type(dataset).__name__}): a schedule needs every pass's "
                    "length (a train set may be an IterableDataset, served as a stream)"
                )
        if isinstance(self.train_dataset, IterableDataset) and self.args.world_size > 1:
            raise ValueError(
                f"InterleavedTrainer serves an IterableDataset train set "
                f"({type(self.train_dataset).__name__}) in one process only, got "
                f"{self.args.world_size} processes: there Trainer loads every batch in process "
                "0 and dispatches its parts (Accelerate's dispatch_batches), where the one pool "
                "of each process iterates its own copy; use Trainer, or InterleavedSampler("
                "Stream(dataset), ...) with a dataset that shards itself by rank"
            )
        config = self.args.accelerator_config
        for option in ("split_batches", "dispatch_batches"):
            if getattr(config, option, None):
                raise ValueError(
                    f"InterleavedTrainer cannot honour accelerator_config.{option}=True: it "
                    "loads and splits the batches over the processes itself (batch sizes are "
                    "per device, as Trainer's are by default); leave it unset"
                )

    # --- the run -------------------------------------------------------------------------

    def train(
        self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)  # type: ignore[no-untyped-call]
        self._resume = None
        if isinstance(checkpoint, str):
            steps = _checkpoint_steps(checkpoint)
            self._resume = _Resume(checkpoint, steps, self.args.ignore_data_skip)
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            self._close()

    def _close(self) -> None:
        if self._loaders is not None:
            self._loaders.close()
        self._loaders = None

    def get_train_dataloader(self) -> Any:
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        self._close()  # a new run (auto_find_batch_size calls again)
        return _TrainView(self, *self._train_parts())

    def _train_parts(self) -> tuple[Any, Any, SizedIterable | Stream]:
        """The train dataset (with its unused columns removed: the sampler's dataset), collator
        and sampler (a stream for an ``IterableDataset``), as ``Trainer._get_dataloader``
        makes them."""
        dataset, collator = self._dataset_and_collator(self.train_dataset, "Training")
        if isinstance(dataset, IterableDataset):
            return dataset, collator, Stream(dataset)
        sampler = self._get_train_sampler(dataset)
        if type(sampler) is RandomSampler:
            sampler = self._seedable_order(sampler)
        batch_samplers = getattr(trainer_module, "BatchRebalanceSampler", ())
        if not isinstance(sampler, SizedIterable) or isinstance(sampler, batch_samplers):
            raise TypeError(
                "InterleavedTrainer needs a sampler of indices from _get_train_sampler(), got "
                f"{type(sampler).__name__}; batch samplers (train_sampling_strategy="
                "'batch_rebalance') are not supported"
            )
        return dataset, collator, sampler

    def _seedable_order(self, sampler: RandomSampler) -> SeedableOrder:
        """The order ``Trainer``'s prepared loader gives a ``RandomSampler``."""
        if not getattr(self.args.accelerator_config, "use_seedable_sampler", True):
            raise ValueError(
                "InterleavedTrainer cannot follow accelerator_config.use_seedable_sampler="
                "False: the train order then comes from the global random state at each "
                "epoch's start, which a prefetching pool cannot wait for; leave it at its "
                "default, True (the same order on every process, resumable inside an epoch)"
            )
        seed = self.args.data_seed
        return SeedableOrder(sampler, torch.random.initial_seed() if seed is None else seed)

    def _dataset_and_collator(self, dataset: Any, description: str) -> tuple[Any, Any]:
        datasets = getattr(trainer_module, "datasets", None)
        if datasets is not None and isinstance(dataset, datasets.Dataset):
            return self._remove_unused_columns(dataset, description=description), self.data_collator
        return dataset, self._get_collator_with_removed_columns(
            self.data_collator, description=description
        )

    def _updates_per_epoch(self, sampler: SizedIterable | Stream) -> int:
        """Training batches per epoch of the global run (what ``Trainer`` reads as ``len``; a
        stream's "epoch" is ``Trainer``'s ``steps_in_epoch``, the batches of ``max_steps``)."""
        if isinstance(sampler, Stream):
            return self.args.max_steps * self.args.gradient_accumulation_steps
        structure = EpochStructure.create(
            len(sampler),
            self._train_batch_size * self.args.world_size,
            self.args.dataloader_drop_last,
        )
        return structure.updates_per_epoch

    def _start_run(
        self, dataset: Any, collator: Any, sampler: SizedIterable | Stream
    ) -> InterleavedLoaders:
        """Build the run now that ``Trainer`` has computed ``max_steps`` and ``eval_steps``,
        and place it where a resume continues."""
        if self._loaders is not None:
            return self._loaders
        world, per_epoch = self.args.world_size, self._updates_per_epoch(sampler)
        accumulation = self.args.gradient_accumulation_steps
        base_step, base_update = 0, 0
        resume = self._resume
        if resume is not None and resume.restart_epoch:  # ignore_data_skip
            base_step = resume.steps_done
            base_update = base_step // steps_per_epoch(per_epoch, accumulation) * per_epoch

        def update(step: int) -> int:
            return base_update + update_of_step(step - base_step, per_epoch, accumulation)

        end = update(self.state.max_steps)
        points = self._evaluation_points(update, per_epoch, base_step, base_update, end)
        stream = isinstance(sampler, Stream)
        run = InterleavedSampler(
            sampler,
            InterleavedSamplerConfig(
                batch_size=self._train_batch_size * world,
                drop_last=self.args.dataloader_drop_last and not stream,  # Trainer's own
                max_updates=end,
                start_update=base_update,
            ),
            train_collator=collator,
            callback_samplers=[
                self._eval_callback(name, dataset_, points) for name, dataset_ in self._eval_sets()
            ],
            num_replicas=world,
            rank=self.args.process_index,
            train_dataset=None if stream else dataset,
        )
        loaders = run.get_loaders(**self._loader_arguments())
        # the random numbers Trainer's loaders draw (persistent ones: in their first iter)
        for evaluation in loaders.evaluation.values():
            evaluation.persistent_workers = self.args.dataloader_persistent_workers
        # Trainer reads an epoch resumed inside through a skip_first_batches copy of its
        # train loader, whose iterator draws; the loader's own first iteration comes after
        inside = (
            resume is not None
            and not resume.restart_epoch
            and resume.steps_done % steps_per_epoch(per_epoch, accumulation) > 0
        )
        self._fresh_train_iterations = 2 if inside else 1
        if resume is not None and not resume.restart_epoch:
            # a resumed Trainer does not run the evaluation due at its checkpoint
            state_file = os.path.join(resume.checkpoint, STATE_FILE)
            if os.path.isfile(state_file):
                with open(state_file) as file:
                    loaders.load_state_dict(json.load(file), skip_due_passes=True)
            else:  # a checkpoint of Trainer's own: it skips the batches of its steps
                loaders.load_update(update(resume.steps_done), skip_due_passes=True)
        self._loaders = loaders
        return loaders

    def _evaluation_points(
        self, update: Any, per_epoch: int, base_step: int, base_update: int, end: int
    ) -> tuple[int, ...]:
        """The updates after which ``Trainer`` evaluates (``DefaultFlowCallback``): every
        ``eval_steps`` optimizer steps, or at epoch ends, from ``eval_delay`` on; and at the
        last step."""
        args, state = self.args, self.state
        steps = range(base_step + 1, state.max_steps + 1)
        if args.eval_strategy == IntervalStrategy.STEPS:
            every = state.eval_steps
            points = {update(g) for g in steps if g % every == 0 and args.eval_delay <= g}
            if args.eval_delay <= state.max_steps:
                points.add(end)
        elif args.eval_strategy == IntervalStrategy.EPOCH:
            epochs = range(base_update // per_epoch + 1, -(-end // per_epoch) + 1)
            points = {min(e * per_epoch, end) for e in epochs if args.eval_delay <= e}
            if args.eval_delay <= end / per_epoch:
                points.add(end)  # Trainer's on_epoch_end runs after its last step too
        else:
            points = set()
        return tuple(sorted(u for u in points if base_update < u <= end))

    def _eval_sets(self) -> list[tuple[str, Any]]:
        if self.eval_dataset is None:
            return []
        if isinstance(self.eval_dataset, dict):
            return list(self.eval_dataset.items())
        return [("eval", self.eval_dataset)]

    def _eval_callback(
        self, name: str, dataset: Any, points: tuple[int, ...]
    ) -> SamplerIntervalConfig:
        dataset, collator = self._dataset_and_collator(dataset, "Evaluation")
        sampler = cast(SizedIterable, self._get_eval_sampler(dataset) or SequentialSampler(dataset))
        batch_size = self.args.eval_batch_size * self.args.world_size
        if self.args.dataloader_drop_last:
            sampler = FirstOf(sampler, len(sampler) // batch_size * batch_size)
        return SamplerIntervalConfig(
            sampler,
            collator,
            batch_size=batch_size,
            name=name,
            at_updates=points,
            split="contiguous",
            dataset=dataset,
        )

    def _loader_arguments(self) -> dict[str, Any]:
        """``Trainer``'s train loader arguments (over an ``IterableDataset``, it seeds no
        workers)."""
        args = self.args
        stream = isinstance(self.train_dataset, IterableDataset)
        seeding = None if stream else _seed_worker(args.dataloader_num_workers, args.process_index)
        arguments: dict[str, Any] = {
            "num_workers": args.dataloader_num_workers,
            "pin_memory": args.dataloader_pin_memory,
            "multiprocessing_context": args.dataloader_multiprocessing_context,
            "worker_init_fn": seeding,
        }
        if args.dataloader_num_workers:
            arguments["prefetch_factor"] = args.dataloader_prefetch_factor
        return arguments

    # --- resume: the position instead of skipped batches --------------------------------

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        with _no_batch_skipping():
            return super()._run_epoch(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if self._loaders is not None and self.args.should_save:
            with open(os.path.join(output_dir, STATE_FILE), "w") as file:
                json.dump(self._loaders.state_dict(), file)

    # --- evaluation -----------------------------------------------------------------------

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        name = eval_dataset if isinstance(eval_dataset, str) else "eval"
        names = [name for name, _ in self._eval_sets()]
        in_run = self._loaders is not None and (
            eval_dataset is None  # evaluate() passes the one eval set itself, a dict's by name
            or eval_dataset is self.eval_dataset
            or isinstance(eval_dataset, str)
        )
        if not in_run or name not in names:
            return super().get_eval_dataloader(eval_dataset)
        return _EvalView(self, name)


def _seed_worker(num_workers: int, rank: int) -> Any:
    """``Trainer``'s ``worker_init_fn`` for train loaders."""
    from functools import partial

    from transformers.trainer_utils import seed_worker

    return partial(seed_worker, num_workers=num_workers, rank=rank)


def _checkpoint_steps(checkpoint: str) -> int:
    """The optimizer steps done at ``checkpoint`` (its ``trainer_state.json``)."""
    with open(os.path.join(checkpoint, trainer_module.TRAINER_STATE_NAME)) as file:
        return int(json.load(file)["global_step"])


@contextmanager
def _no_batch_skipping() -> Iterator[None]:
    """``Trainer._run_epoch`` without ``skip_first_batches``: the train loader of a resumed
    run already continues from the saved position."""
    original = getattr(trainer_module, "skip_first_batches")  # noqa: B009 (not exported)
    setattr(trainer_module, "skip_first_batches", lambda loader, num_batches=0: loader)  # noqa: B010
    try:
        yield
    finally:
        setattr(trainer_module, "skip_first_batches", original)  # noqa: B010


class _TrainView:
    """The train loader ``Trainer`` iterates: one epoch of the run per ``iter()``; the run is
    built at the first (when ``Trainer`` knows ``max_steps``). Over a stream it has no length,
    as ``Trainer``'s own loader over an ``IterableDataset``."""

    def __init__(
        self,
        trainer: InterleavedTrainer,
        dataset: Any,
        collator: Any,
        sampler: SizedIterable | Stream,
    ) -> None:
        self._trainer, self._parts = trainer, (dataset, collator, sampler)
        self.dataset = trainer.train_dataset
        stream = isinstance(sampler, Stream)
        self._length = None if stream else trainer._updates_per_epoch(sampler)
        self._iterations = 0

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("the train loader over an IterableDataset has no len()")
        return self._length

    def __iter__(self) -> Iterator[Any]:
        trainer = self._trainer
        train = trainer._start_run(*self._parts).train
        # each iter() draws what Trainer's loader iterators draw: a persistent one, once
        fresh = self._iterations < trainer._fresh_train_iterations
        train.persistent_workers = trainer.args.dataloader_persistent_workers and not fresh
        self._iterations += 1
        return iter(train)


class _EvalView(DataLoaderStateMixin):  # type: ignore[misc]
    """An eval loader ``Trainer`` iterates: the run's next pass over the set, or a pass apart
    (main process) for an evaluation the schedule has not planned. It keeps Accelerate's
    bookkeeping (``end_of_dataloader``, ``remainder``), which ``gather_for_metrics`` uses to
    drop the padding of the last batch, as Accelerate's own loaders do."""

    def __init__(self, trainer: InterleavedTrainer, name: str) -> None:
        loaders = trainer._loaders
        assert loaders is not None
        self._loaders, self._name = loaders, name
        self.dataset = dict(trainer._eval_sets())[name]
        self.gradient_state = GradientState()
        self._drop_last = trainer.args.dataloader_drop_last
        self.total_batch_size = trainer.args.eval_batch_size * trainer.args.world_size

    def __len__(self) -> int:
        return len(self._loaders.evaluation[self._name])

    def __iter__(self) -> Iterator[Any]:
        loader = self._loaders.evaluation[self._name]
        place = self._loaders.next_place
        scheduled = place is not None and place.source_index == loader.callback + 1
        batches = iter(loader) if scheduled else loader.apart()
        self.begin()
        try:
            for position, batch in enumerate(batches):
                self.end_of_dataloader = position == len(loader) - 1
                yield batch
        finally:
            self.end()
