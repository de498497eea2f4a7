"""Recommendation runs: `recs/<run_id>/` shards and run.json, and the published pointer `recs/CURRENT`."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from movierec.errors import InvalidRun, NotFound, NotReady
from movierec.store import Store

CURRENT_KEY = "recs/CURRENT"
HISTORY = 10  # earlier publications kept in CURRENT: how many rollbacks in a row can step back
SHARD_SCHEMA = pa.schema([("user_id", pa.int64()), ("movies", pa.list_(pa.string()))])


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def shard_key(run_id: str, partition: int, partitions: int) -> str:
    return f"recs/{run_id}/part-{partition}-of-{partitions}.parquet"


def run_key(run_id: str) -> str:
    return f"recs/{run_id}/run.json"


@dataclass(frozen=True)
class Run:
    """What a precompute run is: which model scored which snapshot into how many partitions."""

    run_id: str
    model_version: str
    snapshot_id: str
    partitions: int
    top_k: int
    created_at: str


def write_run(store: Store, run: Run) -> None:
    store.put(run_key(run.run_id), json.dumps(asdict(run), indent=2).encode())


def load_run(store: Store, run_id: str) -> Run:
    """The run's run.json; NotFound, or InvalidRun for one that is not a run's description."""
    try:
        raw = store.get(run_key(run_id))
    except NotFound:
        raise NotFound(f"run {run_id} not found") from None
    try:
        return Run(**json.loads(raw))
    except (ValueError, TypeError) as exc:  # not JSON, or not these fields
        raise InvalidRun(f"recs/{run_id}/run.json is not a run description: {exc}") from None


@dataclass(frozen=True)
class Variant:
    name: str
    run_id: str
    model_version: str
    share: float


def read_current(store: Store) -> dict[str, Any]:
    """The published pointer; raises NotReady while nothing is published."""
    try:
        raw = store.get(CURRENT_KEY)
    except NotFound:
        raise NotReady("nothing published yet") from None
    try:
        current = json.loads(raw)
    except ValueError as exc:
        raise InvalidRun(f"recs/CURRENT is not valid JSON ({exc}): publish a run again") from None
    if not _is_publication(current):
        raise InvalidRun("recs/CURRENT is not a publication (variants and history): publish a run again")
    return current


def _is_publication(current: Any) -> bool:
    """The shape every reader relies on: an object whose variants are variants, and a list of history."""
    if not (isinstance(current, dict) and isinstance(current.get("variants"), list)
            and isinstance(current.get("history", []), list)):
        return False
    try:
        current_variants(current)
    except TypeError:  # a variant that is not an object, or has missing or unknown fields
        return False
    return True


def current_variants(current: dict[str, Any]) -> list[Variant]:
    return [Variant(**v) for v in current["variants"]]


def publication_history(current: dict[str, Any]) -> list[dict[str, Any]]:
    """The earlier publications that rollback can return to, newest first. A CURRENT written before
    `history` existed has only `previous` (an object or null): that one is its history."""
    if "history" in current:
        return current["history"]
    return [current["previous"]] if current.get("previous") else []


def write_current(
    store: Store, variants: list[Variant], *, previous: dict[str, Any] | None, history: list[dict[str, Any]]
) -> dict:
    """Replace recs/CURRENT atomically.

    `previous` is the publication this one replaces (the A/B report attributes earlier answers to
    it); `history` is what rollback steps back through, newest first, bounded to HISTORY entries.
    A publication without variants is refused: recommend could answer nobody from it.
    """
    if not variants:
        raise InvalidRun("a publication needs at least one variant; recs/CURRENT is left as it is")
    current = {
        "variants": [asdict(v) for v in variants],
        "published_at": datetime.now(UTC).isoformat(),
        "previous": _publication(previous) if previous else None,
        "history": [_publication(p) for p in history[:HISTORY]],
    }
    store.put(CURRENT_KEY, json.dumps(current, indent=2).encode())
    return current


def _publication(current: dict[str, Any]) -> dict[str, Any]:
    return {k: current[k] for k in ("variants", "published_at")}
