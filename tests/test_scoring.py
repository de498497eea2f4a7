"""Exact top-k with seen movies excluded, and the stable partition hash."""

from __future__ import annotations

import numpy as np

from movierec.models.base import Interactions
from movierec.partitioning import ab_bucket, partition_of, partitions_of, splitmix64
from movierec.scoring import SeenIndex, top_k


def test_top_k_matches_a_full_sort():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 300)).astype(np.float32)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    assert np.array_equal(top_k(scores, 20), expected)


def test_top_k_pads_when_too_few_movies_are_left():
    scores = np.array([[1.0, -np.inf, 3.0]], dtype=np.float32)
    assert top_k(scores, 5).tolist() == [[2, 0, -1, -1, -1]]


def test_seen_movies_are_masked():
    data = Interactions(
        user_ids=np.array([10, 20]), movie_ids=np.array(["a", "b", "c"]),
        user_idx=np.array([0, 0, 1], np.int32), movie_idx=np.array([2, 0, 1], np.int32),
        watch_minutes=np.ones(3, np.float32), rating=np.full(3, np.nan, np.float32), last_time=np.zeros(3, np.int64),
    )
    seen = SeenIndex(data)
    assert seen.of(0).tolist() == [0, 2]
    scores = np.ones((2, 3), np.float32)
    seen.mask(scores, np.array([1, 0]))
    assert np.isinf(scores).tolist() == [[False, True, False], [True, False, True]]


def _splitmix64_reference(x: int) -> int:
    """splitmix64 in plain Python integers, as published by Vigna."""
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def test_partition_hash_is_stable_across_processes_and_releases():
    # Pinned values: changing the hash would send users to other shards than the writers used.
    assert [partition_of(u, 8) for u in (0, 1, 2, 3, 1000, 2**62)] == [7, 1, 6, 5, 0, 3]
    assert partitions_of(np.array([0, 1, 2, 3, 1000, 2**62]), 8).tolist() == [7, 1, 6, 5, 0, 3]
    assert int(splitmix64(12345)) == _splitmix64_reference(12345) == 2454886589211414944
    counts = np.bincount(partitions_of(np.arange(80_000), 8))
    assert counts.min() > 9_500 and counts.max() < 10_500


def test_ab_bucket_is_uniform_and_independent_of_partitions():
    buckets = np.array([ab_bucket(u) for u in range(20_000)])
    assert 0 <= buckets.min() and buckets.max() < 1
    assert abs((buckets < 0.5).mean() - 0.5) < 0.02
    in_partition_0 = partitions_of(np.arange(20_000), 2) == 0
    assert abs((buckets[in_partition_0] < 0.5).mean() - 0.5) < 0.03
