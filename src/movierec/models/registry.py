"""The model registry: `models/<version>/` holds weights, id maps, the popular fallback and card.json.

card.json is written last, so a model is visible only once complete. Versions
start with a UTC timestamp, so the latest is the greatest.
"""

from __future__ import annotations

import importlib
import json
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from movierec.errors import NotFound
from movierec.models.base import Interactions, Recommender
from movierec.models.popularity import popular_order, recent_popularity
from movierec.snapshots import load_manifest
from movierec.store import Store

POPULAR_SIZE = 200

# kind -> "module:Class"; imported lazily so that a popularity model never needs torch.
KINDS = {
    "popularity": "movierec.models.popularity:PopularityModel",
    "forecast-dae": "movierec.models.neural:NeuralRecommender",
    "factors": "movierec.models.factors:FactorModel",
    "random": "movierec.models.weak:RandomModel",  # deliberately weak: the A/B control of `simulate`
}


def model_class(kind: str) -> type[Recommender]:
    try:
        module, name = KINDS[kind].split(":")
    except KeyError:
        raise NotFound(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}") from None
    return getattr(importlib.import_module(module), name)


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from movierec import __version__

        return __version__


@dataclass(frozen=True)
class LoadedModel:
    version: str
    card: dict[str, Any]
    model: Recommender
    user_ids: np.ndarray  # external id of each user index
    movie_ids: np.ndarray  # slug of each movie index
    popular: list[str]  # the fallback list, best first


def save_model(
    store: Store,
    model: Recommender,
    data: Interactions,
    *,
    snapshot_id: str,
    metrics: dict[str, Any] | None = None,
    train_seconds: float | None = None,
    notes: dict[str, Any] | None = None,
) -> str:
    """Store a fitted model with its id maps and fallback; returns the new version."""
    now = datetime.now(UTC)
    version = f"{now:%Y%m%dT%H%M%SZ}-{model.kind}-{secrets.token_hex(3)}"
    prefix = f"models/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        for path in sorted(Path(tmp).iterdir()):
            store.put(f"{prefix}/weights/{path.name}", path.read_bytes())
    store.put_parquet(f"{prefix}/users.parquet", pa.table({"user_id": data.user_ids}))
    store.put_parquet(f"{prefix}/movies.parquet", pa.table({"movie_id": data.movie_ids.astype(str)}))
    snapshot_time = datetime.fromisoformat(load_manifest(store, snapshot_id)["created_at"]).timestamp()
    popular = data.movie_ids[popular_order(recent_popularity(data, now=snapshot_time))[:POPULAR_SIZE]]
    store.put(f"{prefix}/popular.json", json.dumps([str(m) for m in popular]).encode())
    card = {
        "version": version,
        "kind": model.kind,
        "snapshot_id": snapshot_id,
        "created_at": now.isoformat(),
        "params": model.params(),
        "metrics": metrics or {},
        "train_seconds": train_seconds,
        "code_version": code_version(),
        "users": data.n_users,
        "movies": data.n_movies,
        "notes": notes or {},
    }
    store.put(f"{prefix}/card.json", json.dumps(card, indent=2).encode())
    return version


def list_models(store: Store) -> list[dict[str, Any]]:
    """Cards of every complete model, oldest first."""
    cards = [json.loads(store.get(k)) for k in store.list("models") if k.endswith("/card.json")]
    return sorted(cards, key=lambda c: c["version"])


def latest_version(store: Store) -> str:
    cards = list_models(store)
    if not cards:
        raise NotFound("no model yet: run `movierec train` first")
    return cards[-1]["version"]


def load_card(store: Store, version: str) -> dict[str, Any]:
    try:
        return json.loads(store.get(f"models/{version}/card.json"))
    except NotFound:
        raise NotFound(f"model {version} not found (or incomplete)") from None


def load_popular(store: Store, version: str) -> list[str]:
    return json.loads(store.get(f"models/{version}/popular.json"))


def load_model(store: Store, version: str) -> LoadedModel:
    card = load_card(store, version)
    prefix = f"models/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        for key in store.list(f"{prefix}/weights"):
            Path(tmp, key.rsplit("/", 1)[-1]).write_bytes(store.get(key))
        model = model_class(card["kind"]).load(Path(tmp))
    return LoadedModel(
        version=version,
        card=card,
        model=model,
        user_ids=store.get_parquet(f"{prefix}/users.parquet")["user_id"].to_numpy(),
        movie_ids=np.asarray(store.get_parquet(f"{prefix}/movies.parquet")["movie_id"].to_pylist()),
        popular=load_popular(store, version),
    )
