"""SeededRandomSampler: an exact permutation per (seed, epoch), sharding, iter_from, quality."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler

from interleaved_sampler import InterleavedSampler, InterleavedSamplerConfig, SeededRandomSampler
from interleaved_sampler.samplers import FeistelPermutation, epoch_seed

CHUNK = 16384  # the sampler's chunk: sizes around it cross a chunk boundary

SIZES = sorted(
    {1, 2, 3, 5, 7, 13, 31, 97, 101, 1009, 2999, 4001, 7919}
    | {2**k + d for k in (1, 2, 3, 4, 5, 7, 10, 12) for d in (-1, 0, 1)}
    | {CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 5}
)


def order(length: int, seed: int, epoch: int) -> list[int]:
    """The unsharded order of an epoch."""
    sampler = SeededRandomSampler(range(length), seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def shard(length: int, seed: int, epoch: int, replicas: int, rank: int, drop: bool) -> list[int]:
    sampler = SeededRandomSampler(range(length), seed, replicas, rank, drop)
    sampler.set_epoch(epoch)
    return list(sampler)


def padded_shard(full: list[int], replicas: int, rank: int, drop_last: bool) -> list[int]:
    """DistributedSampler's rule written out: pad by repeating the start (or cut), then slice."""
    rounded = len(full) // replicas if drop_last else -(-len(full) // replicas)
    total = rounded * replicas
    padded = [full[i % len(full)] for i in range(total)]
    return padded[rank::replicas]


