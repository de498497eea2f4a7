"""Per-user temporal hold-out: each user's most recent interactions form the test part."""

from __future__ import annotations

import math

import numpy as np

from movierec.models.base import Interactions


def temporal_split(
    data: Interactions, *, fraction: float = 0.2, min_interactions: int = 5
) -> tuple[Interactions, Interactions]:
    """Hold out the last ceil(fraction * n) interactions of each user with n >= min_interactions.

    Ties in time are broken by row order, so the split is deterministic. Users with
    fewer interactions stay entirely in the train part.
    """
    order = np.lexsort((np.arange(data.nnz), data.last_time, data.user_idx))
    users = data.user_idx[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(data.nnz) - starts[users]  # position in the user's time order
    n_user = counts[users]
    n_test = np.array([math.ceil(fraction * n) for n in range(counts.max(initial=0) + 1)])[n_user]
    held = (n_user >= min_interactions) & (rank >= n_user - n_test)
    test_mask = np.zeros(data.nnz, dtype=bool)
    test_mask[order[held]] = True
    return data.subset(~test_mask), data.subset(test_mask)


def random_folds(n: int, *, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """k disjoint index arrays covering range(n), shuffled by `seed`."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, k)]


def sample_users(data: Interactions, n: int, *, seed: int = 0) -> Interactions:
    """At most `n` users drawn at random (all of them when there are fewer), renumbered 0..n-1;
    the movie index space is kept, so scores stay comparable to the full data's."""
    if data.n_users <= n:
        return data
    chosen = np.sort(np.random.default_rng(seed).choice(data.n_users, n, replace=False))
    new_index = np.full(data.n_users, -1, np.int64)
    new_index[chosen] = np.arange(n)
    rows = new_index[data.user_idx] >= 0
    kept = data.subset(rows)
    return Interactions(
        user_ids=data.user_ids[chosen], movie_ids=data.movie_ids,
        user_idx=new_index[kept.user_idx].astype(np.int32), movie_idx=kept.movie_idx,
        watch_minutes=kept.watch_minutes, rating=kept.rating, last_time=kept.last_time,
    )
