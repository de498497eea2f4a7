"""Score one user partition with a stored model and write its shard."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from cloudevents import exceptions as ce_errors
from cloudevents.http import from_http

from movierec.models.registry import LoadedModel, load_model
from movierec.partitioning import partitions_of
from movierec.errors import BadInput
from movierec.recs import SHARD_SCHEMA, shard_key
from movierec.scoring import SeenIndex, top_k
from movierec.snapshots import load_snapshot
from movierec.store import Store

_log = logging.getLogger(__name__)
BATCH_USERS = 2048
REQUEST_TYPE = "movierec.precompute.requested.v1"
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)


@dataclass(frozen=True)
class ScoringContext:
    model: LoadedModel
    seen: SeenIndex


class ContextCache:
    """Model and seen-index per model version, built once per process (precompute instances are reused)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], ScoringContext] = {}

    def get(self, store: Store, model_version: str) -> ScoringContext:
        key = (store.uri, model_version)
        with self._lock:
            if key not in self._cache:
                model = load_model(store, model_version)
                data = load_snapshot(store, model.card["snapshot_id"]).interactions()
                if not np.array_equal(data.user_ids, model.user_ids) or len(data.movie_ids) != len(model.movie_ids):
                    raise ValueError(f"model {model_version} does not match its snapshot's id maps")
                self._cache = {key: ScoringContext(model, SeenIndex(data))}  # keep one: bounded memory
            return self._cache[key]


CONTEXTS = ContextCache()


def score_partition(ctx: ScoringContext, partition: int, partitions: int, k: int) -> pa.Table:
    """The shard table for one partition: each of its users with their top-k unseen movies."""
    user_ids = ctx.model.user_ids
    users = np.flatnonzero(partitions_of(user_ids, partitions) == partition)
    movie_ids = ctx.model.movie_ids
    rows: list[list[str]] = []
    for start in range(0, len(users), BATCH_USERS):
        batch = users[start : start + BATCH_USERS]
        scores = np.asarray(ctx.model.model.score(batch), dtype=np.float32)
        ctx.seen.mask(scores, batch)
        for best in top_k(scores, k):
            rows.append([str(m) for m in movie_ids[best[best >= 0]]])
    return pa.table({"user_id": pa.array(user_ids[users], pa.int64()), "movies": rows}, schema=SHARD_SCHEMA)


def precompute_partition(
    store: Store, *, run_id: str, model_version: str, partition: int, partitions: int, top_k: int
) -> str:
    """Write the shard of one partition; a redelivered partition rewrites identical content."""
    if not 0 <= partition < partitions:
        raise BadInput(f"partition {partition} outside 0..{partitions - 1}")
    ctx = CONTEXTS.get(store, model_version)
    table = score_partition(ctx, partition, partitions, top_k)
    key = shard_key(run_id, partition, partitions)
    store.put_parquet(key, table)
    _log.info("wrote %s (%d users)", key, table.num_rows)
    return key


def parse_request(headers, body: bytes, *, default_top_k: int) -> dict:
    """The keyword arguments of `precompute_partition` from a precompute CloudEvent; BadInput if malformed."""
    try:
        event = from_http(dict(headers), body)
    except (ce_errors.GenericException, ValueError, TypeError) as exc:
        raise BadInput(f"not a CloudEvent: {exc}") from None
    if event["type"] != REQUEST_TYPE:
        raise BadInput(f"event type {event['type']!r} is not {REQUEST_TYPE!r}")
    data = event.get_data()
    if not isinstance(data, dict):
        raise BadInput("data must be a JSON object")
    try:
        job = {
            "run_id": str(data["run_id"]),
            "model_version": str(data["model_version"]),
            "partition": int(data["partition"]),
            "partitions": int(data["partitions"]),
            "top_k": int(data.get("top_k", default_top_k)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"data needs run_id, model_version, partition, partitions: {exc}") from None
    for name in ("run_id", "model_version"):
        if not _SAFE_ID.fullmatch(job[name]):
            raise BadInput(f"{name} {job[name][:40]!r} has characters outside [A-Za-z0-9._-]")
    if job["partitions"] < 1 or job["top_k"] < 1:
        raise BadInput("partitions and top_k must be positive")
    return job
