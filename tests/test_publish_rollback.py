"""rollback steps back through a bounded history, refuses runs that are gone; recommend answers 503
for a shard that cannot be loaded."""

from __future__ import annotations

import json

import boto3
import pytest

from movierec.errors import InvalidRun
from movierec.partitioning import partition_of
from movierec.recs import CURRENT_KEY, HISTORY, read_current, run_key, shard_key
from movierec.store import open_store
from pipelines.fanout import run_local, start_run
from pipelines.publish import publish, rollback
from tests.conftest import build_published, small_world_lines


@pytest.fixture(scope="module")
def lines():
    return small_world_lines()


def _served(current: dict) -> list[str]:
    return [v["run_id"] for v in current["variants"]]


def _new_run(store, model_version):
    run = start_run(store, model_version, partitions=2, top_k=20)
    run_local(store, run)
    return run


def test_each_rollback_steps_one_further_back(store_uri, lines):
    a = build_published(store_uri, lines, partitions=2)["run"]
    store = open_store(store_uri)
    b, c = _new_run(store, a.model_version), _new_run(store, a.model_version)
    publish(store, [b.run_id])
    publish(store, [c.run_id])
    assert _served(rollback(store)) == [b.run_id] == _served(read_current(store))
    # The A/B report still finds the publication that was replaced, even by a rollback.
    assert _served(read_current(store)["previous"]) == [c.run_id]
    assert _served(rollback(store)) == [a.run_id]
    before = store.get(CURRENT_KEY)
    with pytest.raises(InvalidRun, match="nothing to roll back to"):
        rollback(store)
    assert store.get(CURRENT_KEY) == before
    publish(store, [c.run_id])  # a publish after rollbacks goes back to what it replaced
    assert _served(rollback(store)) == [a.run_id]


def test_the_history_is_bounded(local_store, lines):
    run = build_published(local_store.uri, lines, partitions=2)["run"]
    for _ in range(HISTORY + 3):
        publish(local_store, [run.run_id], validate=False)
    assert len(read_current(local_store)["history"]) == HISTORY
    for _ in range(HISTORY):
        rollback(local_store)
    with pytest.raises(InvalidRun, match="nothing to roll back to"):
        rollback(local_store)


def test_a_current_written_before_the_history_is_read(local_store, lines):
    a = build_published(local_store.uri, lines, partitions=2)["run"]
    b = _new_run(local_store, a.model_version)
    publish(local_store, [b.run_id])
    current = read_current(local_store)
    old = {k: current[k] for k in ("variants", "published_at", "previous")}  # as the old code wrote it
    local_store.put(CURRENT_KEY, json.dumps(old).encode())
    assert _served(rollback(local_store)) == [a.run_id]
    local_store.put(CURRENT_KEY, json.dumps(old | {"previous": None}).encode())
    with pytest.raises(InvalidRun, match="nothing to roll back to"):
        rollback(local_store)


@pytest.mark.parametrize("gone", ["shard", "run.json"])
def test_rollback_refuses_a_run_that_is_gone_and_says_which(store_uri, lines, gone):
    """A lifecycle rule deletes old runs: rolling back onto one would answer every user of it 503."""
    a = build_published(store_uri, lines, partitions=2)["run"]
    store = open_store(store_uri)
    b = _new_run(store, a.model_version)
    publish(store, [b.run_id])
    before = store.get(CURRENT_KEY)
    key = shard_key(a.run_id, 1, 2) if gone == "shard" else run_key(a.run_id)
    _delete(store, key)
    with pytest.raises(InvalidRun, match=rf"{a.run_id}: .*(\[1\]|run\.json)"):
        rollback(store)
    assert store.get(CURRENT_KEY) == before


def _delete(store, key: str) -> None:
    """As the lifecycle rule does: behind the store's back, with an S3 client of its own (endpoint and
    credentials from the environment, as the store's)."""
    if hasattr(store, "root"):
        (store.root / key).unlink()
    else:
        boto3.client("s3").delete_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}".lstrip("/"))
    assert not store.exists(key)


@pytest.mark.parametrize("damage", ["deleted", "corrupt"])
def test_a_shard_that_cannot_be_loaded_gives_its_users_the_fallback_without_the_store_path(
    local_store, lines, recommend_client, damage
):
    """Its users get the popular fallback (not a 503 for as long as the shard is gone); readiness
    and a metric say so (tests/functions/test_recommend.py)."""
    run = build_published(local_store.uri, lines, partitions=2)["run"]
    key = shard_key(run.run_id, 1, 2)
    if damage == "deleted":
        (local_store.root / key).unlink()
    else:
        local_store.put(key, b"not parquet")
    client = recommend_client(local_store.uri)
    users = sorted({int(r.split(",")[1]) for r in lines if r.split(",")[1].isdigit()})
    json_answer = {"Accept": "application/json"}
    answer = client.get(f"/recommend/{next(u for u in users if partition_of(u, 2) == 1)}", headers=json_answer)
    assert answer.status_code == 200 and answer.json()["source"] == "popular"
    assert str(local_store.root) not in answer.text and "recs/" not in answer.text
    other = client.get(f"/recommend/{next(u for u in users if partition_of(u, 2) == 0)}", headers=json_answer)
    assert other.status_code == 200 and other.json()["source"] == "personalized"
