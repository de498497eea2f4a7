"""Compact the event log into an immutable, content-addressed snapshot."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from movierec.events import SCHEMAS, event_keys
from movierec.snapshots import INTERACTIONS_SCHEMA, interactions_key, manifest_key
from movierec.store import Store

WATCH_COLUMNS = ["event_source", "event_id", "time", "user_id", "movie_id", "minute"]
RATE_COLUMNS = ["event_source", "event_id", "time", "user_id", "movie_id", "rating"]


def _read(store: Store, kind: str, keys: list[str], columns: list[str]) -> pa.Table:
    empty = SCHEMAS[kind].empty_table().select(columns)
    return pa.concat_tables([empty] + [store.get_parquet(key, columns=columns) for key in keys])


def unique_events(table: pa.Table, value_columns: list[str]) -> pa.Table:
    """One row per (source, id): a redelivered event counts once."""
    grouped = table.group_by(["event_source", "event_id"], use_threads=False).aggregate(
        [(c, "first") for c in value_columns]
    )
    return grouped.rename_columns(
        [c.removesuffix("_first") for c in grouped.column_names]
    )


def compact(watches: pa.Table, rates: pa.Table) -> pa.Table:
    """Watch minutes (distinct minutes per user and movie) joined with each pair's latest rating."""
    keys = ["user_id", "movie_id"]
    watched = watches.group_by(keys).aggregate([("minute", "count_distinct"), ("time", "max")])
    watched = watched.rename_columns(["user_id", "movie_id", "watch_minutes", "watch_time"])
    # The latest rating wins; ties on time are broken by event identity so the result is deterministic.
    rates = rates.sort_by([(c, "ascending") for c in ["user_id", "movie_id", "time", "event_source", "event_id"]])
    rated = rates.group_by(keys, use_threads=False).aggregate([("rating", "last"), ("time", "max")])
    rated = rated.rename_columns(["user_id", "movie_id", "rating", "rate_time"])
    joined = watched.join(rated, keys=keys, join_type="full outer")
    last_time = pc.max_element_wise(joined["watch_time"], joined["rate_time"], skip_nulls=True)
    table = pa.table(
        {
            "user_id": joined["user_id"],
            "movie_id": joined["movie_id"],
            "watch_minutes": pc.cast(pc.fill_null(joined["watch_minutes"], 0), pa.int32()),
            "rating": pc.cast(joined["rating"], pa.int16()),
            "last_time": last_time,
        },
        schema=INTERACTIONS_SCHEMA,
    )
    return table.sort_by([("user_id", "ascending"), ("movie_id", "ascending")]).combine_chunks()


def content_id(table: pa.Table) -> str:
    """The snapshot id: a hash of the compacted content, so the same inputs give the same id."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]


def _time_range(table: pa.Table) -> dict:
    if table.num_rows == 0:
        return {"min": None, "max": None}
    bounds = pc.min_max(table["last_time"])
    return {k: bounds[k].as_py().isoformat() for k in ("min", "max")}


def make_snapshot(store: Store) -> tuple[dict, bool]:
    """Snapshot the whole event log; returns (manifest, created). An identical snapshot is reused."""
    watch_keys, rate_keys = event_keys(store, "watch"), event_keys(store, "rate")
    watch_raw = _read(store, "watch", watch_keys, WATCH_COLUMNS)
    rate_raw = _read(store, "rate", rate_keys, RATE_COLUMNS)
    watches = unique_events(watch_raw, WATCH_COLUMNS[2:])
    rates = unique_events(rate_raw, RATE_COLUMNS[2:])
    table = compact(watches, rates)
    snapshot_id = content_id(table)
    if store.exists(manifest_key(snapshot_id)):
        return json.loads(store.get(manifest_key(snapshot_id))), False
    manifest = {
        "id": snapshot_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "inputs": {"watch": watch_keys, "rate": rate_keys},
        "counts": {
            "watch_events": watch_raw.num_rows,
            "watch_events_unique": watches.num_rows,
            "rate_events": rate_raw.num_rows,
            "rate_events_unique": rates.num_rows,
            "interactions": table.num_rows,
            "ratings": table.num_rows - table["rating"].null_count,
            "users": len(pc.unique(table["user_id"])),
            "movies": len(pc.unique(table["movie_id"])),
        },
        "time_range": _time_range(table),
        "schema": {f.name: str(f.type) for f in table.schema},
    }
    store.put_parquet(interactions_key(snapshot_id), table)
    store.put(manifest_key(snapshot_id), json.dumps(manifest, indent=2).encode())  # last: marks it complete
    return manifest, True

