"""`movierec replay`: files or MovieLens to an ingest URL, singly or batched, paced, with a summary line."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from movierec.events import KINDS_STORED, event_keys
from movierec.processes import FunctionProcess
from movierec.store import open_store
from tests.conftest import small_world_lines


def stored(uri: str) -> int:
    store = open_store(uri)
    return sum(store.get_parquet(k).num_rows for kind in KINDS_STORED for k in event_keys(store, kind))


def test_replay_a_file_singly_at_a_chosen_rate(tmp_path):
    path = tmp_path / "stream.log"
    path.write_text("\n".join(small_world_lines(users=10, movies=10)[:150]) + "\nnot a line\n")
    uri = str(tmp_path / "store")
    with FunctionProcess("ingest", store=uri) as ingest:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "movierec.cli", "replay", str(path), "--url", ingest.url,
             "--batch-size", "1", "--concurrency", "4", "--rate", "100"],
            capture_output=True, text=True, timeout=120,
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert re.search(r"151 lines in 151 requests, .* lines/s; latency p50 [\d.]+ ms, p99 [\d.]+ ms", done.stdout)
    assert elapsed >= 1.4  # 151 lines at 100 lines/s
    assert stored(uri) == 151


def test_replay_movielens_in_batches(tmp_path):
    from tests.conftest import dataset

    folder = dataset("ml-100k")
    uri = str(tmp_path / "store")
    with FunctionProcess("ingest", store=uri) as ingest:
        done = subprocess.run(
            [sys.executable, "-m", "movierec.cli", "replay", "--movielens", str(folder), "--url", ingest.url,
             "--batch-size", "2000"],
            capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert "100,000 lines in 50 requests" in done.stdout
    assert stored(uri) == 100_000


def test_replay_stops_on_a_refused_request(tmp_path):
    """A 4xx means what was sent is wrong: retrying cannot help, so the replay stops and says so."""
    from movierec.errors import MovierecError
    from movierec.replay import replay

    with FunctionProcess("recommend", store=str(tmp_path / "store")) as not_ingest:
        try:
            replay(f"{not_ingest.url}/not-here", ["2026-11-01T10:00:00,1,GET /rate/x+2001=5"], batch_size=1)
        except MovierecError as exc:
            assert "answered 404" in str(exc)
        else:
            raise AssertionError("a 4xx answer must stop the replay")
