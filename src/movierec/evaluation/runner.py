"""One evaluation run on one dataset: temporal-split ranking with tuned peers, k-fold ratings."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from movierec.evaluation.peers import PeerSpec, peer_specs
from movierec.evaluation.ranking import Tuned, tune_and_test
from movierec.evaluation.ratings import SurpriseRater, cross_validate
from movierec.evaluation.split import temporal_split
from movierec.models.base import Interactions
from movierec.models.neural import NeuralRecommender

_log = logging.getLogger(__name__)
MODEL_NAME = "movierec forecast-dae"
RATING_MODEL_NAME = "movierec BPMF head"
Say = Callable[[str], None]


def neural_spec(*, quick: bool = False) -> PeerSpec:
    """Our model with the small grid it is tuned over on validation, exactly like the peers."""
    grid = [{"hidden": h, "dropout": d, "decay": 0.95, "epochs": 100, "lr": 5e-3}
            for h, d in ((256, 0.3), (512, 0.5), (512, 0.3))]
    if quick:
        grid = [{"hidden": 256, "dropout": 0.3, "decay": 0.95, "epochs": 40, "lr": 1e-2}]
    return PeerSpec(MODEL_NAME, lambda **p: NeuralRecommender(rating_head=False, **p), grid)


def _row(tuned: Tuned) -> dict[str, Any]:
    return {"model": tuned.name, "params": tuned.params, "validation_ndcg": tuned.validation_ndcg,
            "tried": tuned.tried, "fit_seconds": tuned.test.fit_seconds, **asdict(tuned.test.result)}


def evaluate_ranking(data: Interactions, *, quick: bool, seed: int, say: Say) -> list[dict[str, Any]]:
    """Tune every model on (fit, validation), refit on train, score the held-out test part."""
    train, test = temporal_split(data)
    fit_part, validation = temporal_split(train)
    rows = []
    for spec in [*peer_specs(quick=quick), neural_spec(quick=quick)]:
        say(f"  ranking: {spec.name} ({len(spec.grid)} settings on validation)")
        rows.append(_row(tune_and_test(spec, fit_part, validation, train, test, seed=seed)))
    return rows


def evaluate_ratings(data: Interactions, *, quick: bool, seed: int, say: Say) -> list[dict[str, Any]]:
    """RMSE/MAE over 5 random folds (2 with `quick`) for Surprise's models and our rating head."""
    if not np.isfinite(data.rating).any():
        return []
    folds = 2 if quick else 5
    models: list[tuple[str, Callable[[], Any]]] = [
        ("Surprise BaselineOnly", lambda: SurpriseRater("BaselineOnly")),
        ("Surprise SVD", lambda: SurpriseRater("SVD")),
        (RATING_MODEL_NAME, lambda: _RatingHead()),
    ]
    if not quick:
        models.insert(2, ("Surprise SVD++", lambda: SurpriseRater("SVDpp", cache_ratings=True)))
    rows = []
    for name, make in models:
        say(f"  ratings: {name} ({folds} folds)")
        rows.append({"model": name, **asdict(cross_validate(make, data, folds=folds, seed=seed))})
    return rows


class _RatingHead:
    """Only the explicit-rating part of `NeuralRecommender`, so its fit time is measured alone."""

    def fit(self, data: Interactions, *, seed: int = 0) -> None:
        self.model = NeuralRecommender()
        self.model._fit_ratings(data, seed, lambda fraction: None)

    def predict_rating(self, user_idx: np.ndarray, movie_idx: np.ndarray) -> np.ndarray:
        return self.model.predict_rating(user_idx, movie_idx)


def goals(ranking: list[dict[str, Any]], rating: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 4's goals, computed from this run's rows."""
    ours = next(r for r in ranking if r["model"] == MODEL_NAME)
    peers = [r for r in ranking if r["model"] != MODEL_NAME]
    best = max(peers, key=lambda r: r["ndcg"])
    out: dict[str, Any] = {
        "best_peer": best["model"], "best_peer_ndcg": best["ndcg"], "ndcg": ours["ndcg"],
        "ndcg_ratio": ours["ndcg"] / best["ndcg"] if best["ndcg"] else math.inf,
        "ranking_fit_seconds": ours["fit_seconds"],
    }
    out["ndcg_goal_met"] = out["ndcg_ratio"] >= 1.10
    out["fit_time_goal_met"] = ours["fit_seconds"] <= 60.0
    by_name = {r["model"]: r for r in rating}
    if RATING_MODEL_NAME in by_name:
        mine = by_name[RATING_MODEL_NAME]
        out["rmse"] = mine["rmse"]
        out["rmse_goal_met"] = mine["rmse"] <= 0.905
        if "Surprise SVD++" in by_name:
            out["faster_than_svdpp"] = mine["fit_seconds"] < by_name["Surprise SVD++"]["fit_seconds"]
    return out


def evaluate_dataset(data: Interactions, *, quick: bool = False, seed: int = 0, say: Say = print) -> dict[str, Any]:
    ranking = evaluate_ranking(data, quick=quick, seed=seed, say=say)
    rating = evaluate_ratings(data, quick=quick, seed=seed, say=say)
    return {"users": data.n_users, "movies": data.n_movies, "interactions": data.nnz,
            "ranking": ranking, "rating": rating, "goals": goals(ranking, rating)}
