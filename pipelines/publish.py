"""Validate a run's shards, then publish it by replacing `recs/CURRENT` atomically."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from movierec.errors import InvalidRun, MovierecError, NotFound, NotReady
from movierec.models.registry import load_model
from movierec.partitioning import partitions_of
from movierec.precompute import load_seen_index
from movierec.recs import (
    SHARD_SCHEMA,
    Variant,
    load_run,
    publication_history,
    read_current,
    shard_key,
    write_current,
)
from movierec.snapshots import interactions_key
from movierec.store import Store

T = TypeVar("T")
_log = logging.getLogger(__name__)


def validate_run(store: Store, run_id: str) -> int:
    """Check every shard of a run; returns the number of users, or raises InvalidRun saying why.

    Checks are vectorised per shard (a course-scale run is 1 M users x 20 movies).
    """
    run = load_run(store, run_id)
    model = _readable(f"run {run_id}: model {run.model_version}", lambda: load_model(store, run.model_version))
    seen = _readable(f"run {run_id}: snapshot {interactions_key(run.snapshot_id)}",
                     lambda: load_seen_index(store, run.snapshot_id, model.user_ids, model.movie_ids))
    vocabulary = pa.array(np.asarray(model.movie_ids, dtype=str))
    users = 0
    for partition in range(run.partitions):
        key = shard_key(run_id, partition, run.partitions)
        try:
            table = pq.read_table(pa.BufferReader(store.get(key)))
        except NotFound:
            raise InvalidRun(f"run {run_id}: shard {key} is missing") from None
        except pa.ArrowException as exc:
            raise InvalidRun(f"{key}: not a readable parquet file: {exc}") from None
        if not table.schema.equals(SHARD_SCHEMA):
            raise InvalidRun(f"{key}: schema {table.schema} is not {SHARD_SCHEMA}")
        _check_shard(key, table, partition, run, model.user_ids, vocabulary, seen)
        users += table.num_rows
    if users != len(model.user_ids):
        raise InvalidRun(f"run {run_id}: {users} users in shards, model has {len(model.user_ids)}")
    return users


def _readable(what: str, load: Callable[[], T]) -> T:
    """What `load` returns; InvalidRun naming `what` if a file it reads is truncated or garbled (its
    reader raises whatever it raises: Arrow, numpy, torch, JSON). The store being down stays itself."""
    try:
        return load()
    except MovierecError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above
        raise InvalidRun(f"{what} is not readable ({type(exc).__name__}: {exc})") from None


def _check_shard(key, table, partition, run, model_users, vocabulary, seen) -> None:
    user_ids = table["user_id"].to_numpy()
    wrong = user_ids[partitions_of(user_ids, run.partitions) != partition]
    if len(wrong):
        raise InvalidRun(f"{key}: user {wrong[0]} belongs to another partition")
    unique, counts = np.unique(user_ids, return_counts=True)
    if (counts > 1).any():
        raise InvalidRun(f"{key}: duplicate user ids ({unique[counts > 1][0]} and others)")
    user_idx = np.searchsorted(model_users, user_ids).clip(0, max(len(model_users) - 1, 0))
    unknown = user_ids[model_users[user_idx] != user_ids] if len(model_users) else user_ids
    if len(unknown):
        raise InvalidRun(f"{key}: user {unknown[0]} is unknown to the model")
    lists = table["movies"].combine_chunks()
    lengths = np.diff(lists.offsets.to_numpy())
    flat = lists.flatten()
    movies = pc.index_in(flat, value_set=vocabulary)
    if movies.null_count:
        raise InvalidRun(f"{key}: unknown movie {pc.filter(flat, pc.is_null(movies))[0]}")
    n_movies = len(vocabulary)
    rows = np.repeat(np.arange(len(user_ids)), lengths)
    pair = user_idx[rows].astype(np.int64) * n_movies + movies.to_numpy()
    ordered = np.sort(pair)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated):
        raise InvalidRun(f"{key}: user {model_users[repeated[0] // n_movies]} has duplicate movies")
    seen_rows, seen_movies = seen.pairs(user_idx)
    seen_pair = np.sort(user_idx[seen_rows].astype(np.int64) * n_movies + seen_movies)
    hit = np.searchsorted(seen_pair, ordered).clip(0, max(len(seen_pair) - 1, 0))
    planted = ordered[seen_pair[hit] == ordered] if len(seen_pair) else ordered[:0]
    if len(planted):
        raise InvalidRun(f"{key}: user {model_users[planted[0] // n_movies]} is recommended a movie already seen")
    possible = np.minimum(run.top_k, n_movies - seen.counts(user_idx))
    short = np.flatnonzero(lengths < possible)
    if len(short):
        i = short[0]
        raise InvalidRun(f"{key}: user {user_ids[i]} has {lengths[i]} movies where {possible[i]} are possible")


def publish(store: Store, run_ids: list[str], *, shares: list[float] | None = None, validate: bool = True) -> dict:
    """Publish one run, or two as an A/B split; what it replaces goes on top of the rollback history."""
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
        return write_current(store, variants, previous=None, history=[])
    except InvalidRun as exc:  # a garbled CURRENT must not block the publication that replaces it
        _log.warning("replacing an unreadable recs/CURRENT; its rollback history is lost: %s", exc)
        return write_current(store, variants, previous=None, history=[])
    return write_current(store, variants, previous=previous, history=[previous, *publication_history(previous)])


def rollback(store: Store) -> dict:
    """Republish the publication before the current one; each further rollback steps one further back.

    Its runs must still be whole (a lifecycle rule deletes old runs). They are not validated again
    (20 s at 1 M users, in an emergency): they were when first published and shards are not
    rewritten with other content; what befalls an old run is deletion, which one listing finds.
    """
    current = read_current(store)
    history = publication_history(current)
    if not history:
        raise InvalidRun("nothing to roll back to: recs/CURRENT records no earlier publication")
    variants = [Variant(**v) for v in history[0]["variants"]]
    for variant in variants:
        check_run_present(store, variant.run_id)
    return write_current(store, variants, previous=current, history=history[1:])


def check_run_present(store: Store, run_id: str) -> None:
    """InvalidRun unless the run's run.json and every one of its shards exist."""
    try:
        run = load_run(store, run_id)
    except NotFound:
        raise InvalidRun(f"cannot roll back to run {run_id}: its run.json is missing "
                         "(publish another run with `movierec publish RUN_ID`)") from None
    present = set(store.list(f"recs/{run_id}/"))
    missing = [p for p in range(run.partitions) if shard_key(run_id, p, run.partitions) not in present]
    if missing:
        raise InvalidRun(f"cannot roll back to run {run_id}: shards {missing[:10]} of 0..{run.partitions - 1} are "
                         "missing (publish another run with `movierec publish RUN_ID`)")
