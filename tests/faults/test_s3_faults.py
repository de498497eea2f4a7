"""Each function against S3 failing behind the fault proxy, as real processes: refused credentials
(403), conflicting writes (409), 503, a hang past every timeout, an unexpected answer, and S3
stopped mid-ingest. Nothing acknowledged is lost; every failure is answered 5xx and counted."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import requests
from cloudevents.conversion import to_binary

from movierec.errors import StoreUnavailable
from movierec.groupcommit import GroupCommitter
from movierec.processes import FunctionProcess
from movierec.replay import line_event
from movierec.store import open_store
from tests.conftest import small_world_lines, stored_ids

PRECOMPUTE = {"ce-specversion": "1.0", "ce-source": "s", "ce-id": "1", "ce-type": "movierec.precompute.requested.v1",
              "Content-Type": "application/json"}
JOB = json.dumps({"run_id": "r1", "model_version": "m1", "partition": 0, "partitions": 1}).encode()
LINE = "2026-11-01T10:00:01,42,GET /rate/the+godfather+1972=5"


def send_line(url: str, event_id: str, line: str = LINE, timeout: float = 60) -> requests.Response:
    headers, body = to_binary(line_event("faults", event_id, line))
    return requests.post(url, data=body, headers=headers, timeout=timeout)


def send_dead_letter(url: str, event_id: str) -> requests.Response:
    headers, body = to_binary(line_event("faults", event_id, LINE))
    return requests.post(url, data=body, headers=headers, timeout=60)


def send_job(url: str) -> requests.Response:
    return requests.post(url, data=JOB, headers=PRECOMPUTE, timeout=60)


def metric(url: str, pattern: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    match = re.search(re.escape(pattern) + r" ([0-9.e+]+)", text)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def functions(proxied_uri, tmp_path):
    started = {name: FunctionProcess(name, store=proxied_uri, log=tmp_path / f"{name}.log").start()
               for name in ("ingest", "precompute", "deadletter")}
    yield {name: p.url for name, p in started.items()}
    for process in started.values():
        process.stop()


@pytest.mark.parametrize("status", [403, 503])
def test_refused_credentials_and_503_are_answered_503_and_counted_by_every_function(
        functions, proxied_uri, s3_proxy, status):
    s3_proxy.fail(status=status)
    for answer in (send_line(functions["ingest"], "a"), send_job(functions["precompute"]),
                   send_dead_letter(functions["deadletter"], "a")):
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        assert answer.json() == {"error": "the store is unavailable; retry later"}
    assert metric(functions["ingest"], 'movierec_ingest_requests_total{status="503"}') == 1
    assert metric(functions["ingest"], "movierec_ingest_store_errors_total") >= 1
    assert metric(functions["precompute"], 'movierec_precompute_partitions_total{outcome="error"}') == 1
    assert metric(functions["deadletter"], 'movierec_deadletter_requests_total{status="503"}') == 1
    s3_proxy.heal()
    assert send_line(functions["ingest"], "a").status_code == 200
    assert send_dead_letter(functions["deadletter"], "a").status_code == 200
    assert stored_ids(open_store(proxied_uri)) == {("faults", "a")}


def test_an_unexpected_s3_answer_is_a_generic_500_logged_and_counted_by_every_function(
        functions, s3_proxy, tmp_path):
    s3_proxy.fail(status=400)  # InvalidRequest-like: no store error the code knows
    for answer in (send_line(functions["ingest"], "b"), send_job(functions["precompute"]),
                   send_dead_letter(functions["deadletter"], "b")):
        assert answer.status_code == 500 and answer.json() == {"error": "internal error"}
    assert metric(functions["ingest"], 'movierec_ingest_requests_total{status="500"}') == 1
    assert metric(functions["precompute"], 'movierec_precompute_partitions_total{outcome="error"}') == 1
    assert metric(functions["deadletter"], 'movierec_deadletter_requests_total{status="500"}') == 1
    for name in functions:
        assert "failed unexpectedly" in (tmp_path / f"{name}.log").read_text(), name


def test_a_409_storm_acknowledges_nothing_until_the_write_is_confirmed(functions, proxied_uri, s3_proxy):
    s3_proxy.fail(status=409, method="PUT")
    assert send_line(functions["ingest"], "c").status_code == 503
    assert send_dead_letter(functions["deadletter"], "c").status_code == 503
    assert stored_ids(open_store(proxied_uri)) == set()
    s3_proxy.heal()
    s3_proxy.fail(status=409, method="PUT", times=1)  # one conflict, then the write goes through
    assert send_line(functions["ingest"], "c").status_code == 200
    assert stored_ids(open_store(proxied_uri)) == {("faults", "c")}


def test_a_hung_s3_is_answered_503_before_the_ack_timeout_and_ingest_recovers(functions, proxied_uri, s3_proxy):
    s3_proxy.fail(hang=300)
    started = time.monotonic()
    answer = send_line(functions["ingest"], "d")
    assert answer.status_code == 503
    assert time.monotonic() - started < GroupCommitter(lambda _: None).timeout
    s3_proxy.heal()
    assert send_line(functions["ingest"], "d").status_code == 200
    assert stored_ids(open_store(proxied_uri)) == {("faults", "d")}


def test_s3_stopped_mid_ingest_loses_nothing_acknowledged_and_every_event_lands_after(
        functions, proxied_uri, s3_proxy):
    """8 clients send single events and retry each until 200, as Knative does; S3 goes away for 3 s."""
    lines = small_world_lines(users=30, movies=30)
    acked: set[str] = set()
    refused = []
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop = threading.Event()

    def client():
        session = requests.Session()
        while not stop.is_set():
            n = next(counter)
            headers, body = to_binary(line_event("faults", str(n), lines[n % len(lines)]))
            while True:  # redeliver until acknowledged
                try:
                    status = session.post(functions["ingest"], data=body, headers=headers, timeout=60).status_code
                except requests.RequestException:
                    status = 0
                if status == 200:
                    with lock:
                        acked.add(str(n))
                    break
                refused.append(status)
                time.sleep(0.2)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    s3_proxy.stop()
    time.sleep(3.0)
    s3_proxy.start()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(120)
    assert refused and set(refused) <= {503}, f"answers while S3 was down: {sorted(set(refused))}"
    stored = {event_id for source, event_id in stored_ids(open_store(proxied_uri)) if source == "faults"}
    assert len(acked) > 50 and acked <= stored, f"{len(acked - stored)} acknowledged events lost"


def test_store_unavailable_is_what_the_store_raises_behind_the_proxy(proxied_uri, s3_proxy):
    """The proxy's own sanity: with it stopped, the store sees S3 as down."""
    s3_proxy.stop()
    with pytest.raises(StoreUnavailable):
        open_store(proxied_uri).put("k", b"v")
