"""Load MovieLens ratings into `Interactions` (index space, ratings only)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from movierec.models.base import Interactions


def from_triples(users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, times: np.ndarray) -> Interactions:
    """Number users and movies densely (sorted ids) and build `Interactions`."""
    user_ids, user_idx = np.unique(users.astype(np.int64), return_inverse=True)
    movie_ids, movie_idx = np.unique(movies.astype(str), return_inverse=True)
    return Interactions(
        user_ids=user_ids,
        movie_ids=movie_ids,
        user_idx=user_idx.astype(np.int32),
        movie_idx=movie_idx.astype(np.int32),
        watch_minutes=np.zeros(len(users), dtype=np.float32),
        rating=ratings.astype(np.float32),
        last_time=times.astype(np.int64),
    )


def load_movielens(path: Path) -> Interactions:
    """Read ml-100k (`u.data`) or ml-latest-small style (`ratings.csv`) from `path`."""
    path = Path(path)
    if (path / "u.data").exists():
        raw = np.loadtxt(path / "u.data", dtype=np.int64)
        return from_triples(raw[:, 0], raw[:, 1], raw[:, 2].astype(np.float32), raw[:, 3])
    if (path / "ratings.csv").exists():
        with open(path / "ratings.csv", newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        cols = list(zip(*rows))
        return from_triples(
            np.array(cols[0], dtype=np.int64),
            np.array(cols[1], dtype=np.int64),
            np.array(cols[2], dtype=np.float32),
            np.array(cols[3], dtype=np.int64),
        )
    raise FileNotFoundError(f"{path} holds neither u.data (ml-100k) nor ratings.csv (ml-latest-small)")


def dataset_name(path: Path) -> str:
    return Path(path).resolve().name
