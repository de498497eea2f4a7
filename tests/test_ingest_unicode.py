"""Lone surrogates (valid JSON, not encodable text) and values that do not fit the log's columns:
never a 500, never a failure for the other requests sharing a group commit."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from movierec.errors import BadInput, StoreUnavailable
from movierec.groupcommit import GroupCommitter
from movierec.ingest import Ingestor
from movierec.store import open_store
from tests.functions.test_ingest import LINE, client_for, stored_rows

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
BINARY = {"ce-specversion": "1.0", "ce-type": "movierec.stream.line.v1", "ce-source": "bin", "Content-Type": "text/plain"}
OVERFLOW = "2026-11-01T10:00:00,1,recommendation request h:8082, status 99999999999, result: a+2001, 5 ms"


def event(**fields):
    return {"specversion": "1.0", "type": "movierec.stream.line.v1", "source": "s", "id": "1", "data": LINE} | fields


def test_surrogate_in_data_is_quarantined_with_its_bytes(tmp_path, monkeypatch):
    uri = str(tmp_path / "store")
    client = client_for(uri, monkeypatch)
    structured = client.post("/", content=json.dumps(event(id="s1", data="x\ud800y")), headers=STRUCTURED)
    binary = client.post("/", content=b'"x\\ud800y"', headers=BINARY | {"ce-id": "b1"})  # an SDK's JSON-quoted str
    escaped = client.post("/", content=json.dumps(event(id="s2", data="x\udcffy")), headers=STRUCTURED)
    assert (structured.status_code, binary.status_code, escaped.status_code) == (200, 200, 200)
    rows = {r["event_id"]: r for r in stored_rows(open_store(uri), "quarantine")}
    assert {i: r["reason"] for i, r in rows.items()} == {"s1": "not_utf8", "b1": "not_utf8", "s2": "not_utf8"}
    assert rows["s1"]["raw"] == rows["b1"]["raw"] == b"x\xed\xa0\x80y"  # the surrogate kept (surrogatepass)
    assert rows["s2"]["raw"] == b"x\xffy"  # a byte the replay client escaped comes back as that byte


@pytest.mark.parametrize("field", ["id", "source"])
def test_surrogate_in_id_or_source_is_400_and_stores_nothing(tmp_path, monkeypatch, field):
    uri = str(tmp_path / "store")
    client = client_for(uri, monkeypatch)
    answer = client.post("/", content=json.dumps(event(**{field: "a\ud800"})), headers=STRUCTURED)
    assert answer.status_code == 400 and field in answer.json()["error"]
    batch = [event(id="ok"), event(id="2") | {field: "\udcff"}]
    assert client.post("/", content=json.dumps(batch), headers=BATCH).status_code == 400
    assert open_store(uri).list("events") == []


def test_binary_mode_header_bytes_are_text(tmp_path, monkeypatch):
    """Header values arrive decoded as latin-1: whatever bytes they hold, the id is encodable text."""
    uri = str(tmp_path / "store")
    answer = client_for(uri, monkeypatch).post("/", content=LINE.encode(), headers=BINARY | {"ce-id": b"id-\xff"})
    assert answer.status_code == 200
    assert len(stored_rows(open_store(uri), "rate")) == 1


def test_values_that_do_not_fit_a_column_are_quarantined(tmp_path, monkeypatch):
    uri = str(tmp_path / "store")
    answer = client_for(uri, monkeypatch).post("/", content=json.dumps(event(data=OVERFLOW)), headers=STRUCTURED)
    assert answer.status_code == 200
    assert [r["reason"] for r in stored_rows(open_store(uri), "quarantine")] == ["out_of_range"]


@pytest.mark.parametrize("poison", [event(id="p", source="\ud800"), event(id="p", data=OVERFLOW), event(id="p", data="\ud800")])
def test_a_poison_request_never_fails_a_good_one_in_the_same_group_commit(tmp_path, poison):
    store = open_store(str(tmp_path / "store"))
    ingestor = Ingestor(store, max_delay=0.2)  # long enough for both requests to share one batch

    async def both():
        good = ingestor.ingest(BATCH, json.dumps([event(id="good")]).encode())
        bad = ingestor.ingest(STRUCTURED, json.dumps(poison).encode())
        return await asyncio.gather(good, bad, return_exceptions=True)

    good, bad = asyncio.run(both())
    assert good == 1
    assert bad == 1 or isinstance(bad, BadInput)
    assert [r["event_id"] for r in stored_rows(store, "rate")] == ["good"]


def test_group_commit_confines_a_failing_request_to_itself():
    written, calls, lock = [], [], threading.Lock()

    def write(items):
        with lock:
            calls.append(list(items))
        if "poison" in items:
            raise ValueError("cannot write poison")
        written.extend(items)

    committer = GroupCommitter(write, max_delay=0.2)
    good, bad = committer.submit(["good"]), committer.submit(["poison"])
    assert good.result(5) is None
    with pytest.raises(ValueError):
        bad.result(5)
    assert written == ["good"] and calls[0] == ["good", "poison"]  # one shared write first, then each alone


def test_group_commit_does_not_retry_a_store_fault_request_by_request():
    calls = []

    def write(items):
        calls.append(list(items))
        raise StoreUnavailable("down")

    committer = GroupCommitter(write, max_delay=0.2)
    futures = [committer.submit(["a"]), committer.submit(["b"])]
    for future in futures:
        with pytest.raises(StoreUnavailable):
            future.result(5)
    assert calls == [["a", "b"]]
