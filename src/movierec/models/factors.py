"""Dot-product factors: score = user vector · movie vector (+ movie bias), scored with torch.

This is the shape of the network's output layer (64-dimensional user and movie
embeddings). Precompute's scale benchmark builds a synthetic one at course
scale; any model that ends in embeddings can be exported to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from movierec.models.base import Interactions, Progress, Recommender


class FactorModel(Recommender):
    kind = "factors"

    def __init__(self, user_factors: np.ndarray | None = None, movie_factors: np.ndarray | None = None,
                 movie_bias: np.ndarray | None = None):
        self.user_factors = user_factors
        self.movie_factors = movie_factors
        self.movie_bias = movie_bias
        self._movies_t = None  # [dim, n_movies] torch view, built once per process

    def fit(self, data: Interactions, *, seed: int = 0, progress: Progress | None = None) -> None:
        raise NotImplementedError("FactorModel holds factors trained elsewhere; build it with its arrays")

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        import torch

        if self._movies_t is None:
            self._movies_t = torch.from_numpy(np.ascontiguousarray(self.movie_factors, np.float32)).T
        users = torch.from_numpy(np.ascontiguousarray(self.user_factors[user_idx], np.float32))
        scores = users @ self._movies_t
        if self.movie_bias is not None:
            scores += torch.from_numpy(self.movie_bias)
        return scores.numpy()

    def save(self, directory: Path) -> None:
        np.save(directory / "user_factors.npy", self.user_factors)
        np.save(directory / "movie_factors.npy", self.movie_factors)
        if self.movie_bias is not None:
            np.save(directory / "movie_bias.npy", self.movie_bias)

    @classmethod
    def load(cls, directory: Path) -> FactorModel:
        bias = directory / "movie_bias.npy"
        return cls(np.load(directory / "user_factors.npy"), np.load(directory / "movie_factors.npy"),
                   np.load(bias) if bias.exists() else None)

    def params(self) -> dict[str, Any]:
        return {"dim": int(self.movie_factors.shape[1]) if self.movie_factors is not None else None}
