"""Snapshots: immutable, content-addressed versions of the cleaned stream data.

`snapshots/<id>/interactions.parquet` holds one row per (user, movie) with the
minutes watched, the latest rating and the latest time; `state/` keeps the aggregates the
next snapshot starts from (it then reads only newer event files); `manifest.json`,
written last, marks the snapshot complete. Writing one is in
`pipelines/snapshot.py`; this module reads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec.errors import NotFound
from movierec.models.base import Interactions
from movierec.store import Store

INTERACTIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("movie_id", pa.string()),
        ("watch_minutes", pa.int32()),
        ("rating", pa.int16()),  # null where only watched
        ("last_time", pa.timestamp("us")),
    ]
)


def manifest_key(snapshot_id: str) -> str:
    return f"snapshots/{snapshot_id}/manifest.json"


def interactions_key(snapshot_id: str) -> str:
    return f"snapshots/{snapshot_id}/interactions.parquet"


def list_snapshots(store: Store) -> list[dict]:
    """Manifests of every complete snapshot, oldest first."""
    manifests = [
        json.loads(store.get(key))
        for key in store.list("snapshots")
        if key.endswith("/manifest.json")
    ]
    return sorted(manifests, key=lambda m: (m["created_at"], m["id"]))


def load_manifest(store: Store, snapshot_id: str) -> dict:
    try:
        return json.loads(store.get(manifest_key(snapshot_id)))
    except NotFound:
        raise NotFound(f"snapshot {snapshot_id} not found (or incomplete)") from None


def latest_snapshot_id(store: Store) -> str:
    manifests = list_snapshots(store)
    if not manifests:
        raise NotFound("no snapshot yet: run `movierec snapshot` first")
    return manifests[-1]["id"]


@dataclass(frozen=True)
class SnapshotData:
    snapshot_id: str
    table: pa.Table  # INTERACTIONS_SCHEMA, sorted by user_id, movie_id

    def interactions(self) -> Interactions:
        """The table in index space: users and movies numbered in sorted id order."""
        table = self.table
        user_ids, user_idx = np.unique(table["user_id"].to_numpy(), return_inverse=True)
        movie_ids, movie_idx = np.unique(
            np.asarray(table["movie_id"].to_pylist(), dtype=object), return_inverse=True
        )
        rating = table["rating"].to_numpy(zero_copy_only=False)
        return Interactions(
            user_ids=user_ids.astype(np.int64),
            movie_ids=movie_ids.astype(str),
            user_idx=user_idx.astype(np.int32),
            movie_idx=movie_idx.astype(np.int32),
            watch_minutes=table["watch_minutes"].to_numpy().astype(np.float32),
            rating=np.where(np.isnan(rating.astype(np.float64)), np.nan, rating).astype(np.float32),
            last_time=pc.cast(table["last_time"], pa.int64()).to_numpy() // 1_000_000,
        )


def load_snapshot(store: Store, snapshot_id: str) -> SnapshotData:
    load_manifest(store, snapshot_id)  # only complete snapshots are readable
    return SnapshotData(snapshot_id, store.get_parquet(interactions_key(snapshot_id)))
