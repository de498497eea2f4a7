"""The model interface: what train, evaluate and precompute rely on.

A model works in index space: users and movies are numbered 0..n-1 by the
`Interactions` it was fitted on. The registry keeps the id maps beside the
weights, so a model itself never sees slugs or raw user ids.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

Progress = Callable[[float], None]
"""Called with the fraction done (0..1) during long fits."""


@dataclass(frozen=True)
class Interactions:
    """One row per (user, movie) pair that the user watched or rated.

    `watch_minutes` is 0 where the pair was only rated; `rating` is NaN where
    it was only watched. `last_time` (epoch seconds) orders a user's history.
    """

    user_ids: np.ndarray  # int64 [n_users]: external id of each user index
    movie_ids: np.ndarray  # str [n_movies]: slug of each movie index
    user_idx: np.ndarray  # int32 [nnz]
    movie_idx: np.ndarray  # int32 [nnz]
    watch_minutes: np.ndarray  # float32 [nnz]
    rating: np.ndarray  # float32 [nnz]
    last_time: np.ndarray  # int64 [nnz]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    @property
    def nnz(self) -> int:
        return len(self.user_idx)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The same index space with only the rows where `mask` is true."""
        return Interactions(
            user_ids=self.user_ids,
            movie_ids=self.movie_ids,
            user_idx=self.user_idx[mask],
            movie_idx=self.movie_idx[mask],
            watch_minutes=self.watch_minutes[mask],
            rating=self.rating[mask],
            last_time=self.last_time[mask],
        )


class Recommender(abc.ABC):
    """A model that scores every movie for a batch of users.

    Subclasses set `kind` (stored in the model card, used to load it back)
    and keep their state small enough to save into one directory.
    """

    kind: ClassVar[str]

    @abc.abstractmethod
    def fit(self, data: Interactions, *, seed: int = 0, progress: Progress | None = None) -> None:
        """Learn from `data`; deterministic for a given seed."""

    @abc.abstractmethod
    def score(self, user_idx: np.ndarray) -> np.ndarray:
        """float32 [len(user_idx), n_movies]; higher is better. Seen movies are not masked here."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted state into an existing local directory."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: Path) -> Recommender:
        """Read back what `save` wrote; scores must be identical."""

    def params(self) -> dict[str, Any]:
        """Hyperparameters, recorded in the model card."""
        return {}
