"""Explicit-rating accuracy: RMSE and MAE over a k-fold random split of the ratings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from movierec.evaluation.metrics import mae, rmse
from movierec.evaluation.split import random_folds
from movierec.models.base import Interactions


class RatingModel(Protocol):
    def fit(self, data: Interactions, *, seed: int = 0) -> None: ...
    def predict_rating(self, user_idx: np.ndarray, movie_idx: np.ndarray) -> np.ndarray: ...


def surprise_trainset(data: Interactions) -> Any:
    """A Surprise trainset of the rated rows; raw ids are the index numbers as strings."""
    from collections import defaultdict

    from surprise import Trainset

    rated = ~np.isnan(data.rating)
    users, movies, ratings = data.user_idx[rated], data.movie_idx[rated], data.rating[rated]
    inner_users = {raw: inner for inner, raw in enumerate(dict.fromkeys(users.tolist()))}
    inner_movies = {raw: inner for inner, raw in enumerate(dict.fromkeys(movies.tolist()))}
    by_user: dict[int, list[tuple[int, float]]] = defaultdict(list)
    by_movie: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for u, m, r in zip(users.tolist(), movies.tolist(), ratings.tolist()):
        by_user[inner_users[u]].append((inner_movies[m], r))
        by_movie[inner_movies[m]].append((inner_users[u], r))
    return Trainset(
        by_user, by_movie, len(inner_users), len(inner_movies), len(ratings),
        (float(ratings.min()), float(ratings.max())),
        {str(k): v for k, v in inner_users.items()}, {str(k): v for k, v in inner_movies.items()},
    )


class SurpriseRater:
    """A Surprise algorithm (SVD, SVDpp, BaselineOnly) behind `RatingModel`."""

    def __init__(self, algorithm: str, **params: Any) -> None:
        self.algorithm, self.params = algorithm, params

    def fit(self, data: Interactions, *, seed: int = 0) -> None:
        import surprise

        cls = getattr(surprise, self.algorithm)
        extra = {"verbose": False} if self.algorithm == "BaselineOnly" else {"random_state": seed}
        self.algo = cls(**extra, **self.params)
        self.algo.fit(surprise_trainset(data))

    def predict_rating(self, user_idx: np.ndarray, movie_idx: np.ndarray) -> np.ndarray:
        return np.array([self.algo.predict(str(u), str(m)).est for u, m in zip(user_idx, movie_idx)])


@dataclass(frozen=True)
class RatingResult:
    rmse: float
    mae: float
    fit_seconds: float  # mean per fold
    folds: int


def cross_validate(
    make: Callable[[], RatingModel], data: Interactions, *, folds: int = 5, seed: int = 0
) -> RatingResult:
    """Mean RMSE/MAE/fit time over `folds` random folds of the rated rows (same folds for every model)."""
    rated = data.subset(~np.isnan(data.rating))
    errors, absolute, seconds = [], [], []
    for part in random_folds(rated.nnz, k=folds, seed=seed):
        held = np.zeros(rated.nnz, dtype=bool)
        held[part] = True
        train, test = rated.subset(~held), rated.subset(held)
        model = make()
        start = time.perf_counter()
        model.fit(train, seed=seed)
        seconds.append(time.perf_counter() - start)
        predicted = model.predict_rating(test.user_idx, test.movie_idx)
        errors.append(rmse(predicted, test.rating))
        absolute.append(mae(predicted, test.rating))
    return RatingResult(float(np.mean(errors)), float(np.mean(absolute)), float(np.mean(seconds)), folds)
