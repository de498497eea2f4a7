"""Snapshots read only what is new, give the id a full rebuild gives, and survive an unreadable file."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from movierec.compaction import compact
from movierec.events import all_event_keys, event_from_line, write_events
from movierec.snapshots import load_snapshot
from movierec.store import LocalStore
from pipelines import snapshot
from pipelines.snapshot import make_snapshot


def night(store, n: int) -> None:
    """A day of the stream: new users and movies, returning ones, a redelivered minute and rating, a
    newer rating replacing an older one, in many small files."""
    day = datetime(2026, 11, 1, 12, tzinfo=UTC) + timedelta(days=n)
    lines = [f"2026-11-{n + 1:02d}T10:{i % 60:02d}:00,{i % (5 + n)},GET /data/m/m{(i + n) % 6}+2001/{i % 9}.mpg"
             for i in range(60)]
    lines += [f"2026-11-{n + 1:02d}T11:{i:02d}:00,{i % 4},GET /rate/m{i % 6}+2001={1 + (i + n) % 5}" for i in range(12)]
    lines += ["2026-11-01T10:00:00,0,GET /data/m/m0+2001/0.mpg"]  # the same minute every night
    events = [event_from_line("s", f"{n}-{i}", line.encode(), received_at=day) for i, line in enumerate(lines)]
    events += events[:5]  # redelivered
    for i in range(0, len(events), 7):
        write_events(store, events[i : i + 7])


@pytest.mark.parametrize("chain_max", [30, 2])  # 2: the minute files are rewritten as one on the way
def test_incremental_snapshots_give_the_id_of_a_full_rebuild(store, chain_max, monkeypatch):
    monkeypatch.setattr(snapshot, "CHAIN_MAX", chain_max)
    ids = []
    for n in range(4):
        night(store, n)
        if n == 1:
            compact(store)  # the base's inputs are replaced by a compacted file
        manifest, created = make_snapshot(store)
        assert created
        ids.append(manifest)
    last = ids[-1]
    assert last["built_from"]["base"] == ids[-2]["id"]  # really incremental
    assert len(last["state"]["minutes"]) == (4 if chain_max == 30 else 2)  # 2: [whole of nights 0-2, night 3]
    assert last["built_from"]["files_read"]["watch"] < last["inputs"]["files"]["watch"]
    full, created = make_snapshot(store, full=True)
    assert not created and full["id"] == last["id"]
    # And from scratch in a store that never had a snapshot.
    fresh = LocalStore(store.root / ".." / "fresh") if isinstance(store, LocalStore) else None
    if fresh is not None:
        shutil.copytree(store.root / "events", fresh.root / "events")
        assert make_snapshot(fresh)[0]["id"] == last["id"]
    table = load_snapshot(store, last["id"]).table
    assert table.num_rows == last["counts"]["interactions"] and last["counts"]["watch_lines"] > 3 * 60


def test_nothing_new_reads_nothing_and_changes_nothing(local_store):
    night(local_store, 0)
    first, _ = make_snapshot(local_store)
    again, created = make_snapshot(local_store)
    assert not created and again["id"] == first["id"]


def test_a_truncated_event_file_is_quarantined_and_named_in_the_report(local_store):
    night(local_store, 0)
    clean, _ = make_snapshot(local_store, full=True)
    night(local_store, 1)
    victim = max(all_event_keys(local_store, "watch"))
    local_store.put(victim, local_store.get(victim)[:-40])  # a file cut short
    manifest, created = make_snapshot(local_store)
    assert created
    (entry,) = manifest["quality"]["quarantined_files"]
    assert entry["key"] == victim and "unreadable" in entry["reason"]
    report = json.loads(local_store.get(manifest["quality"]["report"]))
    assert report["quarantined_files"] == [entry]
    assert any(victim in w for w in manifest["quality"]["warnings"])
    assert victim not in json.loads(local_store.get(manifest["inputs"]["list"]))["watch"]
    assert manifest["counts"]["watch_lines"] > clean["counts"]["watch_lines"]  # the other new files were read


def test_a_compaction_during_the_snapshot_makes_it_plan_again(local_store):
    night(local_store, 0)
    expected = make_snapshot(LocalStore(shutil.copytree(local_store.root, local_store.root.parent / "copy")))[0]["id"]
    compacted = []

    def compact_once() -> None:  # after the first file is read, the files listed with it are replaced
        if not compacted:
            compacted.append(compact(local_store))

    manifest, created = make_snapshot(local_store, on_file=compact_once)
    assert compacted and compacted[0].deleted > 0
    assert created and manifest["id"] == expected
    assert manifest["inputs"]["files"]["watch"] == 1  # what it finally read: the compacted file
