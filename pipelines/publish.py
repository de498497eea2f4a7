"""Validate a run's shards, then publish it by replacing `recs/CURRENT` atomically."""

from __future__ import annotations

import numpy as np

from movierec.errors import InvalidRun, NotFound, NotReady
from movierec.models.registry import load_model
from movierec.partitioning import partitions_of
from movierec.recs import SHARD_SCHEMA, Variant, load_run, read_current, shard_key, write_current
from movierec.scoring import SeenIndex
from movierec.snapshots import load_snapshot
from movierec.store import Store


def validate_run(store: Store, run_id: str) -> int:
    """Check every shard of a run; returns the number of users, or raises InvalidRun saying why."""
    run = load_run(store, run_id)
    model = load_model(store, run.model_version)
    data = load_snapshot(store, run.snapshot_id).interactions()
    seen = SeenIndex(data)
    movie_index = {m: i for i, m in enumerate(model.movie_ids)}
    user_index = {int(u): i for i, u in enumerate(model.user_ids)}
    users = 0
    for partition in range(run.partitions):
        key = shard_key(run_id, partition, run.partitions)
        try:
            table = store.get_parquet(key)
        except NotFound:
            raise InvalidRun(f"run {run_id}: shard {key} is missing") from None
        if not table.schema.equals(SHARD_SCHEMA):
            raise InvalidRun(f"{key}: schema {table.schema} is not {SHARD_SCHEMA}")
        user_ids = table["user_id"].to_numpy()
        wrong = user_ids[partitions_of(user_ids, run.partitions) != partition]
        if len(wrong):
            raise InvalidRun(f"{key}: user {wrong[0]} belongs to another partition")
        if len(np.unique(user_ids)) != len(user_ids):
            raise InvalidRun(f"{key}: duplicate user ids")
        for user_id, movies in zip(user_ids.tolist(), table["movies"].to_pylist()):
            _check_row(key, run.top_k, user_index, movie_index, seen, user_id, movies)
        users += table.num_rows
    if users != len(model.user_ids):
        raise InvalidRun(f"run {run_id}: {users} users in shards, model has {len(model.user_ids)}")
    return users


def _check_row(key, k, user_index, movie_index, seen, user_id, movies) -> None:
    if user_id not in user_index:
        raise InvalidRun(f"{key}: user {user_id} is unknown to the model")
    if len(set(movies)) != len(movies):
        raise InvalidRun(f"{key}: user {user_id} has duplicate movies")
    unknown = [m for m in movies if m not in movie_index]
    if unknown:
        raise InvalidRun(f"{key}: user {user_id} got unknown movie {unknown[0]}")
    user_seen = seen.of(user_index[user_id])
    if np.isin([movie_index[m] for m in movies], user_seen).any():
        raise InvalidRun(f"{key}: user {user_id} is recommended a movie already seen")
    possible = min(k, len(movie_index) - len(user_seen))
    if len(movies) < possible:
        raise InvalidRun(f"{key}: user {user_id} has {len(movies)} movies where {possible} are possible")


def publish(store: Store, run_ids: list[str], *, shares: list[float] | None = None, validate: bool = True) -> dict:
    """Publish one run, or two as an A/B split; the previous pointer is kept for rollback."""
    if not 1 <= len(run_ids) <= 2:
        raise InvalidRun("publish one run, or two for an A/B split")
    shares = shares or [1.0 / len(run_ids)] * len(run_ids)
    if len(shares) != len(run_ids) or not np.isclose(sum(shares), 1.0) or min(shares) <= 0:
        raise InvalidRun(f"shares {shares} must be positive, one per run, and sum to 1")
    variants = []
    for name, run_id, share in zip("AB", run_ids, shares):
        if validate:
            validate_run(store, run_id)
        variants.append(Variant(name, run_id, load_run(store, run_id).model_version, share))
    try:
        previous = read_current(store)
    except NotReady:
        previous = None
    return write_current(store, variants, previous=previous)


def rollback(store: Store) -> dict:
    """Republish what CURRENT pointed to before the last publish."""
    current = read_current(store)
    if not current.get("previous"):
        raise InvalidRun("nothing to roll back to: only one run was ever published")
    variants = [Variant(**v) for v in current["previous"]["variants"]]
    return write_current(store, variants, previous=current)


