"""Top-K ranking metrics and rating errors. Recommendations exclude each user's train items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from movierec.models.base import Interactions


def interaction_matrix(data: Interactions) -> sp.csr_matrix:
    """Binary user x movie CSR matrix of `data`."""
    ones = np.ones(data.nnz, dtype=np.float32)
    matrix = sp.csr_matrix((ones, (data.user_idx, data.movie_idx)), shape=(data.n_users, data.n_movies))
    matrix.data[:] = 1.0
    return matrix


def top_k(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """Indices of the k best-scored movies per row, best first, with `seen` rows masked out."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    return np.take_along_axis(part, np.argsort(-part_scores, axis=1, kind="stable"), axis=1)


def ndcg_at_k(ranked: np.ndarray, relevant: set[int], k: int) -> float:
    """Binary-relevance NDCG: DCG of the list over DCG of an ideal list of min(|relevant|, k) hits."""
    if not relevant:
        return 0.0
    gains = np.array([1.0 if int(m) in relevant else 0.0 for m in ranked[:k]])
    discounts = 1.0 / np.log2(np.arange(2, len(gains) + 2))
    ideal = discounts[: min(len(relevant), k)].sum() if len(gains) else 1.0
    return float((gains * discounts).sum() / ideal)


def recall_at_k(ranked: np.ndarray, relevant: set[int], k: int) -> float:
    """Hits in the top k over min(|relevant|, k), so a perfect list scores 1."""
    if not relevant:
        return 0.0
    hits = sum(1 for m in ranked[:k] if int(m) in relevant)
    return hits / min(len(relevant), k)


def hit_rate_at_k(ranked: np.ndarray, relevant: set[int], k: int) -> float:
    """1 when at least one relevant movie is in the top k."""
    return float(any(int(m) in relevant for m in ranked[:k]))


def coverage(lists: np.ndarray, n_movies: int) -> float:
    """Share of the catalog that appears in at least one list."""
    return len(np.unique(lists)) / n_movies if n_movies else 0.0


@dataclass(frozen=True)
class RankingResult:
    ndcg: float
    recall: float
    hit_rate: float
    coverage: float
    users: int


def evaluate_lists(lists: np.ndarray, truth: list[set[int]], n_movies: int, k: int = 20) -> RankingResult:
    """Average the per-user metrics of `lists` (one row per user) against `truth`."""
    return RankingResult(
        ndcg=float(np.mean([ndcg_at_k(r, t, k) for r, t in zip(lists, truth)])),
        recall=float(np.mean([recall_at_k(r, t, k) for r, t in zip(lists, truth)])),
        hit_rate=float(np.mean([hit_rate_at_k(r, t, k) for r, t in zip(lists, truth)])),
        coverage=coverage(lists[:, :k], n_movies),
        users=len(truth),
    )


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(actual))))
