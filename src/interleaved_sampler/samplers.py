"""Samplers and what the interleaved sampler needs to know about them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from interleaved_sampler.checks import describe


class SeededRandomSampler(Sampler[int]):
    """A random permutation per epoch that is a function of ``(seed, epoch)`` only.

    Unlike ``torch.utils.data.RandomSampler``, epoch ``k`` has the same order in every
    process and after every restart, so a run can resume exactly inside an epoch. The order
    is computed index by index (a :class:`FeistelPermutation` keyed by ``(seed, epoch)``,
    evaluated in chunks), never materialized: memory does not grow with the dataset, and
    :meth:`iter_from` starts anywhere in the epoch at no extra cost.

    Args:
        data_source: the dataset to sample from (only its ``len()`` is used).
        seed: the base seed, in ``[0, 2**31)``; epoch ``k`` uses the permutation keyed by
            :func:`epoch_seed` ``(seed, k)``.
        num_replicas: number of shards (processes of a distributed run); 1 = no sharding.
        rank: the shard this sampler yields, in ``[0, num_replicas)``.
        drop_last: with sharding, drop the permutation's tail instead of padding it.

    Sharding follows ``DistributedSampler``: the epoch's permutation is padded by repeating
    its start up to a multiple of ``num_replicas`` (or, with ``drop_last``, cut down to one),
    and shard ``rank`` takes every ``num_replicas``-th index from position ``rank``. So every
    shard has the same length, and batch ``k`` of all shards together is batch ``k`` of the
    unsharded sampler with ``num_replicas`` times the batch size.

    Example:
        >>> sampler = SeededRandomSampler(range(5), seed=1)
        >>> sampler.set_epoch(3)
        >>> sorted(sampler) == [0, 1, 2, 3, 4] and list(sampler) == list(sampler)
        True
        >>> list(sampler.iter_from(2)) == list(sampler)[2:]
        True
        >>> shards = [SeededRandomSampler(range(5), 1, num_replicas=2, rank=r) for r in (0, 1)]
        >>> [len(shard) for shard in shards]  # 5 indices padded to 6
        [3, 3]
    """

    repeats_epoch_order = True

    def __init__(
        self,
        data_source: Sized,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {seed}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.data_source = data_source
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of epoch ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        length, replicas = len(self.data_source), self.num_replicas
        return length // replicas if self.drop_last else -(-length // replicas)

    def __iter__(self) -> Iterator[int]:
        return self.iter_from(0)

    def iter_from(self, position: int, step: int = 1) -> Iterator[int]:
        """This shard's order of the current epoch from ``position`` on, in O(1) to start.

        Args:
            position: where to start, in ``[0, len(self)]``; ``len(self)`` gives nothing.
            step: yield every ``step``-th index from ``position`` (positions ``position``,
                ``position + step``, ...): how the interleaved sampler reads one rank's part
                of each global batch without computing the others.

        Example:
            >>> sampler = SeededRandomSampler(range(10), seed=3)
            >>> list(sampler.iter_from(1, step=4)) == list(sampler)[1::4]
            True
        """
        length = len(self)
        if not 0 <= position <= length:
            raise ValueError(f"position must be in [0, len(self)={length}], got {position}")
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        if length == 0:
            return iter(())
        permutation = FeistelPermutation.for_epoch(len(self.data_source), self.seed, self.epoch)
        return self._indices(permutation, range(position, length, step))

    def _indices(self, permutation: FeistelPermutation, shard: range) -> Iterator[int]:
        size, replicas, rank = permutation.size, self.num_replicas, self.rank
        for begin in range(0, len(shard), _CHUNK):
            chunk = shard[begin : begin + _CHUNK]
            # shard position j is position j * replicas + rank of the padded order, and
            # padded[i] = order[i % size]
            positions = torch.arange(
                chunk.start * replicas + rank, chunk.stop * replicas + rank, chunk.step * replicas
            )
            if chunk[-1] * replicas + rank >= size:
                positions.remainder_(size)
            yield from permutation(positions).tolist()


# Positions per vectorized step: below torch's grain size for intra-op threads (32768), so
# each op runs on one thread and its operands stay in cache.
_CHUNK = 16384
# Feistel rounds: 8 pass the statistical checks of docs/scale.md down to 2-element
# datasets; 4 fail two of them (small datasets, ascending neighbours).
_ROUNDS = 8
_MASK32 = 2**32 - 1
_MASK64 = 2**64 - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, splitmix64's increment


@dataclass(frozen=True)
class FeistelPermutation:
    """A keyed pseudo-random permutation of ``[0, size)``, evaluated on tensors of positions.

    A position ``x`` is split into two digits, ``x = left * right_size + right``, with
    ``left_size * right_size >= size`` (both about ``sqrt(size)``). Each round adds a hash of
    one digit and a round key to the other, modulo its size; a round is a bijection, so the
    network is one of ``[0, left_size * right_size)``. A result ``>= size`` is fed through
    the network again until it lands in ``[0, size)`` (cycle walking), which keeps a
    bijection of ``[0, size)``; fewer than ``sqrt(size)`` values of the larger domain lie
    outside, so walking is rare.

    Args:
        size: the number of positions, in ``[1, 2**62]``.
        keys: one 32-bit key per round.

    Example:
        >>> permutation = FeistelPermutation.for_epoch(10, seed=0, epoch=0)
        >>> sorted(permutation(torch.arange(10)).tolist())
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    size: int
    keys: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.size <= 2**62:
            raise ValueError(f"size must be in [1, 2**62], got {self.size}")

    @classmethod
    def for_epoch(cls, size: int, seed: int, epoch: int) -> FeistelPermutation:
        """The permutation of epoch ``epoch``: round keys drawn by splitmix64 from
        :func:`epoch_seed` ``(seed, epoch)``."""
        state = epoch_seed(seed, epoch)
        keys = tuple(_mix64((state + i * _GOLDEN) & _MASK64) >> 32 for i in range(1, 1 + _ROUNDS))
        return cls(size, keys)

    @property
    def left_size(self) -> int:
        return max(2, math.isqrt(self.size - 1) + 1)

    @property
    def right_size(self) -> int:
        return max(2, -(-self.size // self.left_size))

    def __call__(self, positions: Tensor) -> Tensor:
        """The images of ``positions`` (an int64 tensor of values in ``[0, size)``)."""
        images = self._network(positions)
        outside = (images >= self.size).nonzero().flatten()
        while outside.numel():
            walked = self._network(images[outside])
            images[outside] = walked
            outside = outside[walked >= self.size]
        return images

    def _network(self, positions: Tensor) -> Tensor:
        left_size, right_size = self.left_size, self.right_size
        left = torch.div(positions, right_size, rounding_mode="floor")
        right = positions - left * right_size
        hashed, scratch = torch.empty_like(left), torch.empty_like(left)
        for round_, key in enumerate(self.keys):
            source, target, size = (
                (right, left, left_size) if round_ % 2 == 0 else (left, right, right_size)
            )
            # a multiply-xorshift hash of source ^ key to 32 bits (every product < 2**63)
            torch.bitwise_xor(source, key, out=hashed)
            for _ in range(2):
                hashed.mul_(0x45D9F3B).bitwise_and_(_MASK32)
                torch.bitwise_right_shift(hashed, 16, out=scratch)
                hashed.bitwise_xor_(scratch)
            # scaled into [0, size) by its high bits, then added modulo size: subtract size
            # and add it back where the sum went negative (>> 63 is -1 there, 0 elsewhere)
            hashed.mul_(size).bitwise_right_shift_(32)
            target.add_(hashed).sub_(size)
            torch.bitwise_right_shift(target, 63, out=scratch)
            target.add_(scratch.bitwise_and_(size))
        return left.mul_(right_size).add_(right)


def _mix64(z: int) -> int:
    """splitmix64's finalizer: a bijection of 64-bit integers in which every bit of the
    result depends on every bit of ``z``."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit seed for ``(seed, epoch)``: the splitmix64 mix of both.

    ``seed`` and ``epoch`` are mixed rather than concatenated, so nearby pairs give
    unrelated seeds.
    """
    return _mix64((seed * _GOLDEN + epoch * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _MASK64)


def dataset_of(sampler: Any, role: str, given: Any, field: str) -> Any:
    """The dataset a sampler indexes: ``given`` (the dataset passed explicitly as ``field``),
    else its ``.data_source`` or ``.dataset``.

    Args:
        sampler: the sampler.
        role: its source's name (``"train"``, a callback's), for error messages.
        given: the dataset passed explicitly, or ``None``.
        field: where ``given`` is passed, e.g. ``"InterleavedSampler(train_dataset=...)"``.

    Raises:
        TypeError: neither ``given`` nor a dataset on the sampler; ``given`` has no ``len()``.
        ValueError: both, and they are different objects; the sampler is known to yield
            indices outside ``given`` (see :func:`index_bound`).
    """
    exposed = next(
        (
            (attribute, dataset)
            for attribute in ("data_source", "dataset")
            if (dataset := getattr(sampler, attribute, None)) is not None
        ),
        None,
    )
    what = f"the {role} sampler {type(sampler).__name__}"
    if given is None:
        if exposed is None:
            raise TypeError(
                f"{what} exposes no dataset, got neither `.data_source` nor `.dataset`; pass "
                f"the dataset it samples from as {field} (torch's SubsetRandomSampler and "
                "WeightedRandomSampler need it), or give the sampler one of those attributes"
            )
        return exposed[1]
    if exposed is not None and exposed[1] is not given:
        attribute, dataset = exposed
        raise ValueError(
            f"{field} and the dataset of {what} (its .{attribute}) are different objects, "
            f"got {_about(given)} and {_about(dataset)}; pass the dataset the sampler samples "
            "from, or leave the explicit dataset out (the sampler's is used)"
        )
    try:
        length = len(given)
    except TypeError:
        raise TypeError(
            f"{field} must be a map-style dataset with len(), got {describe(given)}"
        ) from None
    bound = index_bound(sampler)
    if bound is not None and (bound[0] < 0 or bound[1] > length):
        raise ValueError(
            f"{what} yields indices from {bound[0]} to {bound[1] - 1}, outside {field}, got "
            f"{_about(given)}; valid: indices in [0, {length}): pass the dataset the "
            "sampler's indices refer to"
        )
    return given


def _about(dataset: Any) -> str:
    """A dataset in an error message: its type, length and identity (two datasets of one
    type and length are told apart)."""
    try:
        size = f"{len(dataset)} samples, "
    except TypeError:
        size = ""
    return f"{type(dataset).__name__} ({size}id {id(dataset):#x})"


def index_bound(sampler: Any) -> tuple[int, int] | None:
    """``(low, high)``: the sampler yields indices in ``[low, high)``, where that is known
    without iterating it: torch's ``WeightedRandomSampler`` (``[0, len(weights))``) and
    ``SubsetRandomSampler`` (its indices' minimum and maximum, one pass over them);
    ``None`` for any other sampler.

    Example:
        >>> index_bound(SubsetRandomSampler([4, 2, 7]))
        (2, 8)
    """
    if isinstance(sampler, WeightedRandomSampler):
        return 0, len(sampler.weights)
    indices: Any = sampler.indices if isinstance(sampler, SubsetRandomSampler) else ()
    if not len(indices):
        return None
    if hasattr(indices, "min"):  # a tensor or an array: vectorized
        return int(indices.min()), int(indices.max()) + 1
    return int(min(indices)), int(max(indices)) + 1


StridedOrder = Callable[[int, int], Iterator[int]]


def strided_order(sampler: Any) -> StridedOrder | None:
    """A function ``(start, step)`` that reads the sampler's current order at positions
    ``start, start + step, ...`` without computing the others, for the samplers whose
    order is known to be readable so (``SeededRandomSampler``, a plain
    ``SequentialSampler``); ``None`` for any other sampler, which must be iterated.

    Example:
        >>> list(strided_order(SequentialSampler(range(10)))(1, 4))
        [1, 5, 9]
    """
    if isinstance(sampler, SeededRandomSampler):
        return sampler.iter_from
    if type(sampler).__iter__ is SequentialSampler.__iter__:
        length = len(sampler)
        return lambda start, step: iter(range(start, length, step))
    return None


def shard_of(sampler: Any) -> tuple[int, int] | None:
    """``(num_replicas, rank)`` of a sampler that shards (has int ``num_replicas`` and
    ``rank``, as ``DistributedSampler`` and :class:`SeededRandomSampler` do); ``None`` for
    any other sampler."""
    replicas, rank = getattr(sampler, "num_replicas", None), getattr(sampler, "rank", None)
    if isinstance(replicas, int) and isinstance(rank, int):
        return replicas, rank
    return None


def repeats_epoch_order(sampler: Any) -> bool:
    """Whether iterating ``sampler`` again (after ``set_epoch``) repeats an epoch's order.

    True for ``SequentialSampler``, ``DistributedSampler``, :class:`SeededRandomSampler` and
    any sampler with a true ``repeats_epoch_order`` attribute.
    """
    return isinstance(sampler, SequentialSampler | DistributedSampler) or bool(
        getattr(sampler, "repeats_epoch_order", False)
    )


def shuffles(sampler: Any) -> bool:
    """Whether ``sampler`` is known to yield a new order in every iteration: torch's
    ``RandomSampler``, ``SubsetRandomSampler``, ``WeightedRandomSampler`` and a
    ``DistributedSampler`` with ``shuffle=True`` (whose order moves with ``set_epoch``)."""
    random = RandomSampler | SubsetRandomSampler | WeightedRandomSampler
    return isinstance(sampler, random) or (
        isinstance(sampler, DistributedSampler) and bool(sampler.shuffle)
    )


def draws_from_global_rng(sampler: Any) -> bool:
    """Whether ``sampler`` draws its order from the global random generator: torch's
    ``RandomSampler``, ``SubsetRandomSampler`` and ``WeightedRandomSampler`` without a
    ``generator`` (each draws all it needs when its iteration yields its first index).
    In several processes each then has its own order.

    Example:
        >>> draws_from_global_rng(RandomSampler(range(4)))
        True
        >>> draws_from_global_rng(RandomSampler(range(4), generator=torch.Generator()))
        False
    """
    return (
        getattr(type(sampler), "__iter__", None) in _GLOBAL_RNG_ITERATIONS
        and getattr(sampler, "generator", None) is None
    )


_GLOBAL_RNG_ITERATIONS = (
    RandomSampler.__iter__,
    SubsetRandomSampler.__iter__,
    WeightedRandomSampler.__iter__,
)
# Options of torch's samplers that change the order a seed gives.
_ORDER_OPTIONS = ("shuffle", "replacement")


def sampler_identity(sampler: Any) -> dict[str, Any]:
    """What makes ``sampler``'s orders its own, as plain data: its type, its seed
    (``.seed``, Accelerate's ``.initial_seed``, or the initial seed of its ``.generator``;
    ``None`` without one) and the options that change the order a seed gives
    (``shuffle`` of ``DistributedSampler``, ``replacement`` of ``RandomSampler``), where it
    has them. A position saved with one sampler means nothing for another type, seed or
    option over the same data.

    Example:
        >>> sampler_identity(SeededRandomSampler(range(4), seed=3))
        {'type': 'SeededRandomSampler', 'seed': 3}
        >>> sampler_identity(DistributedSampler(range(4), num_replicas=1, rank=0, seed=5))
        {'type': 'DistributedSampler', 'seed': 5, 'shuffle': True}
    """
    seed = getattr(sampler, "seed", getattr(sampler, "initial_seed", None))
    generator = getattr(sampler, "generator", None)
    if not isinstance(seed, int) and isinstance(generator, torch.Generator):
        seed = generator.initial_seed()
    identity = {"type": type(sampler).__qualname__, "seed": seed if isinstance(seed, int) else None}
    for option in _ORDER_OPTIONS:
        value = getattr(sampler, option, None)
        if isinstance(value, bool):
            identity[option] = value
    return identity
