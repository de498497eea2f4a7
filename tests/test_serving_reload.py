"""recommend while runs change under it: publish and rollback under load, A/B split, cold start shard by shard."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest
import requests

from movierec import index as index_module
from movierec.index import VariantIndex
from movierec.partitioning import ab_bucket, partition_of, partitions_of
from movierec.processes import FunctionProcess
from movierec.recs import current_variants, read_current
from movierec.serving import RecommendService
from movierec.store import open_store
from pipelines.fanout import run_local, start_run
from pipelines.publish import publish, rollback
from tests.conftest import build_published, small_world_lines

pytestmark = pytest.mark.integration  # starts processes: not in `make test-fast`


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A store with run A published and run B precomputed but not yet published."""
    uri = str(tmp_path_factory.mktemp("serving") / "store")
    built = build_published(uri, small_world_lines(users=300, movies=80), partitions=4)
    store = open_store(uri)
    second = start_run(store, built["model"]["version"], partitions=3, top_k=20)
    run_local(store, second)
    return uri, built, second


def test_the_plain_partition_hash_agrees_with_numpy():
    users = np.concatenate([np.arange(1000), np.random.default_rng(0).integers(0, 2**63 - 1, 1000)])
    for n in (1, 3, 8, 64):
        assert [partition_of(int(u), n) for u in users] == partitions_of(users, n).tolist()


