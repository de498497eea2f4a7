from __future__ import annotations

import numpy as np

from movierec.evaluation.data import from_triples, load_movielens
from movierec.evaluation.split import random_folds, temporal_split


def _data(counts: dict[int, int]):
    users, movies, times = [], [], []
    for user, n in counts.items():
        for i in range(n):
            users.append(user)
            movies.append(100 + i)
            times.append(1000 - 10 * i)  # stored newest first, to check sorting by time
    n = len(users)
    return from_triples(np.array(users), np.array(movies), np.full(n, 4.0), np.array(times))


def test_temporal_split_holds_out_latest_fifth() -> None:
    data = _data({1: 10, 2: 5, 3: 4})
    train, test = temporal_split(data)
    held = {(int(data.user_ids[u]), int(t)) for u, t in zip(test.user_idx, test.last_time)}
    assert held == {(1, 1000), (1, 990), (2, 1000)}  # ceil(0.2*10)=2, ceil(0.2*5)=1, user 3 has < 5
    assert train.nnz + test.nnz == data.nnz
    # every held-out row is newer than every train row of the same user
    for user in np.unique(test.user_idx):
        assert test.last_time[test.user_idx == user].min() > train.last_time[train.user_idx == user].max()


def test_validation_is_carved_from_train_the_same_way() -> None:
    data = _data({1: 10})
    train, _test = temporal_split(data)
    fit, validation = temporal_split(train)
    assert (train.nnz, fit.nnz, validation.nnz) == (8, 6, 2)
    assert validation.last_time.min() > fit.last_time.max()


def test_folds_partition_rows() -> None:
    folds = random_folds(103, k=5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(103))
    assert [len(f) for f in folds] == [21, 21, 21, 20, 20]


def test_load_ml100k(ml100k_dir) -> None:
    data = load_movielens(ml100k_dir)
    assert (data.n_users, data.n_movies, data.nnz) == (943, 1682, 100_000)
    assert np.isfinite(data.rating).all() and (data.watch_minutes == 0).all()
