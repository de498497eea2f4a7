"""The whole loop from an empty store, through real function processes over HTTP."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests

from movierec.processes import FunctionProcess
from pipelines.pipeline import run_loop
from tests.conftest import dataset, seen_by_user, small_world_lines

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`

ANSWER = re.compile(r"[^,\s]+(,[^,\s]+){19}")


def check_answers(store_uri: str, seen: dict[int, set[str]], users: list[int]) -> None:
    with FunctionProcess("recommend", store=store_uri) as recommend:
        session = requests.Session()
        for user in users:
            answer = session.get(f"{recommend.url}/recommend/{user}", timeout=10)
            assert answer.status_code == 200, answer.text
            text = answer.text
            assert ANSWER.fullmatch(text), f"user {user}: {text!r}"
            movies = text.split(",")
            assert len(set(movies)) == 20
            assert not set(movies) & seen.get(user, set()), f"user {user} got a movie already seen"
            assert answer.headers["X-Recs-Run"] and answer.headers["X-Model-Version"]
        new_user = session.get(f"{recommend.url}/recommend/987654321", headers={"Accept": "application/json"})
        assert new_user.json()["source"] == "popular"


def test_loop_on_the_synthetic_stream_with_s3(s3_uri):
    lines = small_world_lines(users=300, movies=150)
    result = run_loop(s3_uri, lines, total_lines=len(lines), source="e2e/synthetic", partitions=4)
    assert result.users == 300
    assert result.model["kind"] == "forecast-dae"  # the PyTorch network, scored by precompute processes
    evaluated = result.model["metrics"]["results"]
    assert {"model", "popularity", "recent popularity", "EASE"} <= set(evaluated)
    assert all(0 < row["ndcg@20"] <= 1 for row in evaluated.values())
    seen = seen_by_user(lines)
    check_answers(s3_uri, seen, sorted(seen)[:100])


def test_loop_on_movielens_latest_small(tmp_path):
    from movierec.movielens import stream_lines

    lines = list(stream_lines(dataset("ml-latest-small")))
    uri = str(tmp_path / "store")
    result = run_loop(uri, lines, total_lines=len(lines), source="e2e/ml-latest-small", model_kind="popularity")
    assert result.snapshot["counts"]["users"] == 610
    assert result.replay.lines == len(lines) == 100_836
    seen = seen_by_user(lines)
    check_answers(uri, seen, sorted(seen)[::6])


def test_demo_command_without_serving(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--store", str(tmp_path / "store"), "demo", "--no-serve", "--users", "150"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "built-in synthetic stream" in done.stderr
    assert re.search(r"GET /recommend/\d+ → 200 personalized", done.stderr)
    assert "GET /recommend/999999999 → 200 popular" in done.stderr


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["snapshot", "--help"], ["precompute", "--help"]])
def test_every_command_has_help(args):
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: movierec" in done.stdout
