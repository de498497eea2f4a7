"""precompute through functions-framework's test client with real CloudEvents."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cloudevents.conversion import to_binary, to_structured
from functions_framework import create_app

from movierec.partitioning import partitions_of
from movierec.recs import shard_key
from movierec.store import open_store
from pipelines.fanout import partition_event, start_run
from tests.conftest import REPO, build_published, small_world_lines


def test_partition_event_writes_its_shard_and_redelivery_rewrites_it_identically(store_uri, monkeypatch):
    built = build_published(store_uri, small_world_lines())
    store = open_store(store_uri)
    run = start_run(store, built["model"]["version"], partitions=3, top_k=20)
    monkeypatch.setenv("MOVIEREC_STORE", store_uri)
    client = create_app("precompute", str(REPO / "functions/precompute/main.py")).test_client()
    headers, body = to_binary(partition_event(run, 1))
    assert client.post("/", headers=headers, data=body).status_code == 200
    key = shard_key(run.run_id, 1, 3)
    first = store.get(key)
    table = store.get_parquet(key)
    assert table.num_rows > 0
    assert set(partitions_of(table["user_id"].to_numpy(), 3).tolist()) == {1}
    headers, body = to_structured(partition_event(run, 1))
    assert client.post("/", headers=headers, data=body).status_code == 200
    assert store.get(key) == first


def test_bad_requests_are_400(tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIEREC_STORE", str(tmp_path))
    client = create_app("precompute", str(REPO / "functions/precompute/main.py")).test_client()
    assert client.post("/", data=b"nope", headers={"Content-Type": "text/plain"}).status_code == 400
    base = {"ce-specversion": "1.0", "ce-source": "t", "ce-id": "1", "Content-Type": "application/json"}
    wrong_type = base | {"ce-type": "other"}
    assert client.post("/", headers=wrong_type, data=b"{}").status_code == 400
    ok_type = base | {"ce-type": "movierec.precompute.requested.v1"}
    assert client.post("/", headers=ok_type, data=b'{"run_id": "r"}').status_code == 400
    evil = b'{"run_id": "../../x", "model_version": "m", "partition": 0, "partitions": 1}'
    assert client.post("/", headers=ok_type, data=evil).status_code == 400
    outside = b'{"run_id": "r", "model_version": "m", "partition": 5, "partitions": 2}'
    assert client.post("/", headers=ok_type, data=outside).status_code == 400
    assert open_store(str(tmp_path)).list("recs") == []


def _send(client, run, partition: int):
    headers, body = to_binary(partition_event(run, partition))
    return client.post("/", headers=headers, data=body)


def _post(client, data: dict):
    headers = {"ce-specversion": "1.0", "ce-source": "t", "ce-id": "1", "Content-Type": "application/json",
               "ce-type": "movierec.precompute.requested.v1"}
    return client.post("/", headers=headers, data=json.dumps(data))


def test_the_run_decides_and_an_event_that_contradicts_it_changes_nothing(tmp_path, monkeypatch):
    """A stray, duplicated or foreign event must not overwrite a published shard nor start a run."""
    uri = str(tmp_path / "store")
    run = build_published(uri, small_world_lines(), partitions=2)["run"]
    store = open_store(uri)
    monkeypatch.setenv("MOVIEREC_STORE", uri)
    client = create_app("precompute", str(REPO / "functions/precompute/main.py")).test_client()
    key = shard_key(run.run_id, 0, 2)
    published = store.get(key)
    for change in ({"top_k": 2}, {"partitions": 8}, {"model_version": "20260101T000000Z-other-abcdef"}):
        answer = _send(client, replace(run, **change), 0)
        assert answer.status_code == 400 and "run.json" in answer.get_json()["error"], change
    foreign = _send(client, replace(run, run_id="no-such-run"), 0)
    assert foreign.status_code == 400 and "does not exist" in foreign.get_json()["error"]
    assert store.get(key) == published and store.list("recs/no-such-run") == []
    assert sorted(store.list(f"recs/{run.run_id}")) == sorted([key, shard_key(run.run_id, 1, 2),
                                                               f"recs/{run.run_id}/run.json"])
    # Without top_k the run's is used; a redelivered partition still rewrites the identical shard.
    fields = {"run_id": run.run_id, "model_version": run.model_version, "partition": 0, "partitions": 2}
    assert _post(client, fields).status_code == 200
    assert _post(client, fields | {"top_k": run.top_k}).status_code == 200
    assert store.get(key) == published


def test_dot_ids_and_booleans_are_400(tmp_path, monkeypatch):
    uri = str(tmp_path / "store")
    run = build_published(uri, small_world_lines(), partitions=2)["run"]
    monkeypatch.setenv("MOVIEREC_STORE", uri)
    client = create_app("precompute", str(REPO / "functions/precompute/main.py")).test_client()
    good = {"run_id": run.run_id, "model_version": run.model_version, "partition": 1, "partitions": 2}
    before = open_store(uri).list("recs")
    for bad in ({"run_id": ".."}, {"run_id": "."}, {"run_id": "-x"}, {"model_version": ".."},
                {"partition": True}, {"partitions": True}, {"top_k": True}, {"partition": "1"}, {"partition": 1.0},
                {"run_id": 7}):
        answer = _post(client, good | bad)
        assert answer.status_code == 400, (bad, answer.status_code)
        assert answer.get_json()["error"], bad
    assert open_store(uri).list("recs") == before


def test_a_run_json_that_is_not_a_run_is_400_not_500(tmp_path):
    from movierec.errors import BadInput
    from movierec.precompute import precompute_partition
    from movierec.store import LocalStore

    store = LocalStore(tmp_path)
    for text in (b"{not json", b'{"run_id": "r1", "unexpected": 1}'):
        store.put("recs/r1/run.json", text)
        with pytest.raises(BadInput, match="not a run description"):
            precompute_partition(store, run_id="r1", partition=0)
    assert store.list("recs/r1") == ["recs/r1/run.json"]
