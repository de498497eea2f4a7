"""recommend through functions-framework's test client: every row of SPEC §2."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import build_published, seen_by_user, small_world_lines

ANSWER = re.compile(r"[^,\s]+(,[^,\s]+){19}")


@pytest.fixture(scope="module")
def lines():
    return small_world_lines()


def test_before_anything_is_published(tmp_path, recommend_client):
    client = recommend_client(str(tmp_path / "empty"))
    answer = client.get("/recommend/1")
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert "published" in answer.json()["error"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503


def test_answers_after_publish(store_uri, lines, recommend_client):
    built = build_published(store_uri, lines)
    client = recommend_client(store_uri)
    seen = seen_by_user(lines)
    for user in sorted(seen)[:40]:
        answer = client.get(f"/recommend/{user}")
        assert answer.status_code == 200
        text = answer.text
        assert ANSWER.fullmatch(text), text
        movies = text.split(",")
        assert len(set(movies)) == 20
        assert not set(movies) & seen[user], f"user {user} got a movie already seen"
        assert answer.headers["X-Recs-Run"] == built["run"].run_id
        assert answer.headers["X-Model-Version"] == built["model"]["version"]
        assert answer.headers["X-Variant"] == "A"
    assert client.get("/readyz").status_code == 200


def test_a_fresh_instance_is_ready_at_its_first_probe(tmp_path, lines, recommend_client):
    """Knative's probe may be a worker's very first request: it waits for the first read of CURRENT
    (at most 2 s) instead of answering 503 while the publication is a few milliseconds away."""
    uri = str(tmp_path / "store")
    build_published(uri, lines)
    for _ in range(3):
        assert recommend_client(uri).get("/readyz").status_code == 200


def test_json_answer_and_popular_fallback(store_uri, lines, recommend_client):
    built = build_published(store_uri, lines)
    client = recommend_client(store_uri)
    known = min(seen_by_user(lines))
    body = client.get(f"/recommend/{known}", headers={"Accept": "application/json"}).json()
    assert body["user_id"] == known and body["source"] == "personalized" and len(body["movies"]) == 20
    assert body["model_version"] == built["model"]["version"] and body["variant"] == "A"
    new = client.get("/recommend/123456789012", headers={"Accept": "application/json"}).json()
    assert new["source"] == "popular" and len(new["movies"]) == 20
    text = client.get(f"/recommend/{known}").text
    assert body["movies"] == text.split(",")  # the same answer in either form
    for accept in ("text/html, Application/JSON;q=0.9", "application/json, */*"):  # as browsers and clients send it
        answer = client.get(f"/recommend/{known}", headers={"accept": accept})
        assert answer.headers["Content-Type"] == "application/json" and answer.json() == body
    for accept in ("text/plain", "*/*", ""):
        assert client.get(f"/recommend/{known}", headers={"Accept": accept}).text == text


@pytest.mark.parametrize(
    "user", ["-1", "abc", "1.5", "1e3", "%D9%A1%D9%A2", "9223372036854775808", "1" * 40, "+5", " 5", "5/extra"]
)
def test_bad_user_ids_are_400_with_a_reason(tmp_path, user, recommend_client):
    client = recommend_client(str(tmp_path / "empty"))
    answer = client.get(f"/recommend/{user}")
    assert answer.status_code == 400
    assert "user id" in answer.json()["error"]


def test_largest_user_id_is_accepted(tmp_path, recommend_client):
    answer = recommend_client(str(tmp_path / "empty")).get("/recommend/9223372036854775807")
    assert answer.status_code == 503  # valid id; nothing is published


def test_metrics_count_answers_by_source(store_uri, lines, recommend_client):
    build_published(store_uri, lines)
    client = recommend_client(store_uri)
    client.get("/recommend/999999999")
    text = client.get("/metrics").text
    assert re.search(r'movierec_recommend_answers_total\{source="popular",status="200",variant="A"\} [1-9]', text)
    assert "movierec_recommend_request_seconds_bucket" in text
    assert re.search(r"movierec_recommend_published_run_age_seconds \d", text)


def test_new_publication_is_picked_up_without_restart(tmp_path, lines, recommend_client):
    uri = str(tmp_path / "store")
    first = build_published(uri, lines)
    client = recommend_client(uri)
    assert client.get("/recommend/1").headers["X-Recs-Run"] == first["run"].run_id
    second = build_published(uri, lines + ["2026-12-30T10:00:00,1,GET /rate/x+2001=5"])
    deadline = time.monotonic() + 10
    while client.get("/recommend/1").headers["X-Recs-Run"] != second["run"].run_id:
        assert time.monotonic() < deadline, "recommend did not pick up the new run"
        time.sleep(0.1)


@pytest.mark.parametrize("user", ["0" * 32 + "1", "0" * 100 + "9223372036854775807", "0"])
def test_zero_padded_user_ids_are_valid(tmp_path, user, recommend_client):
    answer = recommend_client(str(tmp_path / "empty")).get(f"/recommend/{user}")
    assert answer.status_code == 503  # valid id; nothing is published


@pytest.mark.parametrize("user", ["0" * 30 + "9223372036854775808", "9" * 5000, ""])
def test_long_or_empty_user_ids_are_400(tmp_path, user, recommend_client):
    answer = recommend_client(str(tmp_path / "empty")).get(f"/recommend/{user}")
    assert answer.status_code == 400 and "user id" in answer.json()["error"]


def test_a_padded_id_gets_the_same_answer(tmp_path, lines, recommend_client):
    uri = str(tmp_path / "store")
    build_published(uri, lines)
    client = recommend_client(uri)
    user = min(seen_by_user(lines))
    assert client.get(f"/recommend/{user:033d}").text == client.get(f"/recommend/{user}").text


def _wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_current_without_variants_is_ignored(tmp_path, lines, recommend_client):
    from movierec.recs import CURRENT_KEY
    from movierec.store import open_store

    uri = str(tmp_path / "store")
    built = build_published(uri, lines)
    store = open_store(uri)
    client = recommend_client(uri)
    assert client.get("/recommend/1").headers["X-Recs-Run"] == built["run"].run_id
    good = store.get(CURRENT_KEY)
    store.put(CURRENT_KEY, json.dumps(json.loads(good) | {"variants": []}).encode())
    _wait_for(lambda: re.search(r'reloads_total\{outcome="error"\} [1-9]', client.get("/metrics").text))
    answer = client.get("/recommend/1")  # still the publication it had
    assert answer.status_code == 200 and answer.headers["X-Recs-Run"] == built["run"].run_id
    assert client.get("/readyz").status_code == 200
    cold = recommend_client(uri)  # nothing to keep serving: not ready
    assert cold.get("/readyz").status_code == 503
    assert cold.get("/recommend/1").status_code == 503


def _shard_path(uri: str, run_id: str, partition: int, partitions: int) -> Path:
    from movierec.recs import shard_key

    return Path(uri) / shard_key(run_id, partition, partitions)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_cold_instance_answers_the_users_of_a_lost_shard_with_the_fallback(tmp_path, lines, recommend_client, damage):
    from movierec.partitioning import partition_of

    uri = str(tmp_path / "store")
    run = build_published(uri, lines, partitions=4)["run"]
    users = sorted(seen_by_user(lines))[:60]
    lost = [u for u in users if partition_of(u, 4) == 2]
    path = _shard_path(uri, run.run_id, 2, 4)
    whole = path.read_bytes()
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(whole[: len(whole) // 2])
    client = recommend_client(uri)
    for user in users:
        body = client.get(f"/recommend/{user}", headers={"Accept": "application/json"}).json()
        assert body["source"] == ("popular" if user in lost else "personalized") and len(body["movies"]) == 20
    ready = client.get("/readyz")
    assert ready.status_code == 200 and f"degraded: shards {run.run_id}/2 cannot be loaded" in ready.text
    _wait_for(lambda: re.search(r"movierec_recommend_unavailable_shards 1\.0", client.get("/metrics").text))
    path.write_bytes(whole)  # restored (or republished): the next reload finds it
    _wait_for(lambda: client.get(f"/recommend/{lost[0]}", headers={"Accept": "application/json"}).json()["source"]
              == "personalized")
    assert client.get("/readyz").text == "ready"
    assert re.search(r"movierec_recommend_unavailable_shards 0\.0", client.get("/metrics").text)


def test_an_unexpected_error_is_a_counted_500_with_a_generic_message(tmp_path, lines, recommend_client, caplog):
    """A shard that breaks the schema (no `movies` column) is no fault recommend expects: a bug
    somewhere. Its users get a JSON 500 that says nothing of the cause, the log has the traceback,
    and the answers metric counts it (the alert on 5xx sees it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from movierec.partitioning import partition_of

    uri = str(tmp_path / "store")
    run = build_published(uri, lines, partitions=4)["run"]
    pq.write_table(pa.table({"user_id": pa.array([1], pa.int64())}), _shard_path(uri, run.run_id, 1, 4))
    client = recommend_client(uri)
    user = next(u for u in sorted(seen_by_user(lines)) if partition_of(u, 4) == 1)
    counted = re.compile(r'movierec_recommend_answers_total\{source="none",status="500",variant="none"\} (\S+)')
    before = float((counted.search(client.get("/metrics").text) or [0, 0])[1])  # one registry for every test
    answer = client.get(f"/recommend/{user}")
    assert answer.status_code == 500 and answer.json() == {"error": "internal error"}
    assert any(r.levelname == "ERROR" and r.exc_info and "movies" in str(r.exc_info[1]) for r in caplog.records)
    assert float(counted.search(client.get("/metrics").text)[1]) == before + 1