class TestPermutation:
    @pytest.mark.parametrize("length", SIZES)
    def test_exact_permutation(self, length: int) -> None:
        for seed, epoch in [(0, 0), (1, 0), (0, 1), (12345, 7), (2**31 - 1, 10**6)]:
            assert sorted(order(length, seed, epoch)) == list(range(length))

    def test_order_is_a_function_of_seed_and_epoch(self) -> None:
        a, b = SeededRandomSampler(range(50), seed=4), SeededRandomSampler(range(50), seed=4)
        orders = []
        for epoch in range(3):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            assert list(a) == list(b) and sorted(a) == list(range(50))
            orders.append(list(a))
        assert len({tuple(o) for o in orders}) == 3
        assert list(SeededRandomSampler(range(50), seed=5)) != orders[0]

    def test_unsharded_order_is_the_permutation(self) -> None:
        sampler = SeededRandomSampler(range(11), seed=3)
        sampler.set_epoch(2)
        images = FeistelPermutation.for_epoch(11, seed=3, epoch=2)(torch.arange(11))
        assert list(sampler) == images.tolist()
        assert len(sampler) == 11
        assert all(type(i) is int for i in sampler)

    def test_empty_dataset(self) -> None:
        sampler = SeededRandomSampler(range(0), seed=1)
        assert len(sampler) == 0 and list(sampler) == [] and list(sampler.iter_from(0)) == []

    @pytest.mark.parametrize("length", [1, 3, 1000, 2**20 + 7])
    def test_each_position_is_evaluated_on_its_own(self, length: int) -> None:
        """Positions in any order and grouping (and cycle-walked or not) give the same images."""
        permutation = FeistelPermutation.for_epoch(length, seed=9, epoch=4)
        positions = torch.randperm(length, generator=torch.Generator().manual_seed(0))[:5000]
        together = permutation(positions.clone())
        alone = torch.cat([permutation(positions[i : i + 1].clone()) for i in range(50)])
        assert torch.equal(together[:50], alone)
        assert torch.equal(permutation(positions.flip(0).clone()), together.flip(0))

    @pytest.mark.parametrize("size", [0, -1, 2**62 + 1])
    def test_permutation_size_is_checked(self, size: int) -> None:
        with pytest.raises(ValueError, match=rf"size must be in \[1, 2\*\*62\], got {size}"):
            FeistelPermutation.for_epoch(size, seed=0, epoch=0)

    def test_seed_range_is_checked(self) -> None:
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*31\), got -1"):
            SeededRandomSampler(range(3), seed=-1)

    def test_same_order_in_another_process(self) -> None:
        cases = [(1, 0, 0, 1, 0), (7, 3, 1, 1, 0), (CHUNK + 3, 5, 2, 1, 0), (1000, 2, 9, 3, 2)]
        code = (
            "import sys; from interleaved_sampler import SeededRandomSampler as S\n"
            f"for n, seed, epoch, replicas, rank in {cases!r}:\n"
            "    s = S(range(n), seed, replicas, rank); s.set_epoch(epoch); print(list(s))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        there = result.stdout.splitlines()
        assert there == [str(shard(*case, drop=False)) for case in cases]

    def test_epoch_seeds_do_not_collide_for_nearby_seeds_and_epochs(self) -> None:
        seeds = {epoch_seed(seed, epoch) for seed in range(64) for epoch in range(1024)}
        assert len(seeds) == 64 * 1024
        assert all(0 <= s < 2**64 for s in seeds)


class TestSharding:
    @pytest.mark.parametrize("replicas", range(2, 9))
    @pytest.mark.parametrize("length", [1, 5, 8, 23, 64, 1001])
    @pytest.mark.parametrize("drop_last", [False, True])
    def test_shards_like_distributed_sampler(
        self, replicas: int, length: int, drop_last: bool
    ) -> None:
        full = order(length, 5, 3)
        # DistributedSampler without shuffling shards positions 0..length-1: apply it to
        # the unsharded order
        shards = []
        for rank in range(replicas):
            positions = DistributedSampler(
                range(length), replicas, rank, shuffle=False, drop_last=drop_last
            )
            shards.append(shard(length, 5, 3, replicas, rank, drop_last))
            assert shards[-1] == [full[i] for i in positions]
            assert shards[-1] == padded_shard(full, replicas, rank, drop_last)
            assert len(shards[-1]) == len(positions)
        merged = [i for s in shards for i in s]
        if length % replicas == 0:
            assert sorted(merged) == list(range(length))  # disjoint and covering
        elif not drop_last:
            assert set(merged) == set(range(length))  # covering, with padding repeats
        else:
            assert len(set(merged)) == len(merged)  # disjoint, the tail dropped

    @pytest.mark.parametrize(("replicas", "rank"), [(0, 0), (2, 2), (2, -1)])
    def test_invalid_sharding(self, replicas: int, rank: int) -> None:
        with pytest.raises(ValueError, match=r"num_replicas|rank"):
            SeededRandomSampler(range(5), num_replicas=replicas, rank=rank)

    @pytest.mark.parametrize("length", [48, 53])
    def test_batch_k_of_all_shards_is_batch_k_of_one_process(self, length: int) -> None:
        """What makes a DDP run equal to one process with a world_size times larger batch."""

        def train_batches(replicas: int, rank: int, batch_size: int) -> list[list[int]]:
            sampler = SeededRandomSampler(range(length), 1, replicas, rank, drop_last=True)
            config = InterleavedSamplerConfig(batch_size=batch_size, max_epochs=2)
            return [list(b) for b in InterleavedSampler(sampler, config).batch_sampler]

        single = train_batches(1, 0, 12)
        shards = [train_batches(3, rank, 4) for rank in range(3)]
        assert len(single) == 8
        for k, batch in enumerate(single):
            assert [shard[k][j] for j in range(4) for shard in shards] == batch


class TestIterFrom:
    @pytest.mark.parametrize("length", [1, 2, 7, 33])
    @pytest.mark.parametrize(("replicas", "rank"), [(1, 0), (3, 1), (4, 3)])
    @pytest.mark.parametrize("drop_last", [False, True])
    def test_every_position_of_small_datasets(
        self, length: int, replicas: int, rank: int, drop_last: bool
    ) -> None:
        sampler = SeededRandomSampler(range(length), 2, replicas, rank, drop_last)
        sampler.set_epoch(5)
        whole = list(sampler)
        for position in range(len(sampler) + 1):
            assert list(sampler.iter_from(position)) == whole[position:]

    @pytest.mark.parametrize(("length", "replicas", "rank"), [(3 * CHUNK + 17, 1, 0),
                                                              (3 * CHUNK + 5, 3, 2)])  # fmt: skip
    def test_random_positions_of_larger_datasets(
        self, length: int, replicas: int, rank: int
    ) -> None:
        sampler = SeededRandomSampler(range(length), 11, replicas, rank)
        sampler.set_epoch(1)
        whole = list(sampler)
        generator = torch.Generator().manual_seed(0)
        positions = torch.randint(0, len(sampler) + 1, (8,), generator=generator).tolist()
        for position in [*positions, CHUNK - 1, CHUNK, len(sampler) - 1, len(sampler)]:
            assert list(sampler.iter_from(position)) == whole[position:]
            assert list(sampler.iter_from(position, 3)) == whole[position::3]

    def test_iter_is_iter_from_zero(self) -> None:
        sampler = SeededRandomSampler(range(40), seed=8, num_replicas=3, rank=1)
        assert list(sampler) == list(sampler.iter_from(0))

    def test_the_epoch_is_taken_when_called(self) -> None:
        sampler = SeededRandomSampler(range(40), seed=8)
        tail = sampler.iter_from(10)
        sampler.set_epoch(1)
        sampler.set_epoch(0)
        first = list(sampler)
        sampler.set_epoch(1)
        assert list(tail) == first[10:]

    def test_invalid_step(self) -> None:
        with pytest.raises(ValueError, match="step must be >= 1, got 0"):
            SeededRandomSampler(range(29)).iter_from(0, step=0)

    @pytest.mark.parametrize("position", [-1, 16, 100])
    def test_invalid_position(self, position: int) -> None:
        sampler = SeededRandomSampler(range(29), num_replicas=2, rank=1)
        with pytest.raises(
            ValueError, match=rf"position must be in \[0, len\(self\)=15\], got {position}"
        ):
            sampler.iter_from(position)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(0, 2**31 - 1),
    st.integers(0, 10**9),
    st.integers(1, 8),
    st.data(),
    st.booleans(),
)
def test_shards_and_tails_follow_the_unsharded_order(
    length: int, seed: int, epoch: int, replicas: int, data: st.DataObject, drop_last: bool
) -> None:
    rank = data.draw(st.integers(0, replicas - 1), label="rank")
    full = order(length, seed, epoch)
    assert sorted(full) == list(range(length))
    sampler = SeededRandomSampler(range(length), seed, replicas, rank, drop_last)
    sampler.set_epoch(epoch)
    expected = padded_shard(full, replicas, rank, drop_last)
    assert list(sampler) == expected and len(sampler) == len(expected)
    position = data.draw(st.integers(0, len(sampler)), label="position")
    assert list(sampler.iter_from(position)) == expected[position:]
    step = data.draw(st.integers(1, 9), label="step")
    assert list(sampler.iter_from(position, step)) == expected[position::step]


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Rank correlation of two permutations of 0..n-1 (their values are their ranks)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    return float(x @ y / (x.norm() * y.norm()))


