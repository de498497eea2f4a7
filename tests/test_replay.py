"""`movierec replay`: files or MovieLens to an ingest URL, singly or batched, paced, with a summary line."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from movierec.events import KINDS_STORED, event_keys
from movierec.processes import FunctionProcess
from movierec.store import open_store
from tests.conftest import small_world_lines

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`


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
            [sys.executable, "-m", "pipelines.cli", "replay", str(path), "--url", ingest.url,
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
            [sys.executable, "-m", "pipelines.cli", "replay", "--movielens", str(folder), "--url", ingest.url,
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


def test_two_files_with_one_name_lose_nothing_and_a_replay_again_adds_nothing(tmp_path):
    """Rotated logs share a basename (so the CloudEvent source) and line numbers: ids must still differ."""
    lines = [f"2026-11-01T10:{i // 60:02d}:{i % 60:02d},{i},GET /rate/m{i % 7}+2001={1 + i % 5}" for i in range(100)]
    paths = []  # only ratings: one batch file per replay, named the same when named by (source, id) alone
    for folder, part in (("a", lines[:50]), ("b", lines[50:])):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "stream.log")
        paths[-1].write_text("\n".join(part) + "\n")
    uri = str(tmp_path / "store")

    def run(path):
        done = subprocess.run([sys.executable, "-m", "pipelines.cli", "replay", str(path), "--url", ingest.url],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    with FunctionProcess("ingest", store=uri) as ingest:
        run(paths[0])
        run(paths[1])
        assert stored(uri) == 100
        files = open_store(uri).list("events")
        run(paths[0])  # the same file again is a redelivery: same events, same batch, no new file
        assert open_store(uri).list("events") == files
    store = open_store(uri)
    rows = [r for kind in KINDS_STORED for k in event_keys(store, kind) for r in store.get_parquet(k).to_pylist()]
    assert len({(r["event_source"], r["event_id"]) for r in rows}) == 100


def test_line_ids_name_place_and_content(tmp_path):
    from movierec.replay import file_lines, line_id

    assert line_id("s", 0, "a") == line_id("s", 0, b"a")  # deterministic across processes
    assert len({line_id("s", 0, "a"), line_id("s", 1, "a"), line_id("s", 0, "b"), line_id("t", 0, "a")}) == 4
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "stream.log").write_bytes(b"same line\nbad \xff byte\n")
    first, second = (list(file_lines([tmp_path / f / "stream.log"])) for f in ("a", "b"))
    assert [line for _, line in first] == ["same line", "bad \udcff byte"]
    assert not {i for i, _ in first} & {i for i, _ in second}  # same name, same lines: still different events
    assert list(file_lines([tmp_path / "a" / "stream.log"])) == first
