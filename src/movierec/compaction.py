"""Compaction: the event log's small files, rewritten into few large sorted ones, safely.

Ingest writes one file per group commit, which at the stream's pace is one per line. Compaction
rewrites each partition's (kind, arrival day) ingest files into `compacted-<hash>.parquet` files of
up to TARGET_ROWS lines, sorted by user and time, in row groups sized for reading. It keeps every
row: redeliveries are folded away by the snapshot, as before.

Crash- and race-safe by its order of steps, each of which is atomic in the store:
1. list a partition; only the files listed now are touched (later arrivals wait for the next run);
2. write the compacted file, create-only, its footer naming every file it replaces: from here on
   readers skip those (`events.event_keys`), so no line is read twice;
3. delete the replaced files.
A kill at any point leaves either nothing done, or a compacted file whose replaced files are skipped
by readers and deleted by the next run. The name is a hash of the replaced names, so a rerun of the
same group writes nothing new.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from movierec.errors import NotFound
from movierec.events import (
    COMPACTED_PREFIX,
    KINDS_STORED,
    REPLACES,
    SCHEMAS,
    all_event_keys,
    is_compacted,
    read_events,
    replaced_by,
)
from movierec.store import Store

_log = logging.getLogger(__name__)

TARGET_ROWS = 2_000_000  # lines per compacted file: bounds compaction's memory (a few hundred MB)
ROW_GROUP_ROWS = 512 * 1024  # a few MB compressed: one ranged GET each, columns read independently
READ_AHEAD = 32  # small files: on S3 a GET's latency, not its bytes, is the cost
DELETE_BATCH = 1000  # keys per delete request (S3's DeleteObjects limit)
SORT = {kind: ["user_id", "time", "event_source", "event_id"] for kind in ("watch", "rate", "reco", "account")}
SORT["quarantine"] = ["received_at", "event_source", "event_id"]


@dataclass
class Compacted:
    files_in: int = 0  # ingest files rewritten
    lines: int = 0
    files_out: int = 0  # compacted files written
    deleted: int = 0  # replaced files removed (those of an earlier, interrupted run included)
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable files, left in place: key -> why
    seconds: float = 0.0


def compact(store: Store, *, kinds: tuple[str, ...] = KINDS_STORED,
            on_step: Callable[[str], None] | None = None) -> Compacted:
    """Compact every partition of the event log. `on_step(what)` is called before each change."""
    started, result = time.perf_counter(), Compacted()
    step = on_step or (lambda what: None)
    for kind in kinds:
        partitions: dict[str, list[str]] = defaultdict(list)
        for key in all_event_keys(store, kind):
            partitions[key.rsplit("/", 1)[0]].append(key)
        for partition, keys in sorted(partitions.items()):
            _compact_partition(store, kind, keys, result, step)
    result.seconds = time.perf_counter() - started
    return result


def _compact_partition(store: Store, kind: str, keys: list[str], result: Compacted,
                       step: Callable[[str], None]) -> None:
    compacted = [k for k in keys if is_compacted(k)]
    if len(compacted) == len(keys):
        return  # nothing new here: no footer to read
    replaced = set().union(*(replaced_by(store, k) for k in compacted))
    _delete(store, sorted(k for k in keys if k in replaced), result, step)  # left by a run killed meanwhile
    pending = [k for k in keys if not is_compacted(k) and k not in replaced]
    group: list[str] = []
    tables: list[pa.Table] = []
    rows = 0
    for key, table in _read(store, kind, pending, result):
        group.append(key)
        tables.append(table)
        rows += table.num_rows
        if rows >= TARGET_ROWS:
            _replace(store, kind, group, tables, result, step)
            group, tables, rows = [], [], 0
    if group:
        _replace(store, kind, group, tables, result, step)


def _read(store: Store, kind: str, keys: list[str], result: Compacted):
    schema = SCHEMAS[kind]

    def read(key: str) -> pa.Table | None:
        try:
            return read_events(store, key, schema)
        except NotFound:  # another compaction removed it meanwhile: it is in that one's file
            return None
        except (pa.ArrowException, KeyError) as exc:  # truncated or foreign: leave it be
            result.skipped[key] = f"unreadable: {type(exc).__name__}: {str(exc)[:200]}"
            _log.warning("event file %s not compacted: %s", key, result.skipped[key])
            return None

    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        for start in range(0, len(keys), READ_AHEAD):
            chunk = keys[start : start + READ_AHEAD]
            for key, table in zip(chunk, pool.map(read, chunk)):
                if table is not None:
                    yield key, table


def compacted_name(replaced: list[str]) -> str:
    names = "\n".join(sorted(k.rsplit("/", 1)[-1] for k in replaced))
    return f"{COMPACTED_PREFIX}{hashlib.sha256(names.encode()).hexdigest()[:32]}.parquet"


def _replace(store: Store, kind: str, keys: list[str], tables: list[pa.Table], result: Compacted,
             step: Callable[[str], None]) -> None:
    partition = keys[0].rsplit("/", 1)[0]
    names = sorted(k.rsplit("/", 1)[-1] for k in keys)
    table = pa.concat_tables(tables).sort_by([(c, "ascending") for c in SORT[kind]])
    table = table.replace_schema_metadata({REPLACES: json.dumps(names).encode()})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    key = f"{partition}/{compacted_name(keys)}"
    step(f"write {key}")
    store.put_new(key, sink.getvalue())  # False: a killed run wrote this very file already
    result.files_out += 1
    result.files_in += len(keys)
    result.lines += table.num_rows
    _delete(store, sorted(keys), result, step)


def _delete(store: Store, keys: list[str], result: Compacted, step: Callable[[str], None]) -> None:
    for start in range(0, len(keys), DELETE_BATCH):
        chunk = keys[start : start + DELETE_BATCH]
        step(f"delete {len(chunk)} files from {chunk[0]}")
        store.delete_many(chunk)
        result.deleted += len(chunk)
