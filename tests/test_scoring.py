"""Exact top-k with seen movies excluded, and the stable partition hash."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.models.base import Interactions
from movierec.partitioning import ab_bucket, ab_buckets, partition_of, partitions_of, splitmix64
from movierec.scoring import SeenIndex, top_k, top_k_unseen


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
    seen = SeenIndex.from_interactions(data)
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
    assert np.array_equal(ab_buckets(np.arange(20_000)), buckets)  # recommend and online-eval agree
    assert 0 <= buckets.min() and buckets.max() < 1
    assert abs((buckets < 0.5).mean() - 0.5) < 0.02
    in_partition_0 = partitions_of(np.arange(20_000), 2) == 0
    assert abs((buckets[in_partition_0] < 0.5).mean() - 0.5) < 0.03


def _random_seen(rng, n_users, n_movies, per_user):
    user_idx = np.repeat(np.arange(n_users), per_user).astype(np.int32)
    movie_idx = np.concatenate([rng.choice(n_movies, per_user, replace=False) for _ in range(n_users)]).astype(np.int32)
    nnz = len(user_idx)
    return Interactions(
        user_ids=np.arange(n_users) * 7, movie_ids=np.array([f"m{i}" for i in range(n_movies)]),
        user_idx=user_idx, movie_idx=movie_idx, watch_minutes=np.ones(nnz, np.float32),
        rating=np.full(nnz, np.nan, np.float32), last_time=np.zeros(nnz, np.int64),
    )


def test_torch_top_k_unseen_matches_the_numpy_reference():
    rng = np.random.default_rng(1)
    seen = SeenIndex.from_interactions(_random_seen(rng, 64, 500, 40))
    users = rng.permutation(64)[:50]
    scores = rng.normal(size=(50, 500)).astype(np.float32)
    reference = scores.copy()
    seen.mask(reference, users)
    got = top_k_unseen(scores.copy(), seen, users, 20)
    assert np.array_equal(got, top_k(reference, 20))
    for row, user in enumerate(users):
        assert not set(got[row]) & set(seen.of(user).tolist())


def test_torch_top_k_unseen_pads_when_too_few_movies_are_unseen():
    rng = np.random.default_rng(2)
    seen = SeenIndex.from_interactions(_random_seen(rng, 3, 25, 10))
    got = top_k_unseen(rng.normal(size=(3, 25)).astype(np.float32), seen, np.arange(3), 20)
    assert ((got >= 0).sum(axis=1) == 15).all() and (got[:, 15:] == -1).all()


def _rewrite_snapshot(store, snapshot_id: str, *, row_group_size: int, reverse: bool = False) -> None:
    """The snapshot's interactions again in small row groups; `reverse`: the groups in reverse order,
    each still sorted inside."""
    import io

    import pyarrow.parquet as pq

    from movierec.snapshots import interactions_key

    table = store.get_parquet(interactions_key(snapshot_id))
    if reverse:
        blocks = np.arange(table.num_rows) // row_group_size
        table = table.take(np.argsort(-blocks, kind="stable"))
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    store.put(interactions_key(snapshot_id), sink.getvalue())


@pytest.mark.parametrize("row_group_size", [None, 37])
def test_seen_index_from_the_snapshot_matches_the_one_from_interactions(local_store, row_group_size):
    from movierec.precompute import load_seen_index
    from movierec.snapshots import load_snapshot
    from tests.conftest import build_published, small_world_lines

    built = build_published(local_store.uri, small_world_lines(), partitions=2)
    snapshot_id = built["snapshot"]["id"]
    data = load_snapshot(local_store, snapshot_id).interactions()
    if row_group_size:  # many batches: users span batch boundaries
        _rewrite_snapshot(local_store, snapshot_id, row_group_size=row_group_size)
    fast = load_seen_index(local_store, snapshot_id, data.user_ids, data.movie_ids)
    slow = SeenIndex.from_interactions(data)
    assert np.array_equal(fast.indptr, slow.indptr)
    for user in range(data.n_users):
        assert sorted(fast.of(user).tolist()) == slow.of(user).tolist()


def test_a_snapshot_out_of_user_order_is_refused(local_store):
    from movierec.errors import InvalidRun
    from movierec.precompute import load_seen_index
    from movierec.snapshots import load_snapshot
    from tests.conftest import build_published, small_world_lines

    built = build_published(local_store.uri, small_world_lines(), partitions=2)
    snapshot_id = built["snapshot"]["id"]
    data = load_snapshot(local_store, snapshot_id).interactions()
    _rewrite_snapshot(local_store, snapshot_id, row_group_size=37, reverse=True)
    with pytest.raises(InvalidRun, match="not sorted by user_id"):
        load_seen_index(local_store, snapshot_id, data.user_ids, data.movie_ids)


def test_shards_read_back_in_the_shard_schema_with_their_padding_dropped():
    import pyarrow as pa
    import pyarrow.parquet as pq

    from movierec.precompute import encode_shard
    from movierec.recs import SHARD_SCHEMA

    best = np.array([[2, 0, -1], [1, -1, -1]])
    table = pq.read_table(pa.BufferReader(encode_shard(np.array([5, 9]), best, np.array(["a", "b", "c"]))))
    assert table.schema.equals(SHARD_SCHEMA)
    assert table.to_pylist() == [{"user_id": 5, "movies": ["c", "a"]}, {"user_id": 9, "movies": ["b"]}]
