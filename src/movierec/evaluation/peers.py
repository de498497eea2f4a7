"""The libraries a team would pick instead, wrapped to score every movie for a batch of users.

Each peer comes with the grid it is tuned over on the validation split.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from movierec.evaluation.metrics import interaction_matrix
from movierec.models.base import Interactions
from movierec.models.popularity import PopularityModel


class Scorer(Protocol):
    def fit(self, data: Interactions, *, seed: int = 0) -> None: ...
    def score(self, user_idx: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PeerSpec:
    """A named model family with its tuning grid; `make(**params)` builds an unfitted scorer."""

    name: str
    make: Callable[..., Any]
    grid: list[dict[str, Any]] = field(default_factory=lambda: [{}])


def Popularity() -> PopularityModel:
    """Movies ranked by how many users interacted with them: the registry's own model."""
    return PopularityModel()


def RecentPopularity(*, half_life_days: float) -> PopularityModel:
    """Counts decayed by age relative to the newest interaction: what the popular fallback uses."""
    return PopularityModel(half_life_days=half_life_days)


class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019): closed-form item-item weights."""

    def __init__(self, *, l2: float) -> None:
        self.l2 = l2

    def fit(self, data: Interactions, *, seed: int = 0) -> None:
        import torch

        self.x = interaction_matrix(data)
        self.active = np.flatnonzero(np.asarray(self.x.sum(0)).ravel() > 0)  # unseen movies keep zero weights
        sub = self.x[:, self.active]
        gram = torch.from_numpy((sub.T @ sub).toarray().astype(np.float32))
        gram += self.l2 * torch.eye(len(self.active))
        precision = torch.linalg.inv(gram)
        weights = -precision / torch.diag(precision)
        weights.fill_diagonal_(0.0)
        self.weights = weights.numpy()
        self.x = self.x[:, self.active].tocsr()
        self.n_movies = data.n_movies

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        scores = np.zeros((len(user_idx), self.n_movies), dtype=np.float32)
        scores[:, self.active] = self.x[user_idx] @ self.weights
        return scores


class ImplicitFactors:
    """implicit's ALS or BPR on the binary matrix (ALS confidence 1 + alpha)."""

    def __init__(self, *, algorithm: str, alpha: float = 1.0, **params: Any) -> None:
        self.algorithm, self.alpha, self.params = algorithm, alpha, params

    def fit(self, data: Interactions, *, seed: int = 0) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits

        x = interaction_matrix(data)
        threads = min(2, os.cpu_count() or 1)
        # implicit runs its own threads; a BLAS pool under each of them oversubscribes (its own warning)
        with threadpool_limits(1, "blas"):
            if self.algorithm == "als":
                model = AlternatingLeastSquares(random_state=seed, num_threads=threads, **self.params)
                model.fit((x * self.alpha).tocsr(), show_progress=False)
            else:
                model = BayesianPersonalizedRanking(random_state=seed, num_threads=threads, **self.params)
                model.fit(x, show_progress=False)
        self.users, self.items = np.asarray(model.user_factors), np.asarray(model.item_factors)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return (self.users[user_idx] @ self.items.T).astype(np.float32)


class ItemKNN:
    """implicit's item-item neighbourhood model (cosine or BM25 weighting), K neighbours."""

    def __init__(self, *, weighting: str, neighbours: int) -> None:
        self.weighting, self.neighbours = weighting, neighbours

    def fit(self, data: Interactions, *, seed: int = 0) -> None:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        cls = BM25Recommender if self.weighting == "bm25" else CosineRecommender
        model = cls(K=self.neighbours, num_threads=1)
        self.x = interaction_matrix(data).astype(np.float64)
        model.fit(self.x, show_progress=False)
        self.similarity = model.similarity.tocsr()

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray((self.x[user_idx] @ self.similarity).toarray(), dtype=np.float32)


class SurpriseSVDRanker:
    """Surprise's SVD fitted on the explicit ratings, movies ranked by predicted rating."""

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, data: Interactions, *, seed: int = 0) -> None:
        from surprise import SVD

        from movierec.evaluation.ratings import surprise_trainset

        trainset = surprise_trainset(data)
        algo = SVD(random_state=seed, **self.params)
        algo.fit(trainset)
        n_users, n_movies = data.n_users, data.n_movies
        self.bu, self.pu = np.zeros(n_users), np.zeros((n_users, algo.pu.shape[1]))
        self.bi, self.qi = np.zeros(n_movies), np.zeros((n_movies, algo.qi.shape[1]))
        users = np.array([int(trainset.to_raw_uid(i)) for i in range(trainset.n_users)])
        items = np.array([int(trainset.to_raw_iid(i)) for i in range(trainset.n_items)])
        self.bu[users], self.pu[users] = algo.bu, algo.pu
        self.bi[items], self.qi[items] = algo.bi, algo.qi
        self.bi[np.setdiff1d(np.arange(n_movies), items)] = -np.inf  # never-rated movies rank last
        self.mean = trainset.global_mean

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        predicted = self.mean + self.bu[user_idx, None] + self.bi[None, :] + self.pu[user_idx] @ self.qi.T
        return np.clip(predicted, -1e9, None).astype(np.float32)


def peer_specs(*, quick: bool = False) -> list[PeerSpec]:
    """The peers of issue 4 with their validation grids (smaller with `quick`)."""
    pick = (lambda g: g[:: max(1, len(g) // 2)][:2]) if quick else (lambda g: g)
    return [
        PeerSpec("popularity", Popularity),
        PeerSpec("recent popularity", RecentPopularity, pick([{"half_life_days": h} for h in (3, 14, 60, 365, 3650)])),
        PeerSpec("implicit ALS", lambda **p: ImplicitFactors(algorithm="als", **p), pick([
            {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
            for f in (32, 64, 128) for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0)
        ])),
        PeerSpec("implicit BPR", lambda **p: ImplicitFactors(algorithm="bpr", **p), pick([
            {"factors": f, "learning_rate": lr, "regularization": 0.01, "iterations": it}
            for f in (32, 64, 128) for lr in (0.01, 0.05) for it in (100, 300)
        ])),
        PeerSpec("item-kNN", ItemKNN, pick([
            {"weighting": w, "neighbours": k} for w in ("cosine", "bm25") for k in (20, 50, 100, 200)
        ])),
        PeerSpec("EASE", EASE, pick([{"l2": l} for l in (50.0, 200.0, 500.0, 1000.0, 3000.0)])),
        PeerSpec("Surprise SVD (ranked)", SurpriseSVDRanker, pick([
            {"n_factors": f, "n_epochs": e, "reg_all": r}
            for f in (20, 100) for e in (20, 40) for r in (0.02, 0.1)
        ])),
    ]
