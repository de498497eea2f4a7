"""The event log: stream records as parquet under `events/kind=<kind>/date=<day>/`.

Every row keeps the CloudEvent's `source` and `id`, the pair that identifies
an event, so that snapshots can drop redeliveries. A batch file's name is a
hash of the events it holds, and files are created only if absent: writing
the same batch twice is a no-op, never an overwrite.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from movierec.store import Store
from movierec.stream import CreateAccount, LineError, Rate, RecoRequest, Record, Watch, parse_line

_TS = pa.timestamp("us")
_COMMON = [
    ("event_source", pa.string()),
    ("event_id", pa.string()),
    ("received_at", pa.timestamp("us", tz="UTC")),
]
_LINE = [("time", _TS), ("user_id", pa.int64())]
SCHEMAS: dict[str, pa.Schema] = {
    "watch": pa.schema(_COMMON + _LINE + [("movie_id", pa.string()), ("minute", pa.int32())]),
    "rate": pa.schema(_COMMON + _LINE + [("movie_id", pa.string()), ("rating", pa.int16())]),
    "reco": pa.schema(
        _COMMON
        + _LINE
        + [
            ("server", pa.string()),
            ("status", pa.int32()),
            ("result", pa.string()),
            ("movies", pa.list_(pa.string())),
            ("latency_ms", pa.int32()),
        ]
    ),
    "account": pa.schema(_COMMON + _LINE),
    "quarantine": pa.schema(_COMMON + [("reason", pa.string()), ("raw", pa.binary())]),
}
KINDS_STORED = tuple(SCHEMAS)


@dataclass(frozen=True, slots=True)
class Event:
    """One delivered stream line: parsed, or quarantined with its reason and raw bytes."""

    source: str
    id: str
    received_at: datetime
    record: Record | None
    reason: str | None = None
    raw: bytes = b""

    @property
    def kind(self) -> str:
        return self.record.kind if self.record is not None else "quarantine"

    @property
    def day(self) -> str:
        when = self.record.time if self.record is not None else self.received_at
        return when.strftime("%Y-%m-%d")


def event_from_line(source: str, event_id: str, raw: bytes, *, received_at: datetime | None = None) -> Event:
    """Parse one line's bytes; anything that does not parse becomes a quarantined event."""
    received_at = received_at or datetime.now(timezone.utc)
    try:
        record = parse_line(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Event(source, event_id, received_at, None, "not_utf8", raw)
    except LineError as exc:
        return Event(source, event_id, received_at, None, exc.reason, raw)
    return Event(source, event_id, received_at, record)


def _row(event: Event) -> dict:
    row = {"event_source": event.source, "event_id": event.id, "received_at": event.received_at}
    rec = event.record
    if rec is None:
        return row | {"reason": event.reason, "raw": event.raw}
    row |= {"time": rec.time, "user_id": rec.user_id}
    if isinstance(rec, Watch):
        row |= {"movie_id": rec.movie_id, "minute": rec.minute}
    elif isinstance(rec, Rate):
        row |= {"movie_id": rec.movie_id, "rating": rec.rating}
    elif isinstance(rec, RecoRequest):
        row |= {
            "server": rec.server,
            "status": rec.status,
            "result": rec.result,
            "movies": list(rec.movies),
            "latency_ms": rec.latency_ms,
        }
    else:
        assert isinstance(rec, CreateAccount)
    return row


def batch_name(events: list[Event]) -> str:
    """Deterministic name for a batch: the same events always map to the same file."""
    digest = hashlib.sha256()
    for key in sorted(f"{e.source}\x00{e.id}" for e in events):
        digest.update(key.encode("utf-8", "surrogatepass") + b"\x01")
    return digest.hexdigest()[:32]


def write_events(store: Store, events: list[Event]) -> list[str]:
    """Write events as one parquet file per (kind, day); returns the keys. Durable on return."""
    groups: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in events:
        groups[(event.kind, event.day)].append(event)
    keys = []
    for (kind, day), group in sorted(groups.items()):
        table = pa.Table.from_pylist([_row(e) for e in group], schema=SCHEMAS[kind])
        key = f"events/kind={kind}/date={day}/{batch_name(group)}.parquet"
        store.put_parquet(key, table, only_new=True)
        keys.append(key)
    return keys


def event_keys(store: Store, kind: str) -> list[str]:
    return [k for k in store.list(f"events/kind={kind}") if k.endswith(".parquet")]
