"""The state protocol's data: a run position as small, plain, versioned data.

A state is a JSON-able dict: the format ``version``, the ``fingerprint`` of what gives the
position its meaning (the epoch structure, the samplers' identities, each callback's name
and pass shape), the ``position`` itself (updates done, and which passes due after them are
done or under way, by callback name) and, for information, the ``batches`` of the saving
run before it. Its size does not grow with the run.

A position outlives its schedule: it resumes into a run with another end (``max_*``, more
epochs) or other due rules, continuing from the same place, as the training frameworks
continue. Version 1 states (interleaved-sampler 0.3) recorded a batch count, which means
something in their own run only: they load into exactly that run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from interleaved_sampler.checks import describe
from interleaved_sampler.schedule import Position, Schedule

STATE_VERSION = 2
_LAYOUT_VERSION = 1  # interleaved-sampler 0.3: a batch count in one exact run
# The fingerprint's key for the num_replicas of per-rank samplers (one per source), present
# only when some sampler shards itself: such a schedule is one rank's, so its position
# means nothing on another number of processes.
PER_RANK_REPLICAS = "per_rank_sampler_replicas"


def make_state(
    fingerprint: dict[str, Any], schedule: Schedule, names: Sequence[str], batches: int
) -> dict[str, Any]:
    """The state of the position after ``batches`` batches of the run ``schedule``.

    Args:
        fingerprint: the run's fingerprint (see :meth:`Schedule.fingerprint
            <interleaved_sampler.schedule.Schedule.fingerprint>`).
        schedule: the run.
        names: the name of each source: the main one first, then one per callback.
        batches: the batches of the run before the position.
    """
    position = schedule.seek(batches)
    due = [names[callback + 1] for callback in schedule.passes_after(position.update)]
    record = {
        "update": position.update,
        "passes_done": due[: position.passes_done],
        "pass": due[position.passes_done] if position.batch_in_pass else None,
        "batch_in_pass": position.batch_in_pass,
    }
    return {
        "version": STATE_VERSION,
        "fingerprint": fingerprint,
        "position": record,
        "batches": batches,
    }


def read_state(
    state: object, fingerprint: dict[str, Any], schedule: Schedule, names: Sequence[str]
) -> int:
    """The batches of the run ``schedule`` before the position ``state`` names.

    A position past the run's end is the end (nothing is left). The position is a place in
    the order of the run's batches (after update ``u``, the passes after it in callback
    order), so what this run does after it comes next, what it does before it is done.

    Raises:
        ValueError: ``state`` is not a state of this library, has an unknown version,
            belongs to other data or samplers (the message names every difference), or is
            a position before the run's start or inside a pass over a callback that this
            run does not run there.
    """
    if not isinstance(state, Mapping) or not {"version", "fingerprint", "batches"} <= set(state):
        raise ValueError(
            "load_state_dict() needs a state from state_dict() of an interleaved loader or "
            f"batch sampler (keys version, fingerprint, position, batches), got {describe(state)}"
        )
    version = state["version"]
    if version == _LAYOUT_VERSION:
        _check_same(state["fingerprint"], _layout_of(fingerprint, schedule, names), version=1)
        return _batches(state, schedule)
    if version != STATE_VERSION:
        raise ValueError(
            f"the state has version {version!r}, but this version of interleaved-sampler "
            f"reads versions {_LAYOUT_VERSION} and {STATE_VERSION}"
        )
    _check_same(state["fingerprint"], fingerprint, version=STATE_VERSION)
    position = _position(state.get("position"), schedule, names)
    if position is None:
        return schedule.num_batches
    return schedule.batches_at(position)


def _layout_of(
    fingerprint: dict[str, Any], schedule: Schedule, names: Sequence[str]
) -> dict[str, Any]:
    """What a version 1 state of this run would hold as its fingerprint."""
    layout = schedule.layout(names)
    if PER_RANK_REPLICAS in fingerprint:
        layout[PER_RANK_REPLICAS] = fingerprint[PER_RANK_REPLICAS]
    return layout


def _batches(state: Mapping[str, Any], schedule: Schedule) -> int:
    batches = state["batches"]
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 0:
        raise ValueError(f"the state's batches must be an int >= 0, got {batches!r}")
    schedule.seek(batches)  # in the run's range, else a clear error
    return batches


def _position(record: object, schedule: Schedule, names: Sequence[str]) -> Position | None:
    """The saved position in this run (``None``: past its end)."""
    keys = {"update", "passes_done", "pass", "batch_in_pass"}
    if not isinstance(record, Mapping) or not keys <= set(record):
        raise ValueError(
            f"the state's position must be a dict with the keys {', '.join(sorted(keys))}, "
            f"got {describe(record)}"
        )
    update, batch_in_pass = record["update"], record["batch_in_pass"]
    for key, value in (("update", update), ("batch_in_pass", batch_in_pass)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"the state's position.{key} must be an int >= 0, got {value!r}")
    if schedule.evaluation and update:
        raise ValueError(f"an evaluation run has no updates, got a position after {update}")
    if not schedule.evaluation and update < schedule.start.update:
        raise ValueError(
            f"the state's position is after update {update}, before this run's start at "
            f"update {schedule.start.update}: remove start_* from the configuration to resume"
        )
    if update > schedule.end_update:
        return None
    due = schedule.passes_after(update)
    done, current = record["passes_done"], record["pass"]
    if batch_in_pass:  # inside the pass over `current`
        callback = _callback(names, current)
        if callback not in due:
            raise ValueError(
                f"the state's position is inside the pass over {current!r} after update "
                f"{update} (batch {batch_in_pass}), but this run has no such pass there (its "
                f"passes after update {update}: {[names[i + 1] for i in due] or 'none'}); "
                "resume with that callback due at that update, or from a checkpoint saved "
                "outside the pass"
            )
        return Position(update, due.index(callback), batch_in_pass)
    after = _callback(names, done[-1]) + 1 if done else 0  # the callbacks are in one order
    return Position(update, sum(1 for callback in due if callback < after))


def _callback(names: Sequence[str], name: object) -> int:
    if name not in names[1:]:
        raise ValueError(f"the state's position names the callback {name!r}, not in this run")
    return names.index(name) - 1


def _check_same(saved: object, current: dict[str, Any], version: int) -> None:
    differences = [
        f"{key}: the state has {was!r}, this run has {now!r}"
        for key, was, now in _differences(saved, current)
    ]
    if not differences:
        return
    per_rank = isinstance(saved, Mapping) and (
        saved.get(PER_RANK_REPLICAS) != current.get(PER_RANK_REPLICAS)
    )
    raise ValueError(
        "the state belongs to other data or samplers, so its position means nothing here; "
        f"what differs: {'; '.join(differences)}. Load it into a loader built over the same "
        "datasets with the same samplers (type and seed), batch sizes and callbacks"
        + (
            " (a version 1 state, of interleaved-sampler 0.3, loads into exactly the run "
            "that saved it: the same max_*, start_* and intervals)"
            if version == _LAYOUT_VERSION
            else ""
        )
        + (
            ". A run with per-rank samplers (sharded with num_replicas) resumes on the "
            "same number of processes only; to resume on another, build the run with "
            "global samplers and InterleavedSampler(..., num_replicas=, rank=)"
            if per_rank
            else ""
        )
    )


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
