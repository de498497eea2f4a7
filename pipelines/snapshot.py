"""Compact the event log into an immutable, content-addressed snapshot, reading it as a stream.

Files are read a few at a time and folded into running aggregates whose size
is bounded by the distinct (user, movie, minute) and (user, movie) pairs, not
by the number of lines. Both aggregates are idempotent, which is what makes a
redelivered event count once: the same watch minute or the same rating event
folds into the same row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from movierec.events import SCHEMAS, event_keys
from movierec.quality import compare, profile
from movierec.snapshots import INTERACTIONS_SCHEMA, interactions_key, list_snapshots, manifest_key
from movierec.store import Store

WATCH_COLUMNS = ["time", "user_id", "movie_id", "minute"]
RATE_COLUMNS = ["event_source", "event_id", "time", "user_id", "movie_id", "rating"]
RATE_FOLDED = ["event_source", "event_id", "time", "user_id", "movie", "rating"]
READ_AHEAD = 8  # files fetched concurrently: S3 latency, not bandwidth, bounds a small-file read
FOLD_ROWS = 4_000_000  # re-aggregate the partial results once they hold this many rows


class MovieCodes:
    """Movie slugs as int32 codes while folding: integer keys hash and store far cheaper than strings."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._slugs = pa.array([], pa.string())

    def encode(self, table: pa.Table) -> pa.Table:
        new = [m for m in pc.unique(table["movie_id"]).to_pylist() if m not in self._codes]
        if new:
            self._codes.update((m, len(self._codes) + i) for i, m in enumerate(new))
            self._slugs = pa.concat_arrays([self._slugs, pa.array(new, pa.string())])
        codes = pc.index_in(table["movie_id"], value_set=self._slugs)
        index = table.column_names.index("movie_id")
        return table.set_column(index, "movie", codes)

    def decode(self, codes: pa.ChunkedArray) -> pa.ChunkedArray:
        return pc.take(self._slugs, codes)


def distinct_minutes(table: pa.Table) -> pa.Table:
    """One row per (user, movie, minute) with its latest time; folding twice changes nothing."""
    out = table.group_by(["user_id", "movie", "minute"]).aggregate([("time", "max")])
    return out.rename_columns(["user_id", "movie", "minute", "time"])


def latest_ratings(table: pa.Table) -> pa.Table:
    """One row per (user, movie): the latest rating; equal times are ordered by event identity."""
    order = [(c, "ascending") for c in ["user_id", "movie", "time", "event_source", "event_id"]]
    ordered = table.sort_by(order)
    aggregations = [(c, "last") for c in ["event_source", "event_id", "time", "rating"]]
    out = ordered.group_by(["user_id", "movie"], use_threads=False).aggregate(aggregations)
    return out.rename_columns([c.removesuffix("_last") for c in out.column_names]).select(RATE_FOLDED)


class Fold:
    """A running aggregate over a stream of tables, re-folded whenever it grows past FOLD_ROWS."""

    def __init__(self, fold: Callable[[pa.Table], pa.Table], empty: pa.Table):
        self.fold = fold
        self.parts = [fold(empty)]
        self.rows_in = 0

    def add(self, table: pa.Table) -> None:
        self.rows_in += table.num_rows
        self.parts.append(self.fold(table))
        if sum(p.num_rows for p in self.parts) > FOLD_ROWS:
            self.parts = [self.fold(pa.concat_tables(self.parts))]

    def result(self) -> pa.Table:
        return self.fold(pa.concat_tables(self.parts))


def read_stream(store: Store, keys: list[str], columns: list[str]) -> Iterator[pa.Table]:
    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        for start in range(0, len(keys), READ_AHEAD):
            yield from pool.map(lambda k: store.get_parquet(k, columns=columns), keys[start : start + READ_AHEAD])


