"""Train a model on a snapshot, evaluate it offline against baselines in the same run, store it."""

from __future__ import annotations

import time
from typing import Any

from movierec.models.base import Interactions, Progress, Recommender
from movierec.models.registry import model_class, save_model
from movierec.snapshots import latest_snapshot_id, load_snapshot
from movierec.store import Store

DEFAULT_KIND = "forecast-dae"
EASE_MAX_MOVIES = 5_000  # EASE inverts a movies x movies matrix: a peer only for small catalogs


def offline_metrics(data: Interactions, make_model, *, seed: int = 0) -> dict[str, Any]:
    """NDCG/Recall/HR@20 and coverage on each user's most recent 20 %, for the model and its baselines.

    The model is refitted on the train part with the same hyperparameters; the
    stored model is then fitted on everything.
    """
    from movierec.evaluation.peers import EASE, Popularity, RecentPopularity
    from movierec.evaluation.ranking import fit_and_evaluate
    from movierec.evaluation.split import temporal_split

    train_part, test = temporal_split(data)
    if test.nnz == 0:
        return {"note": "no user has 5 interactions: nothing to evaluate on"}
    candidates = {"model": make_model, "popularity": Popularity,
                  "recent popularity": lambda: RecentPopularity(half_life_days=14)}
    if data.n_movies <= EASE_MAX_MOVIES:
        candidates["EASE"] = lambda: EASE(l2=200.0)
    rows = {}
    for name, make in candidates.items():
        evaluated = fit_and_evaluate(make, train_part, test, seed=seed)
        result = evaluated.result
        rows[name] = {"ndcg@20": round(result.ndcg, 4), "recall@20": round(result.recall, 4),
                      "hr@20": round(result.hit_rate, 4), "coverage": round(result.coverage, 4),
                      "fit_seconds": round(evaluated.fit_seconds, 2)}
    return {"split": "per-user temporal, last 20 % of users with >= 5 interactions", "users": result.users,
            "results": rows}


def train(
    store: Store,
    *,
    snapshot_id: str | None = None,
    kind: str = DEFAULT_KIND,
    seed: int = 0,
    evaluate: bool = True,
    progress: Progress | None = None,
) -> dict:
    """Fit a model of `kind` on a snapshot (the latest by default); returns a summary of its card."""
    snapshot_id = snapshot_id or latest_snapshot_id(store)
    data = load_snapshot(store, snapshot_id).interactions()
    cls = model_class(kind)
    metrics = offline_metrics(data, cls, seed=seed) if evaluate else {}
    model: Recommender = cls()
    started = time.perf_counter()
    model.fit(data, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    notes = model.card_notes() if hasattr(model, "card_notes") else {}
    version = save_model(store, model, data, snapshot_id=snapshot_id, metrics=metrics,
                         train_seconds=round(seconds, 3), notes=notes)
    return {"version": version, "snapshot_id": snapshot_id, "kind": kind, "train_seconds": seconds,
            "users": data.n_users, "movies": data.n_movies, "interactions": data.nnz, "metrics": metrics}
