"""With several gunicorn workers, /metrics sums every worker's counts (prometheus multiprocess mode)."""

from __future__ import annotations

import re

import pytest
import requests

from movierec.processes import FunctionProcess
from movierec.replay import replay
from tests.conftest import build_published, small_world_lines

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`


def test_two_workers_report_one_total(tmp_path):
    lines = small_world_lines(users=20, movies=20)[:400]
    env = {"WORKERS": "2", "THREADS": "8", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    with FunctionProcess("ingest", store=str(tmp_path / "store"), env=env) as ingest:
        stats = replay(ingest.url, lines, source="mp", batch_size=10, concurrency=8)
        assert stats.requests == 40
        pages = [requests.get(f"{ingest.url}/metrics", timeout=5).text for _ in range(4)]
    for page in pages:  # whichever worker answers, the total is the same
        total = re.search(r'movierec_ingest_requests_total\{status="200"\} (\d+)', page)
        assert total and float(total.group(1)) == 40


def test_two_recommend_workers_report_every_answer(tmp_path):
    """Each answer is counted as it is made, in its worker's file: the next scrape sums them all."""
    uri = str(tmp_path / "store")
    build_published(uri, small_world_lines(users=40, movies=30), partitions=2)
    env = {"WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    with FunctionProcess("recommend", store=uri, env=env) as recommend:
        answers = [requests.get(f"{recommend.url}/recommend/{1000 + i % 60}", timeout=10) for i in range(300)]
        assert [a.status_code for a in answers] == [200] * 300
        page = requests.get(f"{recommend.url}/metrics", timeout=5).text
    answered = sum(float(n) for n in re.findall(r'movierec_recommend_answers_total\{[^}]*status="200"[^}]*\} (\S+)', page))
    timed = re.search(r"movierec_recommend_request_seconds_count (\S+)", page)
    assert answered == 300 and timed and float(timed.group(1)) == 300, page
