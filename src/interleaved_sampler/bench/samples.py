"""What a variant's training loop consumed, and the checks that every variant consumed the
same samples in the same phases."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from interleaved_sampler.data import InterleavedBatch

# One phase of a run: the source (0 = training, i + 1 = evaluation dataset i) and the sample
# indices of its consecutive batches, in the order the loop consumed them.
Phase = tuple[int, tuple[int, ...]]


class SampleMismatchError(RuntimeError):
    """The variants of a benchmark did not consume the same samples in the same phases."""


@dataclass
class Recorder:
    """What the training loop observed: time waiting for data, the samples per phase and
    the most bytes the loader's evaluation cache held."""

    wait_s: float = 0.0
    phases: list[tuple[int, list[int]]] = field(default_factory=list)
    cache_bytes: int = 0

    def fetch(self, loader: Iterable[Any]) -> Iterator[Any]:
        """Iterate ``loader``, adding the time spent in ``iter()`` and ``next()`` to wait_s.

        Args:
            loader: a DataLoader.
        """
        start = time.perf_counter()
        iterator = iter(loader)
        self.wait_s += time.perf_counter() - start
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            self.wait_s += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    def consume(self, batch: Sequence[torch.Tensor], step_s: float) -> None:
        """Record the samples of ``batch`` and run the simulated model step.

        Args:
            batch: a collated ``(ids, payloads)`` batch; row ``j`` of ``ids`` is
                ``[source, index]`` of sample ``j``.
            step_s: duration of the simulated step (a sleep), in seconds.
        """
        ids = batch[0]
        source = int(ids[0, 0])
        if bool((ids[:, 0] != source).any()):
            raise SampleMismatchError(f"a batch mixes datasets: {sorted(set(ids[:, 0].tolist()))}")
        if not self.phases or self.phases[-1][0] != source:
            self.phases.append((source, []))
        self.phases[-1][1].extend(ids[:, 1].tolist())
        time.sleep(step_s)

    def trace(self) -> tuple[Phase, ...]:
        """The recorded phases, frozen."""
        return tuple((source, tuple(indices)) for source, indices in self.phases)


def check_tag(batch: InterleavedBatch) -> None:
    """Raise :class:`SampleMismatchError` unless ``batch``'s tag names the samples it holds.

    Args:
        batch: a tagged batch of
            :class:`~interleaved_sampler.bench.scenario.SyntheticDataset` samples.
    """
    ids = batch.data[0]
    if batch.source_index != int(ids[0, 0]) or batch.indices != ids[:, 1].tolist():
        raise SampleMismatchError(
            f"the tag of a batch (source {batch.source_index}, indices {batch.indices}) "
            f"disagrees with its samples {ids.tolist()}"
        )


def check_same_samples(traces: dict[str, tuple[Phase, ...]]) -> None:
    """Raise :class:`SampleMismatchError` unless all variants consumed the same phases.

    Args:
        traces: the phases each variant consumed.
    """
    (reference_name, reference), *others = traces.items()
    for name, trace in others:
        if trace == reference:
            continue
        differ = next(
            (i for i, (x, y) in enumerate(zip(trace, reference, strict=False)) if x != y),
            min(len(trace), len(reference)),
        )
        raise SampleMismatchError(
            f"{name} and {reference_name} consumed different samples: {len(trace)} and "
            f"{len(reference)} phases, first difference in phase {differ}"
        )
