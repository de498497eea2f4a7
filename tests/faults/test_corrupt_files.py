"""Corrupt or truncated artifacts: a shard, the snapshot file, a model file, run.json and CURRENT.
publish refuses a run it cannot read whole (naming the file) and leaves recs/CURRENT as it is; the
precompute function answers 4xx/5xx (logged, counted) and writes no shard; a garbled CURRENT does not
keep a good run from being published."""

from __future__ import annotations

import json

import pytest
import requests
from cloudevents.conversion import to_binary

from movierec.errors import InvalidRun
from movierec.processes import FunctionProcess
from movierec.recs import CURRENT_KEY, read_current, run_key, shard_key
from movierec.snapshots import interactions_key
from movierec.store import open_store
from pipelines.fanout import partition_event, run_local, start_run
from pipelines.publish import publish, rollback
from tests.conftest import build_published, small_world_lines


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A published run A and a complete, unpublished run B on a local store."""
    uri = str(tmp_path_factory.mktemp("corrupt") / "store")
    built = build_published(uri, small_world_lines(users=60, movies=40), partitions=2)
    store = open_store(uri)
    run_b = start_run(store, built["model"]["version"], partitions=2, top_k=20)
    run_local(store, run_b)
    return uri, built, run_b


@pytest.fixture
def damage(world):
    """Replace a key's bytes for one test, and put them back after."""
    store = open_store(world[0])
    saved: dict[str, bytes] = {}

    def apply(key: str, how: str) -> None:
        saved.setdefault(key, store.get(key))
        data = saved[key]
        store.put(key, {"truncated": data[: len(data) // 2], "garbage": b"\x00garbage" * 7, "empty": b""}[how])

    yield apply
    for key, data in saved.items():
        store.put(key, data)


def model_file(store, version: str) -> str:
    return next(k for k in store.list(f"models/{version}/weights"))


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize("which", ["shard", "snapshot", "model", "model ids", "run.json"])
def test_publish_refuses_a_run_with_an_unreadable_file_and_names_it(world, damage, which, how):
    uri, built, run_b = world
    store = open_store(uri)
    key = {"shard": shard_key(run_b.run_id, 1, 2), "snapshot": interactions_key(built["snapshot"]["id"]),
           "model": model_file(store, run_b.model_version), "model ids": f"models/{run_b.model_version}/users.parquet",
           "run.json": run_key(run_b.run_id)}[which]
    before = store.get(CURRENT_KEY)
    damage(key, how)
    with pytest.raises(InvalidRun) as info:
        publish(store, [run_b.run_id])
    assert key.rsplit("/", 1)[-1] in str(info.value) or run_b.run_id in str(info.value)
    assert store.get(CURRENT_KEY) == before


@pytest.mark.integration  # starts the precompute function: not in `make test-fast`
@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize("which", ["snapshot", "model", "run.json"])
def test_precompute_answers_an_unreadable_input_without_writing_a_shard(world, damage, tmp_path, which, how):
    uri, built, run_b = world
    store = open_store(uri)
    key = {"snapshot": interactions_key(built["snapshot"]["id"]), "model": model_file(store, run_b.model_version),
           "run.json": run_key(run_b.run_id)}[which]
    target = shard_key(run_b.run_id, 0, 2)
    shard = store.get(target)
    store.put(target, b"placeholder")  # so that a write would show
    damage(key, how)
    try:
        with FunctionProcess("precompute", store=uri, log=tmp_path / "precompute.log") as precompute:
            headers, body = to_binary(partition_event(run_b, 0))
            answer = requests.post(precompute.url, headers=headers, data=body, timeout=60)
            metrics = requests.get(f"{precompute.url}/metrics", timeout=10).text
        assert answer.status_code in (400, 500), answer.text
        assert "error" in answer.json() and uri not in answer.text
        assert 'movierec_precompute_partitions_total{outcome="error"} 1.0' in metrics
        assert store.get(target) == b"placeholder"
    finally:
        store.put(target, shard)


@pytest.mark.parametrize("garbled", [b"{trunc", b"", b"[]", b'{"variants": "A"}', b'{"variants": [{"name": 1}]}'])
def test_a_garbled_current_is_replaced_by_the_next_publish_and_rollback_says_why_it_cannot(world, damage, garbled):
    uri, _, run_b = world
    store = open_store(uri)
    damage(CURRENT_KEY, "empty")
    store.put(CURRENT_KEY, garbled)
    with pytest.raises(InvalidRun) as info:
        rollback(store)
    assert "recs/CURRENT" in str(info.value)
    assert store.get(CURRENT_KEY) == garbled
    publish(store, [run_b.run_id])
    current = read_current(store)
    assert [v["run_id"] for v in current["variants"]] == [run_b.run_id] and current["history"] == []


def test_an_intact_run_is_published_after_all(world):
    uri, _, run_b = world
    store = open_store(uri)
    publish(store, [run_b.run_id])
    assert json.loads(store.get(CURRENT_KEY))["variants"][0]["run_id"] == run_b.run_id