def compact(watched: pa.Table, rated: pa.Table, codes: MovieCodes) -> pa.Table:
    """Minutes watched per (user, movie) joined with each pair's latest rating."""
    keys = ["user_id", "movie"]
    minutes = watched.group_by(keys).aggregate([("minute", "count"), ("time", "max")])
    minutes = minutes.rename_columns(["user_id", "movie", "watch_minutes", "watch_time"])
    ratings = rated.select(["user_id", "movie", "rating", "time"]).rename_columns(
        ["user_id", "movie", "rating", "rate_time"]
    )
    joined = minutes.join(ratings, keys=keys, join_type="full outer")
    table = pa.table(
        {
            "user_id": joined["user_id"],
            "movie_id": codes.decode(joined["movie"]),
            "watch_minutes": pc.cast(pc.fill_null(joined["watch_minutes"], 0), pa.int32()),
            "rating": pc.cast(joined["rating"], pa.int16()),
            "last_time": pc.max_element_wise(joined["watch_time"], joined["rate_time"], skip_nulls=True),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    return table.sort_by([("user_id", "ascending"), ("movie_id", "ascending")]).combine_chunks()


class _HashingSink:
    """A write-only file that hashes what it is given instead of keeping it."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass


def content_id(table: pa.Table) -> str:
    """The snapshot id: a hash of the compacted content (Arrow IPC), so the same inputs give the same id."""
    sink = _HashingSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
        writer.write_table(table)
    return sink.digest.hexdigest()[:16]


def _time_range(table: pa.Table) -> dict:
    if table.num_rows == 0:
        return {"min": None, "max": None}
    bounds = pc.min_max(table["last_time"])
    return {k: bounds[k].as_py().isoformat() for k in ("min", "max")}


def _rows(store: Store, keys: list[str], column: str) -> int:
    return sum(store.get_parquet(k, columns=[column]).num_rows for k in keys)


def make_snapshot(store: Store, *, on_file: Callable[[], None] | None = None) -> tuple[dict, bool]:
    """Snapshot the whole event log; returns (manifest, created). An identical snapshot is reused."""
    keys = {kind: event_keys(store, kind) for kind in SCHEMAS}
    codes = MovieCodes()
    watched = Fold(distinct_minutes, codes.encode(SCHEMAS["watch"].empty_table().select(WATCH_COLUMNS)))
    for table in read_stream(store, keys["watch"], WATCH_COLUMNS):
        watched.add(codes.encode(table))
        on_file and on_file()
    rated = Fold(latest_ratings, codes.encode(SCHEMAS["rate"].empty_table().select(RATE_COLUMNS)))
    for table in read_stream(store, keys["rate"], RATE_COLUMNS):
        rated.add(codes.encode(table))
        on_file and on_file()
    watch_minutes, ratings = watched.result(), rated.result()
    table = compact(watch_minutes, ratings, codes)
    snapshot_id = content_id(table)
    if store.exists(manifest_key(snapshot_id)):
        return json.loads(store.get(manifest_key(snapshot_id))), False
    counts = {
        "watch_lines": watched.rows_in,
        "watch_minutes": watch_minutes.num_rows,
        "rate_lines": rated.rows_in,
        "quarantine_lines": _rows(store, keys["quarantine"], "reason"),
        "interactions": table.num_rows,
        "ratings": table.num_rows - table["rating"].null_count,
        "users": len(pc.unique(table["user_id"])),
        "movies": len(pc.unique(table["movie_id"])),
    }
    previous = list_snapshots(store)
    current_profile = profile(table, counts)
    report = compare(current_profile, previous[-1]["profile"] if previous else None,
                     previous[-1]["id"] if previous else None)
    inputs = {kind: sorted(k) for kind, k in keys.items()}
    manifest = {
        "id": snapshot_id,
        "created_at": datetime.now(UTC).isoformat(),
        "inputs": {
            "files": {kind: len(k) for kind, k in inputs.items()},
            "list": f"snapshots/{snapshot_id}/inputs.json",
            "sha256": hashlib.sha256(json.dumps(inputs).encode()).hexdigest(),
        },
        "counts": counts,
        "time_range": _time_range(table),
        "schema": current_profile["schema"],
        "profile": current_profile,
        "quality": {"report": f"snapshots/{snapshot_id}/quality.json", "warnings": report["warnings"]},
    }
    store.put(f"snapshots/{snapshot_id}/inputs.json", json.dumps(inputs).encode())
    store.put(f"snapshots/{snapshot_id}/quality.json", json.dumps(report, indent=2).encode())
    store.put_parquet(interactions_key(snapshot_id), table)
    store.put(manifest_key(snapshot_id), json.dumps(manifest, indent=2).encode())  # last: marks it complete
    return manifest, True