def images(length: int, seed: int, epoch: int) -> torch.Tensor:
    return FeistelPermutation.for_epoch(length, seed, epoch)(torch.arange(length))


@pytest.mark.slow  # a few hundred thousand permutations: seconds each
class TestStatisticalQuality:
    """Deterministic (fixed seeds) checks with loose bounds; docs/scale.md lists the values."""

    @pytest.mark.parametrize("length", [2, 3, 5, 10, 37])
    def test_each_index_lands_anywhere_alike(self, length: int) -> None:
        seeds = 2000
        counts = torch.zeros(length, length)
        for seed in range(seeds):
            counts[torch.arange(length), images(length, seed, 0)] += 1
        expected = seeds / length
        chi_square = float(((counts - expected) ** 2 / expected).sum())
        freedom = (length - 1) ** 2
        assert chi_square < freedom + 5 * math.sqrt(2 * freedom) + 5

    def test_no_rank_correlation(self) -> None:
        length = 100_000
        bound = 4 / math.sqrt(length)  # the correlation of independent orders is about N(0, 1/n)
        for seed in range(3):
            this = images(length, seed, 0)
            assert abs(spearman(this, images(length, seed, 1))) < bound  # next epoch
            assert abs(spearman(this, images(length, seed + 1, 0))) < bound  # next seed
            assert abs(spearman(this, torch.arange(length))) < bound  # the positions
            assert abs(spearman(this[:-1], this[1:])) < bound  # consecutive indices

    def test_fixed_points_and_ascending_neighbours_about_one(self) -> None:
        length, seeds = 1000, 400
        fixed, ascending = 0, 0
        for seed in range(seeds):
            this = images(length, seed, 3)
            fixed += int((this == torch.arange(length)).sum())
            ascending += int((this[1:] - this[:-1] == 1).sum())
        # both counts are about Poisson(1) per permutation: mean 1, standard error 0.05 here
        assert abs(fixed / seeds - 1) < 0.25
        assert abs(ascending / seeds - 1) < 0.25
