"""A real Prometheus scrapes the three functions (real processes on a real S3) while faults are
induced: bad lines are replayed, then the S3 server is stopped. The matching alerts must go to
firing, read through Prometheus' HTTP API, and recommend must keep answering from memory.

The rules are monitoring/alerts.yaml with every duration divided by 60 (minutes become seconds).
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cloudevents.conversion import to_binary

from movierec.processes import FunctionProcess
from movierec.recs import load_run
from movierec.replay import _structured
from movierec.store import open_store
from pipelines.fanout import partition_event
from tests.conftest import BUCKET, CREDENTIALS, Seaweed, build_published, small_world_lines
from tests.monitoring.promtools import MONITORING, Prometheus, speed_up, tool

FAULT_ALERTS = {"RecommendUnavailable", "RecommendErrors", "RecommendSlow", "RecommendReloadFailing",
                "IngestFailing", "IngestQuarantineHigh", "PrecomputeFailing"}


class Traffic:
    """What the functions see each tick: recommend requests, stream lines, optionally bad lines."""

    def __init__(self, ingest: str, recommend: str, users: list[int]):
        self.ingest, self.recommend, self.users = ingest, recommend, users
        self.ids = itertools.count()
        self.bad_lines = False
        self.recommend_statuses: list[int] = []
        self.ingest_statuses: list[int] = []
        self.session = requests.Session()

    def tick(self) -> None:
        for user in self.users[:5]:
            self.recommend_statuses.append(self.session.get(f"{self.recommend}/recommend/{user}", timeout=10).status_code)
        lines = [f"2026-11-20T10:{i % 60:02d}:00,{self.users[i % len(self.users)]},GET /data/m/some+movie+2001/{i}.mpg"
                 for i in range(20)]
        if self.bad_lines:
            lines += [f"not a stream line {i}" for i in range(40)]
        events = [_structured("tests/alerts", str(next(self.ids)), line) for line in lines]
        answer = self.session.post(self.ingest, json=events, timeout=30,
                                   headers={"Content-Type": "application/cloudevents-batch+json"})
        self.ingest_statuses.append(answer.status_code)


def _not_firing(states: dict[str, str], names: set[str]) -> dict[str, str]:
    return {n: s for n, s in states.items() if n in names}


def test_alerts_fire_when_lines_go_bad_and_the_store_goes_down(tmp_path, monkeypatch):
    tool("prometheus")
    weed = Seaweed(tmp_path)
    weed.start()
    processes: list[FunctionProcess] = []
    prometheus = None
    try:
        env = CREDENTIALS | {"AWS_ENDPOINT_URL": weed.endpoint}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        uri = f"s3://{BUCKET}/alerts"
        built = build_published(uri, small_world_lines(users=60, movies=50), partitions=2)
        run = load_run(open_store(uri), built["run"].run_id)
        names = ("ingest", "precompute", "recommend")
        processes = [FunctionProcess(n, store=uri, env=env | {"MOVIEREC_RELOAD_SECONDS": "1"}) for n in names]
        with ThreadPoolExecutor(3) as pool:  # gunicorn starts in ~2 s each: in parallel
            list(pool.map(lambda p: p.start(), processes))
        ingest, precompute, recommend = processes
        prometheus = Prometheus(tmp_path / "prometheus", {n: p.url.removeprefix("http://") for n, p in zip(names, processes)},
                                speed_up((MONITORING / "alerts.yaml").read_text(), 60))
        prometheus.start()
        traffic = Traffic(ingest.url, recommend.url, [1000 + i for i in range(60)])

        # Healthy: every target is up and no fault alert is even pending.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            traffic.tick()
            time.sleep(0.3)
        up = {r["metric"]["function"]: r["value"][1] for r in prometheus.query("up")}
        assert up == {"ingest": "1", "precompute": "1", "recommend": "1"}
        assert prometheus.query("sum(movierec_recommend_answers_total)"), "recommend's answers are not scraped"
        assert not _not_firing(prometheus.alerts(), FAULT_ALERTS)

        # Bad lines: quarantined (answered 200), and the quarantine alert fires.
        traffic.bad_lines = True
        states = prometheus.wait_firing({"IngestQuarantineHigh"}, timeout=60, while_waiting=traffic.tick)
        assert states.get("IngestQuarantineHigh") == "firing", states
        assert set(traffic.ingest_statuses) == {200}
        traffic.bad_lines = False

        # The store goes down: ingest and precompute fail with 5xx, recommend cannot reload but still answers.
        weed.stop()

        def during_outage() -> None:
            traffic.tick()
            headers, body = to_binary(partition_event(run, 0))
            assert requests.post(precompute.url, data=body, headers=headers, timeout=30).status_code == 503

        outage = len(traffic.ingest_statuses)
        expected = {"IngestFailing", "PrecomputeFailing", "RecommendReloadFailing"}
        states = prometheus.wait_firing(expected, timeout=60, while_waiting=during_outage)
        assert {n: states.get(n) for n in expected} == dict.fromkeys(expected, "firing"), states
        assert set(traffic.ingest_statuses[outage:]) == {503}
        assert set(traffic.recommend_statuses) == {200}
        assert not _not_firing(states, {"RecommendUnavailable", "RecommendErrors", "RecommendSlow"})
    finally:
        if prometheus:
            prometheus.stop()
        for process in processes:
            process.stop()
        weed.stop()


@pytest.fixture(autouse=True)
def _bounded(request):
    """The whole fault sequence is budgeted at 3 minutes; pytest-timeout stops a hang."""
    request.node.add_marker(pytest.mark.timeout(180))
