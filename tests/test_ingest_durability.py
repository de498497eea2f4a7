"""Ingest under faults, over HTTP to real processes: SIGKILL under load, S3 down, redelivery, hostile input."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from pathlib import Path

import pytest
import requests
from cloudevents.conversion import to_binary

from movierec.events import event_keys
from movierec.processes import FunctionProcess
from movierec.replay import line_event, line_id, replay
from movierec.store import open_store
from pipelines.snapshot import make_snapshot
from tests.conftest import CREDENTIALS, Seaweed, dataset, small_world_lines, stored_ids

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`

BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def post_batch(url: str, source: str, pairs: list[tuple[str, str]]) -> int:
    body = [{"specversion": "1.0", "type": "movierec.stream.line.v1", "source": source, "id": event_id,
             "datacontenttype": "text/plain", "data": line} for event_id, line in pairs]
    return requests.post(url, data=json.dumps(body), headers=BATCH, timeout=30).status_code


def test_sigkill_under_load_loses_nothing_acknowledged(s3_uri):
    """Kill ingest at random moments while 8 clients send single events; every 2xx must be stored."""
    rng = random.Random(7)
    lines = small_world_lines(users=50, movies=40)
    acked: set[tuple[str, str]] = set()
    lock = threading.Lock()
    counter = iter(range(10**9))
    for _ in range(6):
        ingest = FunctionProcess("ingest", store=s3_uri).start()
        stop = threading.Event()

        def client(url=ingest.url, stop=stop):
            session = requests.Session()
            while not stop.is_set():
                n = next(counter)
                headers, body = to_binary(line_event("sigkill", str(n), lines[n % len(lines)]))
                try:
                    answer = session.post(url, data=body, headers=headers, timeout=10)
                except requests.RequestException:
                    continue
                if answer.status_code == 200:
                    with lock:
                        acked.add(("sigkill", str(n)))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.3, 1.2))
        ingest.kill()  # SIGKILL to the server and its workers: no shutdown hook runs
        stop.set()
        for thread in threads:
            thread.join()
    assert len(acked) > 100, "the load never got going"
    missing = acked - stored_ids(open_store(s3_uri))
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"


def test_store_down_answers_5xx_and_recovers_by_itself(tmp_path, monkeypatch):
    server = Seaweed(tmp_path)
    server.start()
    for key, value in (CREDENTIALS | {"AWS_ENDPOINT_URL": server.endpoint}).items():
        monkeypatch.setenv(key, value)
    uri = "s3://movierec-test/faults"
    try:
        with FunctionProcess("ingest", store=uri) as ingest:
            pairs = [(str(i), f"2026-11-01T10:00:0{i % 10},{i},GET /rate/x+2001=3") for i in range(20)]
            assert post_batch(ingest.url, "faults", pairs[:10]) == 200
            server.stop()
            status = post_batch(ingest.url, "faults", pairs[10:])
            assert 500 <= status < 600
            assert requests.get(f"{ingest.url}/healthz", timeout=5).status_code == 200
            server.start()
            deadline = time.monotonic() + 60
            while post_batch(ingest.url, "faults", pairs[10:]) != 200:
                assert time.monotonic() < deadline, "ingest did not recover after the store came back"
                time.sleep(0.5)
            metrics = requests.get(f"{ingest.url}/metrics", timeout=5).text
            assert re.search(r"movierec_ingest_store_errors_total [1-9]", metrics)
        assert stored_ids(open_store(uri)) == {("faults", str(i)) for i in range(20)}
    finally:
        server.stop()


def test_every_event_twice_in_shuffled_order_gives_the_same_snapshot(tmp_path):
    lines = small_world_lines(users=60, movies=50)
    pairs = [(str(i), line) for i, line in enumerate(lines)]
    twice = pairs + pairs
    random.Random(3).shuffle(twice)
    ids = []
    for name, sequence in (("clean", pairs), ("twice", twice)):
        uri = str(tmp_path / name)
        with FunctionProcess("ingest", store=uri) as ingest:
            for start in range(0, len(sequence), 250):
                assert post_batch(ingest.url, "redelivery", sequence[start : start + 250]) == 200
        ids.append(make_snapshot(open_store(uri))[0])
    assert ids[0]["id"] == ids[1]["id"]
    assert ids[1]["counts"]["watch_lines"] > ids[0]["counts"]["watch_lines"]  # the duplicates were stored


def test_replaying_the_whole_course_stream(tmp_path):
    folder = dataset("course-stream")
    uri = str(tmp_path / "store")
    sent: set[tuple[str, str]] = set()
    with FunctionProcess("ingest", store=uri) as ingest:
        for path in sorted(folder.glob("*.log")):
            raw = path.read_bytes().decode("utf-8", "surrogateescape").splitlines()
            stats = replay(ingest.url, raw, source=path.name, batch_size=400, concurrency=4)
            assert set(stats.statuses) == {200}, stats.statuses
            sent.update((path.name, line_id(path.name, i, line)) for i, line in enumerate(raw))
    store = open_store(uri)
    assert stored_ids(store) == sent
    quarantined = sum(store.get_parquet(k).num_rows for k in event_keys(store, "quarantine"))
    assert quarantined == 19


HOSTILE = [
    "\x00\x01\x02 binary \xff junk",
    "2026-11-01T10:00:00,1,GET /rate/" + "x" * 200_000 + "=5",
    "2026-11-01T10:00:00,1,GET /rate/x+2001=5\x1b[2J",
    "2026-11-01T10:00:00,1,GET /rate/'; DROP TABLE ratings;--=5",
    "2026-11-01T10:00:00,1,GET /data/m/../../../../etc/passwd/1.mpg",
    "2026-11-01T10:00:00,1,GET /rate/{{7*7}}${jndi:ldap://x}=5",
    "2026-11-01T10:00:00,99999999999999999999999999,GET /rate/x+2001=5",
    "2026-11-01T10:00:00,1,GET /rate/x+2001=-1",
    "2026-11-01T10:00:00,1,GET /rate/x+2001=1000000000000",
    "2026-11-01T10:00:00,1,GET /data/m/x+2001/99999999999999999999.mpg",
    "9999-99-99T99:99:99,1,GET /rate/x+2001=5",
]


def test_hostile_input_is_quarantined_and_changes_nothing_else(tmp_path):
    uri = str(tmp_path / "store")
    with FunctionProcess("ingest", store=uri) as ingest:
        for i, line in enumerate(HOSTILE):
            headers, body = to_binary(line_event("hostile", str(i), line.encode("utf-8", "surrogateescape")))
            assert requests.post(ingest.url, data=body, headers=headers, timeout=10).status_code == 200
        assert requests.get(f"{ingest.url}/healthz", timeout=5).status_code == 200
    store = open_store(uri)
    rows = [r for k in event_keys(store, "quarantine") for r in store.get_parquet(k).to_pylist()]
    assert len(rows) == len(HOSTILE)
    assert {r["raw"] for r in rows} == {line.encode("utf-8", "surrogateescape") for line in HOSTILE}
    assert all(key.startswith("events/kind=quarantine/") for key in store.list(""))
    assert not any(Path(uri).rglob("passwd"))


def test_local_store_fsyncs_every_directory_that_gained_an_entry(tmp_path, monkeypatch):
    """Power loss cannot be simulated: record what is fsynced. A new `kind=…/date=…/` directory's entry
    lives in its parent, so each parent of a created directory must be fsynced, not only the file's own."""
    import os

    from movierec.store import LocalStore

    store = LocalStore(tmp_path / "store")
    root, real_fsync, synced = store.root, os.fsync, []

    def recording_fsync(fd):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        synced.append("file" if path.name.startswith(".tmp-") else path.relative_to(root).as_posix())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    assert store.put_new("events/kind=rate/date=2026-11-01/a.parquet", b"a")
    assert sorted(synced) == [".", "events", "events/kind=rate", "events/kind=rate/date=2026-11-01", "file"]
    synced.clear()
    store.put("events/kind=rate/date=2026-11-01/b.parquet", b"b")  # nothing new above the file
    assert sorted(synced) == ["events/kind=rate/date=2026-11-01", "file"]
    synced.clear()
    store.put("events/kind=rate/date=2026-11-02/c.parquet", b"c")
    assert sorted(synced) == ["events/kind=rate", "events/kind=rate/date=2026-11-02", "file"]