def test_publish_then_rollback_under_load_gives_only_200(two_runs):
    uri, built, second = two_runs
    store = open_store(uri)
    first = built["run"].run_id
    users = [1000 + i for i in range(0, 300, 7)] + [999_999]
    counts: list[Counter] = [Counter() for _ in range(4)]  # one per thread: Counter's += is not atomic
    runs_seen: list[str] = []
    stop = threading.Event()

    def load(offset: int) -> None:
        session, answers = requests.Session(), counts[offset]
        i = offset
        while not stop.is_set():
            reply = session.get(f"{recommend.url}/recommend/{users[i % len(users)]}", timeout=5)
            answers[reply.status_code] += 1
            if reply.status_code == 200 and len(reply.text.split(",")) == 20:
                answers["20 movies"] += 1
            runs_seen.append(reply.headers.get("X-Recs-Run"))
            i += 1

    def served(run_id: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while runs_seen[-1:] != [run_id]:
            assert time.monotonic() < deadline, f"{run_id} not served within {timeout} s"
            time.sleep(0.05)

    with FunctionProcess("recommend", store=uri, env={"MOVIEREC_RELOAD_SECONDS": "0.2"}) as recommend:
        threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        try:
            served(first)
            publish(store, [second.run_id])
            served(second.run_id)
            rollback(store)
            served(first)
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
    answers = sum(counts, Counter())
    assert answers[200] > 100 and set(answers) == {200, "20 movies"}, answers
    assert answers["20 movies"] == answers[200]
    switches = [run for i, run in enumerate(runs_seen) if i == 0 or run != runs_seen[i - 1]]
    assert switches[0] == first and second.run_id in switches and switches[-1] == first


def test_ab_split_is_stable_per_user_and_follows_the_shares(two_runs, recommend_client):
    uri, built, second = two_runs
    store = open_store(uri)
    publish(store, [built["run"].run_id, second.run_id], shares=[0.3, 0.7])
    client = recommend_client(uri, reload_seconds=5)
    variants = {}
    for user in range(1000, 1300):
        reply = client.get(f"/recommend/{user}", headers={"Accept": "application/json"})
        expected = ("A", built["run"].run_id) if ab_bucket(user) < 0.3 else ("B", second.run_id)
        assert (reply.headers["X-Variant"], reply.headers["X-Recs-Run"]) == expected
        assert reply.json()["variant"] == expected[0] and reply.json()["source"] == "personalized"
        variants[user] = expected[0]
    assert all(client.get(f"/recommend/{u}").headers["X-Variant"] == v for u, v in list(variants.items())[:50])
    assert 0.2 < list(variants.values()).count("A") / len(variants) < 0.4
    metrics = client.get("/metrics").text
    assert 'source="personalized",status="200",variant="B"' in metrics
    rollback(store)


def test_a_cold_instance_answers_from_the_one_shard_it_needs(two_runs):
    uri, _built, _ = two_runs
    store = open_store(uri)
    variant = current_variants(read_current(store))[0]
    index = VariantIndex.open(store, variant)
    user = 1005
    assert index.answer(user).source == "personalized" and not index.complete
    assert sum(shard is not None for shard in index.shards) == 1
    assert index.load_all().complete and index.answer(user) == VariantIndex.open(store, variant).answer(user)
    service = RecommendService(store, reload_seconds=60)
    assert service.reload() and service.answer(user).source == "personalized"
    assert service.in_memory and not service.unavailable()
    service.ensure_started()
    service.stop()
    service.thread.join(5)
    assert not service.thread.is_alive()


def test_the_user_table_and_binary_search_find_the_same_answers(two_runs, monkeypatch):
    uri, _, _ = two_runs
    store = open_store(uri)
    variant = current_variants(read_current(store))[0]
    table = VariantIndex.open(store, variant).load_all()
    monkeypatch.setattr(index_module, "DIRECT_SLOTS_PER_USER", 0)  # as if the ids were sparse
    search = VariantIndex.open(store, variant).load_all()
    assert table.user_table is not None and search.user_table is None
    known = np.concatenate([shard.user_ids for shard in table.shards])
    absent = [0, int(known.min()) - 1, int(known.max()) + 1, 10**12, 2**63 - 1]
    for user in [*map(int, known), *absent]:
        answer = table.answer(user)
        assert answer.movies == search.answer(user).movies and answer.text == search.answer(user).text
        assert answer.text == ",".join(answer.movies).encode()
        assert (answer.source == "popular") == (user in absent)


def test_a_user_table_of_int64_slots_finds_the_same_answers(two_runs, monkeypatch):
    """More than 2^31 / partitions users need 64-bit slots: forced here on a small run."""
    uri, _, _ = two_runs
    store = open_store(uri)
    variant = current_variants(read_current(store))[0]
    int32 = VariantIndex.open(store, variant).load_all()
    monkeypatch.setattr(index_module, "SLOTS_INT32_BELOW", 0)
    int64 = VariantIndex.open(store, variant).load_all()
    assert int32.user_table.format == "i" and int64.user_table.format in ("l", "q")
    known = np.concatenate([shard.user_ids for shard in int32.shards])
    for user in [*map(int, known), 0, int(known.max()) + 1]:
        assert int64.answer(user).text == int32.answer(user).text


@pytest.mark.parametrize("ids", [[3, 9], [-2, 8], [8, 8]])
def test_ids_publish_would_refuse_keep_the_binary_search(local_store, ids):
    """Negative ids would index the user table from its end, repeated ones overwrite a row: such
    shards (publish refuses them) are answered by binary search, as before the table existed."""
    from movierec.precompute import encode_shard
    from movierec.recs import Run, Variant, shard_key

    run = Run("r-ids", "m", "s", 1, 1, "2026-11-29T00:00:00+00:00")
    local_store.put(shard_key(run.run_id, 0, 1), encode_shard(np.array(ids), np.array([[0], [1]]), np.array(["a", "b"])))
    index = VariantIndex(local_store, Variant("A", run.run_id, "m", 1.0), run, ["p"]).load_all()
    assert (index.user_table is not None) == (ids == [3, 9])
    assert index.answer(ids[0]).text == b"a" and index.answer(ids[0] + 1).source == "popular"
    if ids[0] != ids[1]:
        assert index.answer(ids[1]).text == b"b"


def test_a_cold_service_answers_while_it_loads_and_then_from_memory(two_runs):
    uri, _, _ = two_runs
    store = open_store(uri)
    service = RecommendService(store, reload_seconds=60)
    assert not service.ready and not service.in_memory  # the handler then asks from a thread
    expected = VariantIndex.open(store, current_variants(read_current(store))[0]).load_all().answer(1005)
    assert service.answer(1005) == expected  # starts the reload thread, waits for CURRENT, loads one shard
    deadline = time.monotonic() + 10
    while not service.in_memory:
        assert time.monotonic() < deadline, "the rest of the publication did not load"
        time.sleep(0.02)
    assert service.answer(1005) == expected
    service.stop()


def test_a_forked_worker_loads_for_itself_before_it_answers_from_memory(two_runs):
    """gunicorn forks its workers: a worker answers from memory only once its own reload thread
    has loaded, or a later CURRENT would never reach it (the handler no longer starts the thread
    on the warm path, so the fork must leave nothing to answer from)."""
    uri, _, _ = two_runs
    service = RecommendService(open_store(uri), reload_seconds=60)
    assert service.reload() and service.in_memory
    pid = os.fork()
    if pid == 0:  # the child: a worker
        try:
            cold = not service.in_memory and service.thread is None
            loaded = service.answer(1005).source == "personalized" and service.thread.is_alive()
            os._exit(0 if cold and loaded else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked worker did not answer within 30 s")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert service.in_memory and service.answer(1005).source == "personalized"  # the parent keeps what it holds


def test_two_worker_processes_answer_over_http(two_runs):
    uri, _built, _ = two_runs
    rollback_to = read_current(open_store(uri))["variants"][0]["run_id"]
    with FunctionProcess("recommend", store=uri, env={"WORKERS": "2"}) as recommend:
        text = requests.get(f"{recommend.url}/recommend/1007", timeout=10)
        assert text.status_code == 200 and len(set(text.text.split(","))) == 20
        assert text.headers["X-Recs-Run"] == rollback_to and text.headers["X-Variant"] == "A"
        assert text.headers["Content-Type"].startswith("text/plain") and "server" in text.headers
        body = requests.get(f"{recommend.url}/recommend/1007", headers={"Accept": "application/json"}, timeout=10).json()
        assert body["movies"] == text.text.split(",") and body["source"] == "personalized"
        bad = requests.get(f"{recommend.url}/recommend/12a", timeout=10)
        assert bad.status_code == 400 and "user id" in bad.json()["error"]
        assert requests.get(f"{recommend.url}/readyz", timeout=10).status_code == 200


@pytest.mark.parametrize("slots_per_user", [index_module.DIRECT_SLOTS_PER_USER, 0])
def test_codes_widen_past_65536_movies_between_shards(local_store, monkeypatch, slots_per_user):
    """A vocabulary that outgrows 2-byte codes while shards load: the first shard keeps uint16
    codes, the next ones get int32, and every user's answer is still the movies of its shard row."""
    from movierec.precompute import encode_shard
    from movierec.recs import Run, Variant, shard_key

    monkeypatch.setattr(index_module, "DIRECT_SLOTS_PER_USER", slots_per_user)  # 0: binary search
    rng = np.random.default_rng(3)
    movies = np.array([f"movie+{i:06d}+1999" for i in range(70_100)])
    users = np.arange(4_000)
    run = Run("r-wide", "m", "s", 2, 20, "2026-11-29T00:00:00+00:00")
    expected = {}
    for partition in range(2):
        mine = users[partitions_of(users, 2) == partition]
        catalogue = movies[:40] if partition == 0 else movies  # each shard's parquet dictionary
        best = np.stack([rng.choice(len(catalogue), 20, replace=False) for _ in mine])
        local_store.put(shard_key(run.run_id, partition, 2), encode_shard(mine, best, catalogue))
        expected |= {int(u): [str(movies[m]) for m in row] for u, row in zip(mine, best)}
    index = VariantIndex(local_store, Variant("A", run.run_id, "m", 1.0), run, ["p"])
    index.shard(0)  # loaded while the vocabulary is small
    index.load_all()
    assert len(index.vocabulary) > 65_536
    assert index.shard(0).codes.format == "H" and index.shard(1).codes.format in ("i", "l")
    assert (index.user_table is None) == (slots_per_user == 0)
    for user, want in expected.items():
        answer = index.answer(user)
        assert answer.movies == want and answer.text == ",".join(want).encode()
