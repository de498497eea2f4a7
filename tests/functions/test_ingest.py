"""ingest through functions-framework's test client, with real CloudEvents in every mode."""

from __future__ import annotations

import json

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app
from starlette.testclient import TestClient

from movierec.events import event_keys
from movierec.store import open_store
from tests.conftest import REPO

LINE = "2026-11-01T10:00:01,42,GET /rate/the+godfather+1972=5"


def client_for(store_uri, monkeypatch):
    """ingest is an async (ASGI) function: create_app gives a Starlette app, driven by its TestClient."""
    monkeypatch.setenv("MOVIEREC_STORE", store_uri)
    return TestClient(create_app("ingest", str(REPO / "functions/ingest/main.py")))


def line_event(line, event_id="1", type_="movierec.stream.line.v1", source="test"):
    data = line.encode() if isinstance(line, str) else line
    return CloudEvent({"type": type_, "source": source, "id": event_id, "datacontenttype": "text/plain"}, data)


def stored_rows(store, kind):
    return [row for key in event_keys(store, kind) for row in store.get_parquet(key).to_pylist()]


def test_binary_mode_kafka_event(store_uri, monkeypatch):
    client = client_for(store_uri, monkeypatch)
    headers, body = to_binary(line_event(LINE, "partition:0/offset:17", "dev.knative.kafka.event", "/kafka/movielog1"))
    answer = client.post("/", headers=headers, content=body)
    assert answer.status_code == 200
    (row,) = stored_rows(open_store(store_uri), "rate")
    assert (row["user_id"], row["movie_id"], row["rating"]) == (42, "the+godfather+1972", 5)
    assert (row["event_source"], row["event_id"]) == ("/kafka/movielog1", "partition:0/offset:17")


def test_structured_mode(store_uri, monkeypatch):
    client = client_for(store_uri, monkeypatch)
    headers, body = to_structured(line_event("2026-11-01T10:00,7,GET /data/m/up+2009/3.mpg"))
    assert client.post("/", headers=headers, content=body).status_code == 200
    (row,) = stored_rows(open_store(store_uri), "watch")
    assert (row["user_id"], row["minute"]) == (7, 3)


def test_batch_mode(store_uri, monkeypatch):
    client = client_for(store_uri, monkeypatch)
    batch = [{"specversion": "1.0", "type": "movierec.stream.line.v1", "source": "test", "id": str(i),
              "datacontenttype": "text/plain", "data": f"2026-11-01T10:00:0{i},{i},GET /rate/x+2001=3"} for i in range(5)]
    answer = client.post("/", content=json.dumps(batch), headers={"Content-Type": "application/cloudevents-batch+json"})
    assert answer.status_code == 200 and answer.json() == {"stored": 5}
    assert sorted(r["user_id"] for r in stored_rows(open_store(store_uri), "rate")) == [0, 1, 2, 3, 4]


def test_malformed_line_is_quarantined_and_acknowledged(store_uri, monkeypatch):
    client = client_for(store_uri, monkeypatch)
    headers, body = to_binary(line_event("2024-170-14T15:34:12,49623,GET /rate/rude+awakening+1989=2", "q1"))
    assert client.post("/", headers=headers, content=body).status_code == 200
    (row,) = stored_rows(open_store(store_uri), "quarantine")
    assert row["reason"] == "bad_time" and row["event_id"] == "q1" and row["raw"].startswith(b"2024-170-14")
    assert 'movierec_ingest_quarantined_total{reason="bad_time"}' in client.get("/metrics").text


@pytest.mark.parametrize(
    "headers, body",
    [
        ({"Content-Type": "text/plain"}, b"just a line"),
        ({"Content-Type": "application/cloudevents+json"}, b"{not json"),
        ({"Content-Type": "application/cloudevents-batch+json"}, b"[]"),
        ({"Content-Type": "application/cloudevents-batch+json"}, b'[{"specversion": "1.0"}]'),
        ({"Content-Type": "application/cloudevents-batch+json"}, b'{"a": 1}'),
    ],
)
def test_not_a_cloudevent_is_400_and_stores_nothing(tmp_path, monkeypatch, headers, body):
    uri = str(tmp_path / "store")
    answer = client_for(uri, monkeypatch).post("/", headers=headers, content=body)
    assert answer.status_code == 400 and answer.json()["error"]
    assert open_store(uri).list("events") == []


def test_wrong_type_or_missing_data_is_400(tmp_path, monkeypatch):
    uri = str(tmp_path / "store")
    client = client_for(uri, monkeypatch)
    headers, body = to_binary(line_event(LINE, type_="com.example.other"))
    assert client.post("/", headers=headers, content=body).status_code == 400
    headers, body = to_binary(line_event(None))
    assert client.post("/", headers=headers, content=body).status_code == 400
    good = {"specversion": "1.0", "type": "movierec.stream.line.v1", "source": "t", "id": "1", "data": LINE}
    bad = good | {"id": "2", "type": "nope"}
    answer = client.post("/", content=json.dumps([good, bad]), headers={"Content-Type": "application/cloudevents-batch+json"})
    assert answer.status_code == 400  # a batch is all or nothing
    assert open_store(uri).list("events") == []


def test_store_down_is_503_and_recovers(s3_uri, monkeypatch):
    client = client_for(s3_uri, monkeypatch)
    headers, body = to_binary(line_event(LINE))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    down = client_for(s3_uri, monkeypatch)
    assert down.post("/", headers=headers, content=body).status_code == 503
    assert client.post("/", headers=headers, content=body).status_code == 200


def test_batch_items_with_base64_data_and_an_empty_line(store_uri, monkeypatch):
    import base64

    client = client_for(store_uri, monkeypatch)
    base = {"specversion": "1.0", "type": "dev.knative.kafka.event", "source": "/kafka/movielog1"}
    batch = [base | {"id": "partition:0/offset:1", "data_base64": base64.b64encode(LINE.encode()).decode()},
             base | {"id": "partition:0/offset:2", "data": ""}]
    answer = client.post("/", content=json.dumps(batch), headers={"Content-Type": "application/cloudevents-batch+json"})
    assert answer.status_code == 200
    store = open_store(store_uri)
    assert [r["event_id"] for r in stored_rows(store, "rate")] == ["partition:0/offset:1"]
    assert [(r["event_id"], r["reason"]) for r in stored_rows(store, "quarantine")] == [("partition:0/offset:2", "empty")]
    bad = [base | {"id": "x", "data_base64": "***"}]
    answer = client.post("/", content=json.dumps(bad), headers={"Content-Type": "application/cloudevents-batch+json"})
    assert answer.status_code == 400 and "base64" in answer.json()["error"]


def test_sdk_json_encoded_text_is_unwrapped(store_uri, monkeypatch):
    """The Python SDK sends `str` data JSON-encoded even as text/plain; the line inside is what counts."""
    client = client_for(store_uri, monkeypatch)
    event = CloudEvent({"type": "movierec.stream.line.v1", "source": "sdk", "id": "1", "datacontenttype": "text/plain"}, LINE)
    headers, body = to_binary(event)
    assert body.startswith(b'"')
    assert client.post("/", headers=headers, content=body).status_code == 200
    assert len(stored_rows(open_store(store_uri), "rate")) == 1
