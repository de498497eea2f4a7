"""Popularity: the simplest honest model, and the recent-popularity fallback for new users."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from movierec.models.base import Interactions, Progress, Recommender

DAY = 86_400


def recent_popularity(data: Interactions, *, half_life_days: float = 14.0, now: float | None = None) -> np.ndarray:
    """float64 [n_movies]: distinct users per movie, each weighted by how recent the interaction is.

    `now` (epoch seconds) is the snapshot's own time. Ages count from the newest interaction not
    after it: the same ranking as counting from `now` (one common factor), without weights
    underflowing to 0 for old data; an interaction dated after `now` counts as the newest, so one
    future-dated line cannot make every other one look ancient (the fallback turned alphabetical).
    Without `now` (an offline split, whose "now" is its own last interaction), from the newest.
    """
    if data.nnz == 0:
        return np.zeros(data.n_movies)
    newest = data.last_time.max() if now is None else min(data.last_time.max(), now)
    age_days = np.maximum(newest - data.last_time, 0) / DAY
    weights = np.exp2(-age_days / half_life_days)
    return np.bincount(data.movie_idx, weights=weights, minlength=data.n_movies)


def popular_order(scores: np.ndarray) -> np.ndarray:
    """Movie indices best first; ties broken by index so the order is deterministic."""
    return np.lexsort((np.arange(len(scores)), -scores))


class PopularityModel(Recommender):
    """Scores each movie by how many users watched or rated it; the same list for everyone."""

    kind = "popularity"

    def __init__(self, *, half_life_days: float | None = None):
        self.half_life_days = half_life_days
        self.scores: np.ndarray | None = None

    def fit(self, data: Interactions, *, seed: int = 0, progress: Progress | None = None) -> None:
        if self.half_life_days is None:
            counts = np.bincount(data.movie_idx, minlength=data.n_movies)
        else:
            counts = recent_popularity(data, half_life_days=self.half_life_days)
        self.scores = counts.astype(np.float32)
        if progress:
            progress(1.0)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.scores is not None, "fit or load the model first"
        return np.broadcast_to(self.scores, (len(user_idx), len(self.scores))).copy()

    def save(self, directory: Path) -> None:
        np.save(directory / "scores.npy", self.scores)

    @classmethod
    def load(cls, directory: Path) -> PopularityModel:
        model = cls()
        model.scores = np.load(directory / "scores.npy")
        return model

    def params(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days}
