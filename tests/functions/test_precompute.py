"""precompute through functions-framework's test client with real CloudEvents."""

from __future__ import annotations

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
