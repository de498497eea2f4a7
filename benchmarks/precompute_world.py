"""A synthetic store at course scale: 1 M users x 27,000 movies, 64-d factors, ~100 seen movies a user.

Written straight into the store's layout (snapshot parquet + manifest, model
through the registry), because replaying 100 M stream lines through ingest
would measure ingest, not precompute. Popularity follows a power law, as in
the course stream. Built once and reused: the store directory is a cache.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec.models.base import Interactions
from movierec.models.factors import FactorModel
from movierec.models.registry import latest_version, save_model
from movierec.snapshots import interactions_key, manifest_key
from movierec.store import LocalStore

DIM = 64
START = 1_790_000_000  # 2026-09-21, seconds


def movie_slugs(n_movies: int) -> np.ndarray:
    words = ["night", "day", "river", "city", "ghost", "king", "queen", "summer", "winter", "dark", "light",
             "lost", "star", "road", "house"]
    return np.array([f"{words[i % 15]}+{words[(i // 15) % 15]}+{i}+{1950 + i % 76}" for i in range(n_movies)])


def seen_pairs(rng: np.random.Generator, n_users: int, n_movies: int, per_user: float) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, movie_idx) sorted and distinct; counts lognormal around `per_user`, power-law movies."""
    popularity = 1.0 / np.arange(1, n_movies + 1) ** 0.9
    cdf = np.cumsum(rng.permutation(popularity / popularity.sum()))
    counts = np.clip(rng.lognormal(np.log(per_user), 0.7, n_users), 5, 2000).astype(np.int64)
    counts = (counts * per_user / counts.mean()).astype(np.int64) + 1
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    movies = np.searchsorted(cdf, rng.random(len(users)) * cdf[-1]).clip(0, n_movies - 1)
    pairs = np.unique(users * n_movies + movies)  # sorted by user, then movie; duplicates dropped
    return (pairs // n_movies).astype(np.int32), (pairs % n_movies).astype(np.int32)


def build_world(root: Path, *, users: int = 1_000_000, movies: int = 27_000, per_user: float = 100.0,
                seed: int = 0, log=print) -> tuple[LocalStore, str]:
    """The store at `root` with a snapshot and a factors model; returns (store, model version)."""
    store = LocalStore(root)
    marker = root / "world.json"
    wanted = {"users": users, "movies": movies, "per_user": per_user, "seed": seed, "dim": DIM}
    if marker.exists() and json.loads(marker.read_text())["params"] == wanted:
        return store, latest_version(store)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    user_ids = np.sort(rng.choice(4 * users, size=users, replace=False)).astype(np.int64)
    slugs = movie_slugs(movies)
    order = np.argsort(slugs)  # the snapshot numbers movies in sorted slug order
    slugs = slugs[order]
    user_idx, movie_idx = seen_pairs(rng, users, movies, per_user)
    log(f"world: {len(user_idx):,} seen pairs ({len(user_idx) / users:.0f} a user) "
        f"in {time.perf_counter() - started:.0f} s")
    last_time = START + rng.integers(0, 60 * 86_400, len(user_idx))
    snapshot_id = f"bench-{users}x{movies}-{seed}"
    movie_col = pa.DictionaryArray.from_arrays(pa.array(movie_idx), pa.array(slugs))
    table = pa.table({
        "user_id": pa.array(user_ids[user_idx]),
        "movie_id": movie_col,
        "watch_minutes": pa.array(rng.integers(1, 120, len(user_idx), dtype=np.int32)),
        "rating": pa.nulls(len(user_idx), pa.int16()),
        "last_time": pa.array(last_time * 1_000_000, pa.timestamp("us")),
    })
    path = root / interactions_key(snapshot_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", store_schema=False)  # reads back as plain strings
    del table, movie_col
    manifest = {"id": snapshot_id, "created_at": datetime.now(UTC).isoformat(),
                "counts": {"users": users, "movies": movies, "interactions": len(user_idx)},
                "inputs": [], "synthetic": wanted}
    store.put(manifest_key(snapshot_id), json.dumps(manifest).encode())
    data = Interactions(
        user_ids=user_ids, movie_ids=slugs, user_idx=user_idx, movie_idx=movie_idx,
        watch_minutes=np.ones(len(user_idx), np.float32), rating=np.full(len(user_idx), np.nan, np.float32),
        last_time=last_time,
    )
    # Scores that matter: taste (dot product) plus a popularity bias, as a trained model would have.
    popularity = np.bincount(movie_idx, minlength=movies)
    model = FactorModel(
        rng.normal(0, 1 / np.sqrt(DIM), (users, DIM)).astype(np.float32),
        rng.normal(0, 1, (movies, DIM)).astype(np.float32),
        (0.3 * np.log1p(popularity)).astype(np.float32),
    )
    version = save_model(store, model, data, snapshot_id=snapshot_id, notes={"synthetic": wanted})
    marker.write_text(json.dumps({"params": wanted, "model": version}))
    log(f"world: snapshot {snapshot_id} and model {version} written in {time.perf_counter() - started:.0f} s")
    return store, version
