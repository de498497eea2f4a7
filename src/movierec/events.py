"""The event log: stream records as parquet under `events/kind=<kind>/date=<day>/`.

Every row keeps the CloudEvent's `source` and `id`, the pair that identifies
an event, so that snapshots can drop redeliveries. A batch file's name is a
hash of the events it holds (identity and raw line), and files are created
only if absent: writing the same batch twice is a no-op, never an overwrite,
and different lines can never be mistaken for a batch already written.

Compaction (`movierec.compaction`) rewrites a partition's small files into few large
`compacted-<hash>.parquet` files; each names the files it replaced in its own footer, so the
record and the file appear together, atomically, before any replaced file is removed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from movierec.store import Store
from movierec.stream import LineError, Record, RecoRequest, parse_line

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
_INT32 = range(-(2**31), 2**31)


@dataclass(frozen=True, slots=True)
class Event:
    """One delivered stream line with its raw bytes: parsed, or quarantined with its reason."""

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
        """The arrival day (UTC) partitions the log: a flush writes one file per kind, and a
        late or replayed event lands in today's partition instead of rewriting an old one."""
        return self.received_at.strftime("%Y-%m-%d")


def event_from_line(source: str, event_id: str, raw: bytes, *, received_at: datetime | None = None) -> Event:
    """Parse one line's bytes; anything that does not parse becomes a quarantined event."""
    received_at = received_at or datetime.now(UTC)
    try:
        record = parse_line(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Event(source, event_id, received_at, None, "not_utf8", raw)
    except LineError as exc:
        return Event(source, event_id, received_at, None, exc.reason, raw)
    if isinstance(record, RecoRequest) and not (record.status in _INT32 and record.latency_ms in _INT32):
        # The grammar bounds no reco number; one that overflows its column would fail the whole group commit.
        return Event(source, event_id, received_at, None, "out_of_range", raw)
    return Event(source, event_id, received_at, record, raw=raw)


_FIELDS = {
    "watch": ("time", "user_id", "movie_id", "minute"),
    "rate": ("time", "user_id", "movie_id", "rating"),
    "reco": ("time", "user_id", "server", "status", "result", "movies", "latency_ms"),
    "account": ("time", "user_id"),
}


def _table(kind: str, group: list[Event]) -> pa.Table:
    """Column-wise: much faster than a dict per row."""
    columns = {
        "event_source": [e.source for e in group],
        "event_id": [e.id for e in group],
        "received_at": [e.received_at for e in group],
    }
    if kind == "quarantine":
        columns |= {"reason": [e.reason for e in group], "raw": [e.raw for e in group]}
    else:
        records = [e.record for e in group]
        columns |= {name: [getattr(r, name) for r in records] for name in _FIELDS[kind]}
    return pa.table(columns, schema=SCHEMAS[kind])


def batch_name(events: list[Event]) -> str:
    """A batch named by its content: the same events (in any order) map to the same file, and a batch
    holding any other line never does, even under the same (source, id) pairs (replays, producer bugs)."""
    digest = hashlib.sha256()
    for source, event_id, raw in sorted((e.source, e.id, e.raw) for e in events):
        for part in (source.encode("utf-8", "surrogatepass"), event_id.encode("utf-8", "surrogatepass"), raw):
            digest.update(len(part).to_bytes(8, "little") + part)  # length-prefixed: no two splits hash alike
    return digest.hexdigest()[:32]


def write_events(store: Store, events: list[Event]) -> list[str]:
    """Write events as one parquet file per (kind, arrival day); returns the keys. Durable on return.

    A file that exists already holds these very lines (the name is their hash): a redelivered
    batch, which snapshots would count once anyway, so it is not written again."""
    groups: dict[tuple[str, str], list[Event]] = defaultdict(list)
    days: dict[datetime, str] = {}  # events of one request share their arrival time
    for event in events:
        day = days.get(event.received_at) or days.setdefault(event.received_at, event.day)
        groups[(event.kind, day)].append(event)
    writes = [(f"events/kind={kind}/date={day}/{batch_name(group)}.parquet", _table(kind, group))
              for (kind, day), group in sorted(groups.items())]
    # All at once: a batch's store time is its slowest write, not the sum of up to ~5 (one per kind),
    # so a store slow on each call still answers within the ack timeout. All finish before the return.
    with ThreadPoolExecutor(max_workers=len(writes) or 1) as pool:
        for done in [pool.submit(store.put_parquet, key, table, only_new=True) for key, table in writes]:
            done.result()
    return [key for key, _ in writes]


COMPACTED_PREFIX = "compacted-"
REPLACES = b"movierec.replaces"  # footer metadata of a compacted file: the names it replaced (JSON)


def is_compacted(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)


def replaced_by(store: Store, key: str) -> set[str]:
    """The keys a compacted file replaced, from its footer; none if the footer cannot be read
    (the replaced files, while they exist, are then still read: nothing is lost)."""
    partition = key.rsplit("/", 1)[0]
    try:
        with store.open_input(key) as f:
            metadata = pq.ParquetFile(f).schema_arrow.metadata or {}
    except pa.ArrowException:
        return set()
    return {f"{partition}/{name}" for name in json.loads(metadata.get(REPLACES, b"[]"))}


def read_events(store: Store, key: str, schema: pa.Schema) -> pa.Table:
    """An event file's columns as `schema`. Raises pa.ArrowException or KeyError for a file that is
    not one (truncated, not parquet, columns missing)."""
    parquet = pq.ParquetFile(pa.BufferReader(store.get(key)))
    # One thread for an ingest file (mostly a line or a few): threads cost more than its reading, 3x here.
    table = parquet.read(columns=schema.names, use_threads=is_compacted(key))
    return table if table.schema.equals(schema) else table.select(schema.names).cast(schema)


def all_event_keys(store: Store, kind: str) -> list[str]:
    """Every event file of `kind`, replaced or not."""
    return [k for k in store.list(f"events/kind={kind}") if k.endswith(".parquet")]


def live_keys(store: Store, keys: list[str]) -> list[str]:
    """`keys` less those a compacted file among them replaced. Footers are read only in partitions
    that hold both: after a compaction finishes, its replaced files are gone."""
    partitions: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        partitions[key.rsplit("/", 1)[0]].append(key)
    replaced: set[str] = set()
    for members in partitions.values():
        compacted = [k for k in members if is_compacted(k)]
        if compacted and len(compacted) < len(members):
            replaced.update(*(replaced_by(store, k) for k in compacted))
    return [k for k in keys if k not in replaced]


def event_keys(store: Store, kind: str) -> list[str]:
    """The event files of `kind` to read: a file replaced by a compacted one (still there only while a
    compaction runs, or after one was killed) is left out, so that no line is read twice."""
    return live_keys(store, all_event_keys(store, kind))
