"""Timing shared by the benchmark scripts: medians of alternating repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """The median wall time of each function, running them in turn ``repeats`` times.

    Alternating the functions makes drifts in the load of a shared machine hit all alike.
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
