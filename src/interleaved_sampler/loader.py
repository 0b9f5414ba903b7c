"""The run's one ``DataLoader``, with the state protocol at the position the loop consumed."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from interleaved_sampler.batching import CachingBatchSampler, InterleavedBatchSampler
from interleaved_sampler.cache import PassCache
from interleaved_sampler.schedule import TrainingProgress
from interleaved_sampler.state import STREAM_COPIES
from interleaved_sampler.stream import CopyState, EmptySlot, StreamData


class InterleavedDataLoader(DataLoader[Any]):
    """A ``torch.utils.data.DataLoader`` over an interleaved run that can checkpoint.

    :meth:`state_dict` is the position right after the batches the loop has received from
    ``next()`` (not the ones the workers have prefetched); :meth:`load_state_dict` before
    iterating makes the next ``iter()`` yield exactly the rest of the run, tags included.
    Build it with :meth:`InterleavedSampler.get_data_loader
    <interleaved_sampler.InterleavedSampler.get_data_loader>`.

    With cached callbacks its batch sampler is a
    :class:`~interleaved_sampler.batching.CachingBatchSampler`: the workers load only the
    first pass over each (per iteration), and the iterator serves copies of its batches
    in place of the later passes (see ``docs/cache.md``); :attr:`cache_bytes` is what the
    cache holds. Over a :class:`~interleaved_sampler.Stream` it drops the empty dispatch
    slots and keeps the state of each copy's dataset after its last consumed batch.

    Hugging Face Accelerate's ``prepare`` of this loader raises ``TypeError`` (in every mode
    and with any number of processes): Accelerate would iterate the batch sampler with a
    ``DataLoader`` of its own, which has no state (``save_state`` would keep no position)
    and, with several processes, deals the batches round-robin to the ranks. Prepare the
    model and optimizer only; see ``docs/frameworks.md``.

    Example:
        >>> from torch.utils.data import SequentialSampler
        >>> from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig
        >>> def make_loader():
        ...     config = InterleavedSamplerConfig(batch_size=2, max_epochs=2)
        ...     return InterleavedSampler(SequentialSampler(range(6)), config).get_data_loader()
        >>> loader = make_loader()
        >>> stream = iter(loader)
        >>> next(stream).tolist(), next(stream).tolist()
        ([0, 1], [2, 3])
        >>> state = loader.state_dict()  # save it with the model
        >>> resumed = make_loader()
        >>> resumed.load_state_dict(state)
        >>> [batch.tolist() for batch in resumed]
        [[4, 5], [0, 1], [2, 3], [4, 5]]
    """

    batch_sampler: InterleavedBatchSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._consumed = 0
        self._copies: list[CopyState | None] = []
        self._cache: PassCache | None = None
        self._iteration: weakref.ref[Iterator[Any]] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # Read before the workers start: prefetching starts the batch sampler's iteration.
        sampler = self.batch_sampler
        self._consumed = sampler.resume_position
        if not sampler.paused:  # after a pause every batch before it was consumed: records hold
            self._copies = sampler.resume_copies
        sampler.served = True  # this iterator serves what it leaves out (see its doc)
        batches: Iterator[Any] = super().__iter__()
        self._iteration = weakref.ref(batches)  # weak: dropping the loop's iterator frees it
        if sampler.copies > 1:
            batches = (batch for batch in batches if not isinstance(batch, EmptySlot))
        if isinstance(sampler, CachingBatchSampler):
            self._cache = PassCache([plan.batches_per_pass for plan in sampler.schedule.callbacks])
            batches = self._cache.interleave(batches, sampler.passes)
        return self._count_consumed(batches)

    def shutdown_workers(self) -> None:
        """Shut the workers of the current iteration down now, as dropping its iterator does
        (its prefetched batches are dropped); the next ``iter()`` starts new ones. Nothing
        happens without workers or a live iteration."""
        iteration = self._iteration() if self._iteration is not None else None
        shutdown = getattr(iteration, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._iterator = None  # persistent_workers: the next iter() starts new ones

    @property
    def _is_accelerate_prepared(self) -> bool:
        """Raise: Accelerate's ``prepare_data_loader`` reads this attribute of the loader
        before anything else (accelerate 1.x ``accelerator.py``), so ``prepare(loader)``
        fails there, before it builds a loader of its own."""
        raise TypeError(
            "accelerator.prepare() got an interleaved loader: Accelerate would iterate its "
            "batch sampler with a DataLoader of its own, whose position save_state does not "
            "keep (load_state would start the run again), and with several processes deal "
            "its batches round-robin to the ranks (each rank another source at the same "
            "step). Call accelerator.prepare(model, optimizer) without the loader, build "
            "the sampler with InterleavedSampler(..., num_replicas=accelerator."
            "num_processes, rank=accelerator.process_index), move batches with "
            "batch.to(accelerator.device) and keep the position with accelerator."
            "register_for_checkpointing(loader). See docs/frameworks.md"
        )

    @property
    def cache_bytes(self) -> int:
        """Bytes the evaluation cache holds now: the sum of ``nbytes`` of the tensors of the
        kept batches (their elements, not Python objects); 0 without cached callbacks, before
        the first cached pass of an iteration and after the iteration ended."""
        return self._cache.nbytes if self._cache is not None else 0

    @property
    def batches_consumed(self) -> int:
        """The batches of the run before the position :meth:`state_dict` saves: those the
        loop has received (prefetched ones do not count), or after :meth:`load_state_dict`
        the resumed position. ``len(loader)`` stays the whole run, so the progress bar of a
        resumed run starts here: ``tqdm(loader, initial=loader.batches_consumed,
        total=len(loader))``.

        Example:
            >>> from torch.utils.data import SequentialSampler
            >>> from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig
            >>> config = InterleavedSamplerConfig(batch_size=2, max_updates=5)
            >>> sampler = InterleavedSampler(SequentialSampler(range(4)), config)
            >>> loader = sampler.get_data_loader()
            >>> stream = iter(loader)
            >>> _ = next(stream), next(stream)
            >>> loader.batches_consumed, len(loader)
            (2, 5)
            >>> resumed = sampler.get_data_loader()
            >>> resumed.load_state_dict(loader.state_dict())
            >>> resumed.batches_consumed, len(list(resumed))  # where the bar starts, what is left
            (2, 3)
        """
        return self._consumed

    @property
    def progress(self) -> TrainingProgress:
        """The training work done before the position :meth:`state_dict` saves: the global
        run's epochs, updates and samples after the batches the loop has consumed (after
        :meth:`load_state_dict`, where the resumed run continues). A training counter kept
        elsewhere can be restored from it, the same on every rank, e.g. Accelerate's step
        counter after ``load_state``: ``accelerator.step = loader.progress.update``.

        Example:
            >>> from torch.utils.data import SequentialSampler
            >>> from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig
            >>> config = InterleavedSamplerConfig(batch_size=2, max_epochs=2)
            >>> loader = InterleavedSampler(SequentialSampler(range(6)), config).get_data_loader()
            >>> stream = iter(loader)
            >>> _ = [next(stream) for _ in range(4)]
            >>> loader.progress
            TrainingProgress(epoch=1, update=4, sample=8)
        """
        schedule = self.batch_sampler.schedule
        return schedule.structure.progress_at(schedule.seek(self._consumed).update)

    def _count_consumed(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self._consumed += 1
            if isinstance(batch, StreamData):  # a stream batch with its copy's state
                self._copies[batch.state.copy] = batch.state
                batch = batch.data
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The position after the batches the loop has consumed (plain, JSON-able data)."""
        state = self.batch_sampler.state_at(self._consumed)
        if any(copy is not None for copy in self._copies):
            state[STREAM_COPIES] = [None if c is None else c.as_dict() for c in self._copies]
        return state

    def load_state_dict(self, state: dict[str, Any], *, restart_epoch_order: bool = False) -> None:
        """Make the next ``iter()`` yield the rest of the run after the position ``state``.

        Args:
            state: a state of :meth:`state_dict`.
            restart_epoch_order: see :meth:`InterleavedBatchSampler.load_state_dict
                <interleaved_sampler.batching.InterleavedBatchSampler.load_state_dict>`.

        Raises:
            ValueError: ``state`` belongs to other data or samplers or version, or the samplers
                cannot replay the order its position needs (see the batch sampler's).
        """
        batches = self.batch_sampler.batches_of(state)
        self.load_position(
            batches, restart_epoch_order=restart_epoch_order, copies=state.get(STREAM_COPIES)
        )

    def load_position(
        self, batches: int, *, restart_epoch_order: bool = False, copies: object = None
    ) -> None:
        """Make the next ``iter()`` yield the rest of the run after its first ``batches``
        batches (what :meth:`load_state_dict` does with the position of a state; ``copies``:
        a stream's copies' records, see :meth:`InterleavedBatchSampler.load_position
        <interleaved_sampler.batching.InterleavedBatchSampler.load_position>`)."""
        sampler = self.batch_sampler
        sampler.load_position(batches, restart_epoch_order=restart_epoch_order, copies=copies)
        self._consumed, self._copies = batches, sampler.resume_copies

    def keep_position(self) -> None:
        """Make the next ``iter()`` continue after the batches consumed so far (as loading
        :meth:`state_dict` does, but without checking now that the samplers can replay the
        position: an iteration that resumes from it checks)."""
        self.batch_sampler.resume_at(self._consumed, copies=self._copies or None)
