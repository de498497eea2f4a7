"""Train a model on a snapshot, evaluate it offline against baselines in the same run, store it."""

from __future__ import annotations

import importlib.util
import inspect
import time
from functools import partial
from typing import Any

from movierec.models.base import Interactions, Progress, Recommender
from movierec.models.registry import model_class, save_model
from movierec.snapshots import latest_snapshot_id, load_snapshot
from movierec.store import Store

DEFAULT_KIND = "forecast-dae"
EASE_MAX_MOVIES = 5_000  # EASE inverts a movies x movies matrix: a peer only for small catalogs
# The in-job evaluation fits and scores every candidate on this many users drawn at random (all of
# them on MovieLens): at 1 M users it costs a fraction of the real fit and still ranks ~10,000 test users.
EVAL_USERS = 20_000
# implicit ALS as the in-job peer, with the setting that won its validation grid on both MovieLens sets
ALS_PARAMS = {"factors": 32, "regularization": 1.0, "alpha": 1.0, "iterations": 15}


def offline_metrics(data: Interactions, make_model, *, seed: int = 0) -> dict[str, Any]:
    """NDCG/Recall/HR@20 and coverage on each user's most recent 20 %, for the model and its baselines.

    Every candidate is fitted on the train part of the same EVAL_USERS sampled users with the same
    hyperparameters; the stored model is then fitted on everything.
    """
    from movierec.evaluation.peers import EASE, ImplicitFactors, Popularity, RecentPopularity
    from movierec.evaluation.ranking import fit_and_evaluate
    from movierec.evaluation.split import sample_users, temporal_split

    sample = sample_users(data, EVAL_USERS, seed=seed)
    train_part, test = temporal_split(sample)
    if test.nnz == 0:
        return {"note": "no user has 5 interactions: nothing to evaluate on"}
    candidates = {"model": make_model, "popularity": Popularity,
                  "recent popularity": lambda: RecentPopularity(half_life_days=14)}
    if importlib.util.find_spec("implicit") is not None:
        candidates["implicit ALS"] = lambda: ImplicitFactors(algorithm="als", **ALS_PARAMS)
    if data.n_movies <= EASE_MAX_MOVIES:
        candidates["EASE"] = lambda: EASE(l2=200.0)
    rows = {}
    for name, make in candidates.items():
        evaluated = fit_and_evaluate(make, train_part, test, seed=seed)
        result = evaluated.result
        rows[name] = {"ndcg@20": round(result.ndcg, 4), "recall@20": round(result.recall, 4),
                      "hr@20": round(result.hit_rate, 4), "coverage": round(result.coverage, 4),
                      "fit_seconds": round(evaluated.fit_seconds, 2)}
    return {"split": "per-user temporal, last 20 % of users with >= 5 interactions",
            "users_sampled": sample.n_users, "users": result.users, "results": rows}


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
    # ranking is what the evaluation measures: a rating head there would only cost time
    ranks_only = "rating_head" in inspect.signature(cls).parameters
    metrics = offline_metrics(data, partial(cls, rating_head=False) if ranks_only else cls, seed=seed) if evaluate else {}
    model: Recommender = cls()
    started = time.perf_counter()
    model.fit(data, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    notes = model.card_notes() if hasattr(model, "card_notes") else {}
    version = save_model(store, model, data, snapshot_id=snapshot_id, metrics=metrics,
                         train_seconds=round(seconds, 3), notes=notes)
    return {"version": version, "snapshot_id": snapshot_id, "kind": kind, "train_seconds": seconds,
            "users": data.n_users, "movies": data.n_movies, "interactions": data.nnz, "metrics": metrics}
