"""The dead-letter sink keeps what Knative could not deliver, and `movierec deadletters replay` sends it again."""

from __future__ import annotations

import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from movierec import deadletters
from movierec.events import event_keys
from movierec.processes import FunctionProcess
from movierec.store import open_store
from pipelines.cli import main

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`

LINE = "2026-11-01T10:00:01,42,GET /rate/the+godfather+1972=5"


def dead_letter(event_id: str, line: str = LINE, type_: str = "dev.knative.kafka.event") -> CloudEvent:
    """An event as Knative dead-letters it: the original, plus its error extensions."""
    return CloudEvent({"type": type_, "source": "/kafka/movielog1", "id": event_id, "datacontenttype": "text/plain",
                       "knativeerrorcode": "503", "knativeerrordest": "http://ingest.movierec.svc"}, line.encode())


def test_dead_letters_are_kept_once_and_sent_again_to_ingest(store_uri, tmp_path, capsys):
    store = open_store(store_uri)
    with FunctionProcess("deadletter", store=store_uri, log=tmp_path / "deadletter.log") as sink:
        for mode in (to_binary, to_structured, to_binary):  # the third: Knative redelivering the first
            headers, body = mode(dead_letter("partition:0/offset:17"))
            assert requests.post(sink.url, headers=headers, data=body, timeout=10).status_code == 200
        headers, body = to_binary(dead_letter("partition:0/offset:18", LINE.replace("42", "43")))
        assert requests.post(sink.url, headers=headers, data=body, timeout=10).status_code == 200
        headers, body = to_binary(dead_letter("p-1", '{"run_id": "r"}', "movierec.precompute.requested.v1"))
        assert requests.post(sink.url, headers=headers, data=body, timeout=10).status_code == 200
        assert requests.post(sink.url, data=b"not an event", timeout=10).status_code == 400
        assert 'movierec_deadletter_events_total{type="dev.knative.kafka.event"} 4.0' in \
            requests.get(f"{sink.url}/metrics", timeout=10).text
    keys = deadletters.keys(store)
    assert len(keys) == 3 and all(k.startswith("deadletter/date=") for k in keys)
    kept = deadletters.load(store, keys[0])
    assert kept["knativeerrorcode"] == "503"

    assert main(["--store", store_uri, "deadletters", "list"]) == 0
    assert "3 dead letters" in capsys.readouterr().out
    with FunctionProcess("ingest", store=store_uri, log=tmp_path / "ingest.log") as ingest:
        assert main(["--store", store_uri, "deadletters", "replay", "--url", ingest.url]) == 0
        assert "sent 2, skipped 1 of other types, failed 0" in capsys.readouterr().out
        assert main(["deadletters", "replay", "--url", ingest.url, "--store", store_uri]) == 0  # idempotent
    rows = [r for key in event_keys(store, "rate") for r in store.get_parquet(key).to_pylist()]
    assert {(r["event_id"], r["user_id"]) for r in rows} == {("partition:0/offset:17", 42), ("partition:0/offset:18", 43)}
    assert all(r["event_source"] == "/kafka/movielog1" for r in rows)


def test_a_dead_letter_is_refused_with_5xx_while_the_store_is_down(seaweed, tmp_path):
    """Knative retries a 5xx, so the sink never acknowledges what it could not keep."""
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens on the discard port
    with FunctionProcess("deadletter", store="s3://movierec-test/down", env=env, log=tmp_path / "dl.log") as sink:
        headers, body = to_binary(dead_letter("partition:0/offset:1"))
        answer = requests.post(sink.url, headers=headers, data=body, timeout=30)
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert "127.0.0.1" not in answer.text and "movierec-test" not in answer.text  # endpoints stay in the log


def test_replay_reports_what_ingest_did_not_take(local_store, capsys):
    deadletters.keep(local_store, dead_letter("partition:0/offset:17"))
    assert main(["--store", local_store.uri, "deadletters", "replay", "--url", "http://127.0.0.1:9"]) == 1
    assert "failed 1" in capsys.readouterr().out


def test_a_replayed_dead_letter_carries_the_bytes_first_sent(tmp_path):
    """Binary bodies that look like JSON are kept as sent, not parsed and re-serialised: the
    replayed line is quarantined by ingest with exactly the original raw bytes."""
    bodies = [b"null", b'{"a":1}', b"  7 ", b"1e999", b"\xff\xfenot utf-8"]
    store_uri = str(tmp_path / "store")
    with FunctionProcess("deadletter", store=store_uri, log=tmp_path / "deadletter.log") as sink:
        for i, body in enumerate(bodies):
            headers = {"ce-specversion": "1.0", "ce-type": "dev.knative.kafka.event", "ce-source": "/kafka/movielog1",
                       "ce-id": f"partition:0/offset:{i}", "ce-knativeerrorcode": "500"}
            assert requests.post(sink.url, headers=headers, data=body, timeout=10).status_code == 200
        surrogate = to_structured(dead_letter("\ud800"))  # JSON admits a lone surrogate in the id
        assert requests.post(sink.url, headers=surrogate[0], data=surrogate[1], timeout=10).status_code == 200
        too_big = to_binary(dead_letter("big", "x" * (5 * 1024 * 1024)))
        assert requests.post(sink.url, headers=too_big[0], data=too_big[1], timeout=30).status_code == 413
        other = to_binary(dead_letter("o-1", type_="someone.elses.type"))
        assert requests.post(sink.url, headers=other[0], data=other[1], timeout=10).status_code == 200
        assert 'movierec_deadletter_events_total{type="other"} 1.0' in requests.get(f"{sink.url}/metrics", timeout=10).text
    store = open_store(store_uri)
    assert len(deadletters.keys(store)) == len(bodies) + 2
    assert any("\\ud800" in line for line in deadletters.summary(store, deadletters.keys(store)))  # printable
    with FunctionProcess("ingest", store=store_uri, log=tmp_path / "ingest.log") as ingest:
        result = deadletters.resend(store, ingest.url, deadletters.keys(store))
    assert (result.sent, result.skipped, len(result.failed)) == (len(bodies), 1, 1)  # the surrogate id: ingest's 400
    rows = [r for key in event_keys(store, "quarantine") for r in store.get_parquet(key).to_pylist()]
    assert sorted(r["raw"] for r in rows) == sorted(bodies)


def test_a_structured_text_dead_letter_is_replayed_as_the_line_itself(local_store):
    """A structured event's `data` is a JSON string; sent again in binary mode it is the line's bytes,
    not the line in quotes (which ingest would quarantine)."""
    event = CloudEvent({"type": "movierec.stream.line.v1", "source": "replay", "id": "7"}, LINE)
    key = deadletters.keep(local_store, event)
    _, body = to_binary(deadletters.original(deadletters.load(local_store, key)))
    assert body == LINE.encode()
