"""The state protocol's data: a run position as small, plain, versioned data.

A state is a JSON-able dict: the format ``version``, the ``fingerprint`` of the schedule it
belongs to (plain data: configuration, sampler lengths, callbacks) and the number of
``batches`` of the run before the position. Its size does not grow with the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from interleaved_sampler.checks import describe

STATE_VERSION = 1
# The fingerprint's key for the num_replicas of per-rank samplers (one per source), present
# only when some sampler shards itself: such a schedule is one rank's, so its position
# means nothing on another number of processes.
PER_RANK_REPLICAS = "per_rank_sampler_replicas"


def make_state(fingerprint: dict[str, Any], batches: int) -> dict[str, Any]:
    """The state of the position after ``batches`` batches of the run ``fingerprint``.

    Example:
        >>> make_state({"batch_size": 4}, 10)
        {'version': 1, 'fingerprint': {'batch_size': 4}, 'batches': 10}
    """
    return {"version": STATE_VERSION, "fingerprint": fingerprint, "batches": batches}


def read_state(state: object, fingerprint: dict[str, Any]) -> int:
    """The number of batches before the position ``state`` names, in the run ``fingerprint``.

    Raises:
        ValueError: ``state`` is not a state of this library, has another version, or
            belongs to another schedule (the message names every difference).
    """
    if not isinstance(state, Mapping) or not {"version", "fingerprint", "batches"} <= set(state):
        raise ValueError(
            "load_state_dict() needs a state from state_dict() of an interleaved loader or "
            f"batch sampler (keys version, fingerprint, batches), got {describe(state)}"
        )
    if state["version"] != STATE_VERSION:
        raise ValueError(
            f"the state has version {state['version']!r}, but this version of "
            f"interleaved-sampler reads version {STATE_VERSION} only"
        )
    differences = [
        f"{key}: the state has {saved!r}, this run has {current!r}"
        for key, saved, current in _differences(state["fingerprint"], fingerprint)
    ]
    if differences:
        saved = state["fingerprint"]
        per_rank = isinstance(saved, Mapping) and (
            saved.get(PER_RANK_REPLICAS) != fingerprint.get(PER_RANK_REPLICAS)
        )
        raise ValueError(
            "the state belongs to another schedule, so its position means nothing here; "
            f"what differs: {'; '.join(differences)}. Load it into a loader built with the "
            "same configuration, samplers and callbacks"
            + (
                ". A run with per-rank samplers (sharded with num_replicas) resumes on the "
                "same number of processes only; to resume on another, build the run with "
                "global samplers and InterleavedSampler(..., num_replicas=, rank=)"
                if per_rank
                else ""
            )
        )
    batches = state["batches"]
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 0:
        raise ValueError(f"the state's batches must be an int >= 0, got {batches!r}")
    return batches


def _differences(saved: object, current: object, key: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(key path, saved, current)`` for every leaf where two plain-data trees differ."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        for name in sorted({*saved, *current}):
            yield from _differences(
                saved.get(name), current.get(name), f"{key}.{name}" if key else name
            )
    elif isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        for i, (a, b) in enumerate(zip(saved, current, strict=True)):
            yield from _differences(a, b, f"{key}[{i}]")
    elif saved != current:
        yield key, saved, current
