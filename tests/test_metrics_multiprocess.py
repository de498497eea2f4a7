"""With several gunicorn workers, /metrics sums every worker's counts (prometheus multiprocess mode)."""

from __future__ import annotations

import re

import requests

from movierec.processes import FunctionProcess
from movierec.replay import replay
from tests.conftest import small_world_lines


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
