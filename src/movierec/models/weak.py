"""A deliberately weak model: a fixed random order of the catalog for each user.

It is the control that an A/B test must beat (`movierec simulate`), and a floor for
offline metrics. Scores are a stable hash of (seed, user, movie), so a partition
scored twice gives the same shard and nothing needs to be stored but the seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from movierec.models.base import Interactions, Progress, Recommender
from movierec.partitioning import splitmix64


class RandomModel(Recommender):
    kind = "random"

    def __init__(self, *, n_movies: int = 0, seed: int = 0):
        self.n_movies, self.seed = n_movies, seed

    def fit(self, data: Interactions, *, seed: int = 0, progress: Progress | None = None) -> None:
        self.n_movies, self.seed = data.n_movies, seed
        if progress:
            progress(1.0)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = np.asarray(user_idx, dtype=np.uint64)[:, None] * np.uint64(self.n_movies)
        keys = users + np.arange(self.n_movies, dtype=np.uint64)[None, :]
        with np.errstate(over="ignore"):
            hashed = splitmix64(keys ^ splitmix64(np.uint64(self.seed)))
        return (hashed >> np.uint64(40)).astype(np.float32)  # 24 bits: exact in float32

    def save(self, directory: Path) -> None:
        (directory / "random.json").write_text(json.dumps({"n_movies": self.n_movies, "seed": self.seed}))

    @classmethod
    def load(cls, directory: Path) -> RandomModel:
        return cls(**json.loads((directory / "random.json").read_text()))

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}
