"""Every event receiver fed hostile bodies, as real processes over HTTP: nested, huge, wrong types,
invalid UTF-8 and base64. Never a 5xx, never a crash; a clear 4xx that stores nothing, or (for what
a stream line may be) a quarantined line."""

from __future__ import annotations

import json

import pytest
import requests

from movierec import deadletters
from movierec.events import event_keys
from movierec.processes import FunctionProcess
from movierec.store import open_store

MiB = 1024 * 1024
LINE = "2026-11-01T10:00:01,42,GET /rate/the+godfather+1972=5"
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
BINARY = {"ce-specversion": "1.0", "ce-source": "s", "ce-id": "1", "ce-type": "movierec.stream.line.v1",
          "Content-Type": "text/plain"}
PRECOMPUTE = {"ce-specversion": "1.0", "ce-source": "s", "ce-id": "1", "ce-type": "movierec.precompute.requested.v1",
              "Content-Type": "application/json"}
NESTED = b"[" * 20_000 + b"]" * 20_000  # 40 KB; Python's recursion limit is 1,000

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`


def event(**fields) -> bytes:
    return json.dumps({"specversion": "1.0", "type": "movierec.stream.line.v1", "source": "s", "id": "1"}
                      | fields).encode()


@pytest.fixture(scope="module")
def functions(tmp_path_factory):
    """ingest, precompute and deadletter on one local store, each in its own process."""
    root = tmp_path_factory.mktemp("hostile")
    uri = str(root / "store")
    started = {name: FunctionProcess(name, store=uri, log=root / f"{name}.log").start()
               for name in ("ingest", "precompute", "deadletter")}
    yield uri, {name: process.url for name, process in started.items()}, root
    for process in started.values():
        process.stop()


def post(url, body, headers, **kwargs) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=60, **kwargs)


def chunks(body: bytes, size: int = MiB):
    for start in range(0, len(body), size):
        yield body[start : start + size]


INGEST_REFUSED = [
    ("nested structured", event(data=LINE)[:-1] + b', "x": ' + NESTED + b"}", STRUCTURED, 400),
    ("nested batch", b"[" + NESTED + b"]", BATCH, 400),
    ("nested in data", event()[:-1] + b', "data": ' + NESTED + b"}", STRUCTURED, 400),
    ("numeric id", event(id=5, data=LINE), STRUCTURED, 400),
    ("data an object", event(data={"line": LINE}), STRUCTURED, 400),
    ("invalid base64", event(data_base64="!!!!"), STRUCTURED, 400),
    ("base64 not a string", event(data_base64=[1]), STRUCTURED, 400),
    ("invalid UTF-8 JSON", event(data=LINE).replace(b"godfather", b"god\xfffather"), STRUCTURED, 400),
    ("3 MiB binary", b"x" * (3 * MiB), BINARY, 413),
]


@pytest.mark.parametrize("name, body, headers, status", INGEST_REFUSED, ids=[c[0] for c in INGEST_REFUSED])
def test_ingest_refuses_hostile_bodies_with_a_4xx_and_stores_nothing(functions, name, body, headers, status):
    uri, urls, _ = functions
    answer = post(urls["ingest"], body, headers)
    assert answer.status_code == status and answer.json()["error"]
    assert open_store(uri).list("events") == []


def test_ingest_a_chunked_body_past_the_limit_is_413(functions):
    uri, urls, _ = functions
    answer = post(urls["ingest"], chunks(b"[" + b" " * (3 * MiB) + b"]"), BATCH)
    assert answer.status_code == 413
    assert open_store(uri).list("events") == []


def test_ingest_quarantines_what_a_line_may_be(functions):
    """Invalid UTF-8 and a near-limit record in binary mode are stream lines that do not parse."""
    uri, urls, _ = functions
    assert post(urls["ingest"], b"2026-11-01T10:00:01,42,\xff\xfe", BINARY | {"ce-id": "u"}).status_code == 200
    assert post(urls["ingest"], b"y" * MiB, BINARY | {"ce-id": "big"}).status_code == 200  # one Kafka record
    store = open_store(uri)
    rows = [r for key in event_keys(store, "quarantine") for r in store.get_parquet(key).to_pylist()]
    assert sorted((r["event_id"], r["reason"]) for r in rows) == [("big", "too_long"), ("u", "not_utf8")]
    for key in event_keys(store, "quarantine"):  # leave the store empty for the other tests
        (store.root / key).unlink()


def job(**fields) -> bytes:
    return json.dumps({"run_id": "r1", "model_version": "m1", "partition": 0, "partitions": 1} | fields).encode()


PRECOMPUTE_REFUSED = [
    ("nested", NESTED, PRECOMPUTE, 400),
    ("nested structured", b'{"specversion": "1.0", "data": ' + NESTED + b"}", STRUCTURED, 400),
    ("partition a string", job(partition="0"), PRECOMPUTE, 400),
    ("run_id a list", job(run_id=["r"]), PRECOMPUTE, 400),
    ("run CURRENT", job(run_id="CURRENT"), PRECOMPUTE, 400),
    ("invalid UTF-8", job().replace(b"r1", b"r\xff"), PRECOMPUTE, 400),
    ("2 MiB", job(pad="x" * (2 * MiB)), PRECOMPUTE, 413),
]


@pytest.mark.parametrize("name, body, headers, status", PRECOMPUTE_REFUSED, ids=[c[0] for c in PRECOMPUTE_REFUSED])
def test_precompute_refuses_hostile_bodies_with_a_4xx(functions, name, body, headers, status):
    uri, urls, _ = functions
    open_store(uri).put("recs/CURRENT", b'{"variants": []}')  # run_id CURRENT names a file, not a run
    answer = post(urls["precompute"], body, headers)
    assert answer.status_code == status and answer.json()["error"]
    assert open_store(uri).list("recs") == ["recs/CURRENT"]


def test_precompute_a_huge_chunked_body_is_413_without_being_held(functions):
    _, urls, _ = functions
    assert post(urls["precompute"], chunks(b" " * (64 * MiB)), PRECOMPUTE).status_code == 413


DEADLETTER_REFUSED = [
    ("nested", b'{"specversion": "1.0", "data": ' + NESTED + b"}", STRUCTURED, 400),
    ("invalid base64", event(data_base64="!!!!"), STRUCTURED, 400),
    ("base64 with junk", event(data_base64="YW%%Jj"), STRUCTURED, 400),
    ("invalid UTF-8 JSON", event(data=LINE).replace(b"godfather", b"god\xfffather"), STRUCTURED, 400),
    ("5 MiB", b"x" * (5 * MiB), BINARY, 413),
]


@pytest.mark.parametrize("name, body, headers, status", DEADLETTER_REFUSED, ids=[c[0] for c in DEADLETTER_REFUSED])
def test_deadletter_refuses_what_it_cannot_keep_as_sent(functions, name, body, headers, status):
    uri, urls, _ = functions
    answer = post(urls["deadletter"], body, headers)
    assert answer.status_code == status and answer.json()["error"]
    assert deadletters.keys(open_store(uri)) == []


def test_deadletter_keeps_an_event_with_a_numeric_id(functions):
    """What ingest refused (a numeric id) is what Knative dead-letters: the sink must keep it."""
    uri, urls, _ = functions
    first = post(urls["deadletter"], event(id=5, data=LINE), STRUCTURED)
    again = post(urls["deadletter"], event(id=5, data=LINE), STRUCTURED)
    as_text = post(urls["deadletter"], event(id="5", data=LINE), STRUCTURED)
    assert (first.status_code, again.status_code, as_text.status_code) == (200, 200, 200)
    assert first.json() == again.json() and first.json() != as_text.json()  # 5 and "5" are two events
    store = open_store(uri)
    kept = deadletters.load(store, first.json()["stored"])
    assert kept["id"] == 5 and kept.data == LINE
    for key in deadletters.keys(store):
        (store.root / key).unlink()


def test_every_function_is_still_up_and_counted_each_answer(functions):
    _, urls, root = functions
    for name, url in urls.items():
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200, name
    assert 'movierec_deadletter_requests_total{status="400"}' in requests.get(f"{urls['deadletter']}/metrics").text
    assert 'movierec_ingest_requests_total{status="413"}' in requests.get(f"{urls['ingest']}/metrics").text
    for name in urls:
        assert "Traceback" not in (root / f"{name}.log").read_text(), name
