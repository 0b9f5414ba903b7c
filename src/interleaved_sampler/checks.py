"""Construction-time checks with one message style: ``<what> ... got <value>; <what is valid>``.

Everything here runs once, when a sampler or a loader is built: nothing is on the per-batch
path.
"""

from __future__ import annotations

import multiprocessing
import pickle
import reprlib
import sys
from collections.abc import Iterable, Sized
from functools import cache
from types import FunctionType
from typing import Any

import torch
from torch.utils.data import DataLoader

# Start methods that send the dataset and the collate function to each worker by pickling.
PICKLING_START_METHODS = ("spawn", "forkserver")


def describe(value: object) -> str:
    """A short ``repr`` of a value and its type, for error messages."""
    return f"{reprlib.repr(value)} ({type(value).__name__})"


def name_of(function: object) -> str:
    """The qualified name of a function, or the type name of another callable."""
    return str(getattr(function, "__qualname__", type(function).__name__))


def not_a_sampler(field: str, value: object, example: str) -> str:
    """The message for ``value`` given as ``field`` where a sampler belongs.

    A dataset (indexable and sized, but no sampler) gets the hint to wrap it in a sampler.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> dataset = TensorDataset(torch.zeros(3))
        >>> not_a_sampler("sampler", dataset, "SequentialSampler(dataset)").split("; ")[1]
        'pass a sampler over the dataset, e.g. SequentialSampler(dataset)'
    """
    expected = f"{field} must be a sampler (with __iter__ and __len__)"
    if hasattr(value, "__getitem__") and isinstance(value, Sized):
        return (
            f"{expected}, got the dataset {type(value).__name__} ({len(value)} samples); "
            f"pass a sampler over the dataset, e.g. {example}"
        )
    return f"{expected}, got {describe(value)}; e.g. {example}"


def check_type(field: str, value: object, expected: type | tuple[type, ...], valid: str) -> None:
    """Raise a ``TypeError`` naming ``field`` unless ``value`` is an ``expected``."""
    if not isinstance(value, expected):
        raise TypeError(f"{field} must be {valid}, got {describe(value)}")


def sampler_len(sampler: object, role: str) -> int:
    """``len(sampler)``, or a clear error naming the sampler when it has no valid length."""
    try:
        length = len(sampler)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as error:
        raise TypeError(
            f"the {role} sampler {type(sampler).__name__} has no valid len(), got "
            f"{type(error).__name__}: {error}; len() must return the number of indices one "
            "iteration yields (an int >= 0)"
        ) from error
    return length


class _Discard:
    """A file that forgets what is written to it: pickling without holding the bytes."""

    def write(self, data: bytes) -> int:
        return len(data)


class _CheckPickler(pickle.Pickler):
    """Pickles like the worker start does, but skips tensor and storage contents, and refuses
    what a worker could not unpickle: a class or function of an interactive ``__main__``.

    Torch sends tensors to workers through shared memory; copying gigabytes here would make
    the check anything but cheap.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor) or torch.is_storage(obj):
            return int, ()
        if isinstance(obj, _shared_by_inheritance()):
            return int, ()  # pickles only while a process starts: as the workers do
        if _defined_in_interactive_main(obj):
            raise pickle.PicklingError(
                f"{name_of(obj)} is defined in an interactive __main__ (a notebook, a REPL or "
                "python -c), which a spawned worker cannot import"
            )
        return NotImplemented


@cache
def _shared_by_inheritance() -> tuple[type, ...]:
    """multiprocessing's locks, shared values and queues: they refuse to be pickled except
    while a process is being started, which is how the DataLoader sends them to workers."""
    from multiprocessing.queues import Queue, SimpleQueue
    from multiprocessing.sharedctypes import SynchronizedBase
    from multiprocessing.synchronize import SemLock

    return SemLock, SynchronizedBase, Queue, SimpleQueue


def _defined_in_interactive_main(obj: object) -> bool:
    """Whether ``obj`` (a class, function or instance) comes from a ``__main__`` that has no
    file: pickled by reference to it, a worker could not find it."""
    defined = obj if isinstance(obj, type | FunctionType) else type(obj)
    if defined.__module__ != "__main__":
        return False
    return not hasattr(sys.modules.get("__main__"), "__file__")


def start_method(loader: DataLoader[Any]) -> str:
    """The start method the loader's workers will use (without fixing the global default)."""
    context = loader.multiprocessing_context
    if context is not None:
        return str(context.get_start_method())
    chosen = multiprocessing.get_start_method(allow_none=True)
    return chosen or multiprocessing.get_all_start_methods()[0]


def check_picklable(loader: DataLoader[Any], objects: Iterable[tuple[str, object]]) -> None:
    """Raise a ``TypeError`` for the first object the workers cannot receive.

    Only with workers started by a method that pickles (``spawn``, ``forkserver``); each
    object is pickled once, into nothing.
    """
    if loader.num_workers == 0:
        return
    method = start_method(loader)
    if method not in PICKLING_START_METHODS:
        return
    for what, obj in objects:
        try:
            _CheckPickler(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        except Exception as error:
            raise TypeError(
                f"{what} cannot be pickled, which the {method!r} start method needs to send it "
                f"to the DataLoader workers, got {type(error).__name__}: {error}; define it at "
                "module level of an importable file (no lambdas, local functions or classes, "
                "open files or locks), "
                "or pass multiprocessing_context='fork', or num_workers=0"
            ) from error
