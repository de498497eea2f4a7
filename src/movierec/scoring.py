"""Top-k of a score matrix with each user's seen movies excluded."""

from __future__ import annotations

import numpy as np

from movierec.models.base import Interactions


class SeenIndex:
    """For each user index, the movie indices already watched or rated (CSR layout)."""

    def __init__(self, data: Interactions):
        order = np.lexsort((data.movie_idx, data.user_idx))
        self.movies = data.movie_idx[order].astype(np.int64)
        counts = np.bincount(data.user_idx, minlength=data.n_users)
        self.indptr = np.concatenate([[0], np.cumsum(counts)])

    def of(self, user: int) -> np.ndarray:
        return self.movies[self.indptr[user] : self.indptr[user + 1]]

    def mask(self, scores: np.ndarray, users: np.ndarray) -> None:
        """Set seen entries of `scores` (one row per user in `users`) to -inf, in place."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        scores[rows, self.movies[np.repeat(starts, lengths) + offsets]] = -np.inf


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
