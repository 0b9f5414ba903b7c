"""Measurements of a run's process tree: worker start-ups, peak memory and CPU time.

Memory is the peak of the summed PSS (proportional set size) of the main process and all its
descendants, sampled by a thread: PSS splits each shared page among the processes that map
it, so the sum is the physical memory the process tree occupies. Summed RSS would count the
shared pages (torch's libraries in every spawned worker, copy-on-write pages after ``fork``)
once per process; summed USS (also reported) leaves them out altogether.

psutil (the extra ``bench``) is imported when a measurement starts, not with this module.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from interleaved_sampler.extras import require

MIB = 2**20


class StartupCounter:
    """A ``worker_init_fn`` that counts worker start-ups in shared memory.

    Args:
        context: the multiprocessing context the workers are started with.
    """

    def __init__(self, context: BaseContext) -> None:
        self.started = context.Value("i", 0)

    def __call__(self, worker_id: int) -> None:
        with self.started.get_lock():
            self.started.value += 1

    @property
    def count(self) -> int:
        value: int = self.started.value
        return value


def require_psutil() -> Any:
    """Import psutil, or raise :class:`~interleaved_sampler.extras.MissingExtraError` naming
    the extra ``bench``."""
    return require("psutil", "the benchmark's memory and CPU measurements")


def tree_memory(process: Any) -> tuple[int, int]:
    """Summed ``(PSS, USS)`` in bytes of ``process`` and all its descendants.

    Args:
        process: a ``psutil.Process``.
    """
    psutil = require_psutil()
    pss = uss = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # exited (or not ours) since children() listed it
        pss, uss = pss + info.pss, uss + info.uss
    return pss, uss


@dataclass(frozen=True)
class CpuSnapshot:
    """Busy CPU seconds of the whole machine and of this process tree, at one moment.

    The tree's are this process's and those of its children that have exited (as every
    worker has when a run ends; with ``forkserver`` they are the server's children, so they
    count as other processes).
    """

    machine_s: float
    tree_s: float

    @classmethod
    def now(cls) -> CpuSnapshot:
        psutil = require_psutil()
        machine = psutil.cpu_times()
        idle = ("idle", "iowait", "guest", "guest_nice")  # guest time is also in user time
        busy = sum(machine) - sum(getattr(machine, name, 0.0) for name in idle)
        own = psutil.Process().cpu_times()
        return cls(busy, own.user + own.system + own.children_user + own.children_system)

    def other_cores(self, start: CpuSnapshot, wall_s: float) -> float:
        """Cores other processes kept busy on average since ``start``.

        Args:
            start: the snapshot at the start of the interval.
            wall_s: the interval's length in seconds.
        """
        others = (self.machine_s - start.machine_s) - (self.tree_s - start.tree_s)
        return max(others, 0.0) / wall_s


class MemoryPeak:
    """Samples :func:`tree_memory` of this process in a thread and keeps the peaks.

    Args:
        interval_s: seconds between samples (reading PSS costs a few ms of CPU per process).
    """

    def __init__(self, interval_s: float) -> None:
        psutil = require_psutil()
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak_pss = self.peak_uss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample_until_stopped(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval_s):
                return

    def _sample(self) -> None:
        pss, uss = tree_memory(self.process)
        self.peak_pss, self.peak_uss = max(self.peak_pss, pss), max(self.peak_uss, uss)
