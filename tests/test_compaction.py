"""Compaction of the event log: few files after it, every line kept, and safe under kill -9 at any step."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from movierec import compaction
from movierec.compaction import compact
from movierec.events import all_event_keys, event_from_line, event_keys, is_compacted, write_events
from movierec.store import LocalStore
from pipelines.snapshot import make_snapshot

DAYS = [datetime(2026, 11, 1, 12, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC)]
KILL_AT = """
import os, signal, sys
from movierec import compaction
from movierec.store import LocalStore
compaction.DELETE_BATCH = 1  # a step per file: a kill between any two deletes
steps = [0]
def step(what):
    steps[0] += 1
    if steps[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
compaction.compact(LocalStore(sys.argv[1]), on_step=step)
"""


def lines_of(day: int, n: int) -> list[str]:
    return [f"2026-11-0{day + 1}T10:{i % 60:02d}:00,{i % 7},GET /data/m/m{i % 5}+2001/{i % 11}.mpg" for i in range(n)] + [
        f"2026-11-0{day + 1}T11:{i % 60:02d}:00,{i % 7},GET /rate/m{i % 5}+2001={1 + i % 5}" for i in range(n // 3)]


def fill(store, *, batches: int = 3, source: str = "s") -> None:
    """Small files, one per request as at the stream's pace, redeliveries among them."""
    for d, day in enumerate(DAYS):
        lines = lines_of(d, 30)
        for b in range(batches):
            chosen = lines[b::batches] + lines[: 4]  # the first four lines are redelivered in every batch
            write_events(store, [event_from_line(source, f"{d}-{lines.index(line)}", line.encode(), received_at=day)
                                 for line in chosen])


def identity(store) -> tuple:
    manifest, _ = make_snapshot(store, full=True)
    return manifest["id"], manifest["counts"]["watch_lines"], manifest["counts"]["rate_lines"]


def test_compaction_leaves_one_file_per_partition_and_the_same_snapshot(store):
    fill(store)
    before = identity(store)
    result = compact(store)
    assert result.files_out == 2 * len(DAYS) and result.deleted == result.files_in == 6 * len(DAYS)
    for kind in ("watch", "rate"):
        keys = all_event_keys(store, kind)
        assert len(keys) == len(DAYS) and all(is_compacted(k) for k in keys)
    assert identity(store) == before  # every line kept, redeliveries still counted once
    again = compact(store)
    assert again.files_out == again.deleted == 0  # nothing new: nothing done


def test_files_arriving_during_a_run_are_left_for_the_next(local_store):
    fill(local_store)
    arrived = []

    def step(what: str) -> None:
        if not arrived:  # before the first change: a new request lands in a partition being compacted
            day = DAYS[0]
            line = "2026-11-01T13:00:00,42,GET /data/m/late+2001/0.mpg"
            arrived.extend(write_events(local_store, [event_from_line("s", "late", line.encode(), received_at=day)]))

    compact(local_store, on_step=step)
    (late,) = arrived
    assert local_store.exists(late) and late in event_keys(local_store, "watch")
    manifest, _ = make_snapshot(local_store)
    assert manifest["counts"]["users"] == 8  # user 42 counted
    compact(local_store)
    assert not local_store.exists(late)
    assert make_snapshot(local_store)[0]["id"] == manifest["id"]


@pytest.mark.integration  # kills a process at every step: not in `make test-fast`
def test_kill_9_at_every_step_loses_nothing_and_counts_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(compaction, "DELETE_BATCH", 1)  # as in the killed process
    original = LocalStore(tmp_path / "original")
    fill(original)
    expected = identity(LocalStore(shutil.copytree(original.root, tmp_path / "reference")))
    steps: list[str] = []
    compact(LocalStore(shutil.copytree(original.root, tmp_path / "count")), on_step=steps.append)
    assert len(steps) == 4 * (1 + 3)  # per partition: write the compacted file, delete three
    for n in range(1, len(steps) + 1):
        store = LocalStore(shutil.copytree(original.root, tmp_path / f"kill-{n}"))
        done = subprocess.run([sys.executable, "-c", KILL_AT, str(store.root), str(n)])
        assert done.returncode == -signal.SIGKILL, f"step {n} ({steps[n - 1]}) was not reached"
        assert identity(store) == expected, f"after a kill before {steps[n - 1]}"
        compact(store)  # the next run finishes the job
        assert all(is_compacted(k) for kind in ("watch", "rate") for k in all_event_keys(store, kind))
        assert identity(store) == expected, f"after a kill before {steps[n - 1]} and a rerun"


def test_an_unreadable_file_is_left_in_place(local_store):
    fill(local_store)
    victim = all_event_keys(local_store, "watch")[0]
    local_store.put(victim, local_store.get(victim)[:100])  # truncated
    result = compact(local_store)
    assert victim in result.skipped and "unreadable" in result.skipped[victim]
    assert local_store.exists(victim)


def test_the_snapshot_command_compacts_first(tmp_path, capsys):
    from pipelines.cli import main

    store = LocalStore(tmp_path / "store")
    fill(store)
    assert main(["--store", str(store.root), "snapshot"]) == 0
    assert "created snapshot" in capsys.readouterr().out
    assert all(is_compacted(k) for kind in ("watch", "rate") for k in all_event_keys(store, kind))
    line = "2026-11-03T10:00:00,99,GET /data/m/new+2001/0.mpg"
    write_events(store, [event_from_line("later", "1", line.encode(), received_at=DAYS[1])])
    assert main(["--store", str(store.root), "compact"]) == 0
    assert all(is_compacted(k) for kind in ("watch", "rate") for k in all_event_keys(store, kind))
    assert main(["--store", str(store.root), "snapshot", "--no-compact"]) == 0
    assert "from " in capsys.readouterr().out  # incremental: from the first snapshot and the files new since


def test_delete_many_removes_what_is_there_and_ignores_what_is_not(store):
    for name in "abc":
        store.put(f"events/kind=watch/date=2026-11-01/{name}.parquet", b"x")
    store.delete_many(["events/kind=watch/date=2026-11-01/a.parquet", "events/kind=watch/date=2026-11-01/b.parquet",
                       "events/kind=watch/date=2026-11-01/missing.parquet"])
    assert store.list("events") == ["events/kind=watch/date=2026-11-01/c.parquet"]
