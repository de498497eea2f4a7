"""Exact top-k of user x movie scores with each user's seen movies excluded.

Precompute scores users in batches with torch (`top_k_unseen`); `top_k` is the
plain numpy version, kept as the reference the torch path is tested against.
torch is imported inside the functions that need it: `publish` uses SeenIndex
and must not pay for torch at import.
"""

from __future__ import annotations

import numpy as np

from movierec.models.base import Interactions


def movie_dtype(n_movies: int) -> type:
    """The smallest index type for movie codes: 27,000 movies fit in 2 bytes, halving the seen index."""
    return np.uint16 if n_movies <= np.iinfo(np.uint16).max else np.int32


class SeenIndex:
    """For each user index, the movie indices already watched or rated (CSR layout)."""

    def __init__(self, indptr: np.ndarray, movies: np.ndarray):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.movies = movies

    @classmethod
    def from_interactions(cls, data: Interactions) -> SeenIndex:
        order = np.lexsort((data.movie_idx, data.user_idx))
        counts = np.bincount(data.user_idx, minlength=data.n_users)
        movies = data.movie_idx[order].astype(movie_dtype(data.n_movies))
        return cls(np.concatenate([[0], np.cumsum(counts)]), movies)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def of(self, user: int) -> np.ndarray:
        return self.movies[self.indptr[user] : self.indptr[user + 1]].astype(np.int64)

    def counts(self, users: np.ndarray) -> np.ndarray:
        return self.indptr[users + 1] - self.indptr[users]

    def pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in `users`, movie index) of every seen pair of those users, vectorised."""
        starts = self.indptr[users]
        lengths = self.indptr[users + 1] - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.movies[np.repeat(starts, lengths) + offsets].astype(np.int64)

    def mask(self, scores: np.ndarray, users: np.ndarray) -> None:
        """Set seen entries of `scores` (one row per user in `users`) to -inf, in place."""
        rows, movies = self.pairs(users)
        scores[rows, movies] = -np.inf


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """int64 [rows, k]: best columns first, exact; -1 where fewer than k finite scores exist."""
    k_eff = min(k, scores.shape[1])
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Sort by score descending, then column ascending, so equal scores have a stable order.
    order = np.lexsort((part, -part_scores), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    best = np.where(np.isfinite(np.take_along_axis(scores, best, axis=1)), best, -1)
    if k_eff < k:
        best = np.pad(best, ((0, 0), (0, k - k_eff)), constant_values=-1)
    return best


def top_k_unseen(scores, seen: SeenIndex, users: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k per row of a float32 score batch (numpy or torch), seen movies excluded.

    Returns int64 [rows, k] movie indices, best first, -1 where fewer than k
    unseen movies exist. The batch is masked in place: callers pass a buffer
    they no longer need, so a 27,000-column batch is never copied.
    """
    import torch

    scores = torch.as_tensor(scores)
    rows, movies = seen.pairs(users)
    scores[torch.from_numpy(rows), torch.from_numpy(movies)] = float("-inf")
    k_eff = min(k, scores.shape[1])
    values, best = torch.topk(scores, k_eff, dim=1, largest=True, sorted=True)
    best = best.numpy()
    best[~np.isfinite(values.numpy())] = -1
    if k_eff < k:
        best = np.pad(best, ((0, 0), (0, k - k_eff)), constant_values=-1)
    return best
