"""Train a model on a snapshot and store it in the registry."""

from __future__ import annotations

import time

from movierec.models.base import Progress, Recommender
from movierec.models.registry import model_class, save_model
from movierec.snapshots import latest_snapshot_id, load_snapshot
from movierec.store import Store


def train(
    store: Store,
    *,
    snapshot_id: str | None = None,
    kind: str = "popularity",
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    """Fit a model of `kind` on a snapshot (the latest by default); returns its card."""
    snapshot_id = snapshot_id or latest_snapshot_id(store)
    data = load_snapshot(store, snapshot_id).interactions()
    model: Recommender = model_class(kind)()
    started = time.perf_counter()
    model.fit(data, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    version = save_model(store, model, data, snapshot_id=snapshot_id, train_seconds=round(seconds, 3))
    return {"version": version, "snapshot_id": snapshot_id, "kind": kind, "train_seconds": seconds,
            "users": data.n_users, "movies": data.n_movies, "interactions": data.nnz}
