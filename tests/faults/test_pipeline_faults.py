"""S3 stopped mid-precompute and mid-publish, with a real recommend process watching: no half-written
publication is ever served, and each step succeeds once S3 is back."""

from __future__ import annotations

import time

import pytest
import requests
from cloudevents.conversion import to_binary

from movierec.errors import InvalidRun, StoreUnavailable
from movierec.processes import FunctionProcess
from movierec.recs import CURRENT_KEY
from movierec.store import open_store
from pipelines.fanout import partition_event, start_run
from pipelines.publish import publish
from tests.conftest import build_published, small_world_lines

USERS = [1, 5, 9, 17, 33, 57, 80, 101]


def served_runs(url: str) -> set[str]:
    runs = set()
    for user in USERS:
        answer = requests.get(f"{url}/recommend/{user}", timeout=30)
        assert answer.status_code == 200, answer.text
        runs.add(answer.headers["X-Recs-Run"])
    return runs


def send(url: str, run, partition: int) -> int:
    headers, body = to_binary(partition_event(run, partition))
    return requests.post(url, headers=headers, data=body, timeout=60).status_code


@pytest.fixture
def world(proxied_uri, tmp_path):
    built = build_published(proxied_uri, small_world_lines(users=120, movies=60), partitions=2)
    env = {"MOVIEREC_RELOAD_SECONDS": "0.2"}
    with FunctionProcess("recommend", store=proxied_uri, env=env, log=tmp_path / "recommend.log") as recommend, \
            FunctionProcess("precompute", store=proxied_uri, log=tmp_path / "precompute.log") as precompute:
        assert served_runs(recommend.url) == {built["run"].run_id}
        yield open_store(proxied_uri), built, recommend.url, precompute.url


def wait_for_run(url: str, run_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while served_runs(url) != {run_id}:
        assert time.monotonic() < deadline, f"recommend never served {run_id}"
        time.sleep(0.3)


def test_s3_stopped_mid_precompute(world, s3_proxy):
    store, built, recommend, precompute = world
    run = start_run(store, built["model"]["version"], partitions=4, top_k=20)
    assert send(precompute, run, 0) == 200
    s3_proxy.stop()
    assert send(precompute, run, 1) == 503  # Knative will redeliver it
    with pytest.raises(StoreUnavailable):
        publish(store, [run.run_id])
    assert served_runs(recommend) == {built["run"].run_id}  # what it had, from memory
    s3_proxy.start()
    assert send(precompute, run, 1) == 200 and send(precompute, run, 2) == 200
    with pytest.raises(InvalidRun, match="missing"):  # partition 3 never arrived: a half run is refused
        publish(store, [run.run_id])
    assert served_runs(recommend) == {built["run"].run_id}
    assert send(precompute, run, 3) == 200
    publish(store, [run.run_id])
    wait_for_run(recommend, run.run_id)


@pytest.mark.parametrize("fault", [{"status": 503}, {"hang": 120}, {"status": 403}])
def test_s3_failing_as_publish_replaces_current(world, s3_proxy, fault):
    store, built, recommend, precompute = world
    run = start_run(store, built["model"]["version"], partitions=2, top_k=20)
    assert send(precompute, run, 0) == 200 and send(precompute, run, 1) == 200
    before = store.get(CURRENT_KEY)
    s3_proxy.fail(method="PUT", path="recs/CURRENT", **fault)
    with pytest.raises(StoreUnavailable):
        publish(store, [run.run_id])
    s3_proxy.heal()
    assert store.get(CURRENT_KEY) == before
    assert served_runs(recommend) == {built["run"].run_id}
    publish(store, [run.run_id])
    wait_for_run(recommend, run.run_id)


def test_s3_stopped_while_publish_validates(world, s3_proxy):
    store, built, recommend, precompute = world
    run = start_run(store, built["model"]["version"], partitions=2, top_k=20)
    assert send(precompute, run, 0) == 200 and send(precompute, run, 1) == 200
    before = store.get(CURRENT_KEY)
    s3_proxy.fail(status=503, method="GET", path=f"{run.run_id}/part-1")
    with pytest.raises(StoreUnavailable):
        publish(store, [run.run_id])
    s3_proxy.heal()
    assert store.get(CURRENT_KEY) == before
    publish(store, [run.run_id])
    wait_for_run(recommend, run.run_id)
