"""The event log and snapshots: idempotent batches, redelivery dedupe, content addressing."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import pyarrow.compute as pc

from movierec.events import event_from_line, event_keys, write_events
from movierec.snapshots import list_snapshots, load_snapshot
from movierec.store import LocalStore
from pipelines.snapshot import make_snapshot

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LINES = [
    "2026-11-01T10:00:01,1,GET /data/m/a+2001/0.mpg",
    "2026-11-01T10:01:01,1,GET /data/m/a+2001/1.mpg",
    "2026-11-01T10:01:30,1,GET /data/m/a+2001/1.mpg",  # the same minute again: counts once
    "2026-11-01T10:05,1,GET /rate/a+2001=2",
    "2026-11-02T10:05,1,GET /rate/a+2001=5",  # the latest rating wins
    "2026-11-01T11:00:00,2,GET /rate/b+2002=4",
    "2026-11-01T12:00:00,2,recommendation request h:8082, status 200, result: a+2001, b+2002, 5 ms",
    "2026-11-01T12:00:00,3,GET /create_account",
    "not a line at all",
]


def events(lines, source="test"):
    return [event_from_line(source, str(i), line.encode(), received_at=T0) for i, line in enumerate(lines)]


def test_batches_are_written_per_kind_and_day_and_only_once(store):
    batch = events(LINES)
    keys = write_events(store, batch)
    assert {k.split("/")[1] for k in keys} == {"kind=watch", "kind=rate", "kind=reco", "kind=account", "kind=quarantine"}
    assert all("/date=2026-11-01/" in key for key in keys)  # partitioned by arrival day, not line time
    again = write_events(store, batch)  # a redelivered batch: same names, nothing overwritten
    assert again == keys
    assert len(store.list("events")) == len(keys)


def test_a_batch_writes_its_kinds_at_once_so_a_slow_store_costs_one_write_not_five(tmp_path):
    """Issue 15, finding 2: each write waits at a barrier that only all five together pass; written one
    after another, the first would wait alone until the barrier breaks and the batch would fail."""
    barrier = threading.Barrier(5, timeout=10)

    class SlowStore(LocalStore):
        def put_parquet(self, key, table, *, only_new=False):
            barrier.wait()
            return super().put_parquet(key, table, only_new=only_new)

    store = SlowStore(tmp_path / "store")
    keys = write_events(store, events(LINES))
    assert len(keys) == 5 and all(store.exists(k) for k in keys)


def test_quarantine_keeps_raw_bytes_reason_and_event_id(store):
    raw = b"\xff\xfe junk"
    write_events(store, [event_from_line("s", "e-9", raw, received_at=T0)])
    (key,) = event_keys(store, "quarantine")
    row = store.get_parquet(key).to_pylist()[0]
    assert (row["raw"], row["reason"], row["event_id"], row["event_source"]) == (raw, "not_utf8", "e-9", "s")


def test_snapshot_aggregates_and_dedupes(store):
    write_events(store, events(LINES))
    manifest, created = make_snapshot(store)
    assert created
    rows = {(r["user_id"], r["movie_id"]): r for r in load_snapshot(store, manifest["id"]).table.to_pylist()}
    assert rows[(1, "a+2001")]["watch_minutes"] == 2
    assert rows[(1, "a+2001")]["rating"] == 5
    assert rows[(2, "b+2002")]["watch_minutes"] == 0 and rows[(2, "b+2002")]["rating"] == 4
    assert manifest["counts"]["users"] == 2 and manifest["counts"]["interactions"] == 2
    assert manifest["time_range"]["max"].startswith("2026-11-02T10:05")


def test_redelivered_events_give_the_identical_snapshot(tmp_path):
    from movierec.store import LocalStore

    clean, noisy = LocalStore(tmp_path / "clean"), LocalStore(tmp_path / "noisy")
    write_events(clean, events(LINES))
    twice = events(LINES) + events(LINES)
    random.Random(1).shuffle(twice)
    for i in range(0, len(twice), 3):  # different batches, so duplicates land in different files
        write_events(noisy, twice[i : i + 3])
    first, _ = make_snapshot(clean)
    second, _ = make_snapshot(noisy)
    assert first["id"] == second["id"]
    # Duplicates really reached the log (a batch identical to an earlier one is skipped by name).
    assert second["counts"]["watch_lines"] > second["counts"]["watch_minutes"] == 2
    assert second["counts"]["rate_lines"] > first["counts"]["rate_lines"] == 3


def test_same_inputs_reuse_the_snapshot_and_new_data_makes_a_new_one(store):
    write_events(store, events(LINES))
    first, created = make_snapshot(store)
    again, created_again = make_snapshot(store)
    assert created and not created_again and again["id"] == first["id"]
    write_events(store, events(["2026-11-03T10:00:00,7,GET /rate/c+2003=3"], source="other"))
    newer, _ = make_snapshot(store)
    assert newer["id"] != first["id"]
    assert [m["id"] for m in list_snapshots(store)] == [first["id"], newer["id"]]
    assert pc.sum(load_snapshot(store, newer["id"]).table["watch_minutes"]).as_py() == 2


def test_quality_report_flags_drift_and_volume_drops(local_store):
    import json

    base = [f"2026-11-01T10:00:{i % 60:02d},{i},GET /rate/m{i % 30}+2001={1 + i % 5}" for i in range(600)]
    write_events(local_store, events(base, source="a"))
    first, _ = make_snapshot(local_store)
    assert first["quality"]["warnings"] == []
    # Everyone now rates 5: the rating distribution shifts far beyond the PSI threshold.
    shifted = [f"2026-11-02T10:00:{i % 60:02d},{i},GET /rate/m{i % 30}+2001=5" for i in range(600)]
    write_events(local_store, events(shifted, source="b"))
    second, created = make_snapshot(local_store)
    assert created
    report = json.loads(local_store.get(second["quality"]["report"]))
    assert report["previous"] == first["id"]
    assert report["drift"]["rating_psi"] > 0.2
    assert any("rating_psi" in w for w in second["quality"]["warnings"])
    assert report["volume"]["ratings"]["change"] == 0.0


def test_psi_is_zero_for_the_same_shape():
    from movierec.quality import psi

    assert psi([10, 20, 30], [20, 40, 60]) == 0.0
    assert psi([0, 0], [1, 2]) is None
    assert psi([50, 50], [90, 10]) > 0.2


def test_a_batch_is_named_by_its_content_not_only_its_ids(store):
    """Different lines under the same (source, id) pairs must never be dropped as a 'redelivery'."""
    first = events(LINES[3:5])
    other = events(["2026-11-05T10:05,9,GET /rate/z+2009=1", "2026-11-05T10:06,9,GET /rate/y+2009=2"])
    (key,) = write_events(store, first)
    (other_key,) = write_events(store, other)
    assert other_key != key
    assert write_events(store, list(reversed(events(LINES[3:5])))) == [key]  # a redelivery, in any order
    rows = [r for k in event_keys(store, "rate") for r in store.get_parquet(k).to_pylist()]
    assert sorted(r["user_id"] for r in rows) == [1, 1, 9, 9]
