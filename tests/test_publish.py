"""publish refuses broken runs and says why; rollback republishes the previous run."""

from __future__ import annotations

import pyarrow as pa
import pytest

from movierec.errors import InvalidRun, NotReady
from movierec.partitioning import partitions_of
from movierec.recs import SHARD_SCHEMA, read_current, shard_key
from movierec.store import open_store
from pipelines.fanout import run_local, start_run
from pipelines.publish import publish, rollback, validate_run
from tests.conftest import build_published, seen_by_user, small_world_lines


@pytest.fixture(scope="module")
def lines():
    return small_world_lines()


@pytest.fixture
def fresh_run(local_store, lines):
    built = build_published(local_store.uri, lines, partitions=2)
    run = start_run(local_store, built["model"]["version"], partitions=2, top_k=20)
    run_local(local_store, run)
    return local_store, run


def _rewrite(store, run, partition, mutate):
    key = shard_key(run.run_id, partition, run.partitions)
    rows = store.get_parquet(key).to_pylist()
    store.put_parquet(key, pa.Table.from_pylist(mutate(rows), schema=SHARD_SCHEMA))


def test_a_valid_run_publishes(fresh_run):
    store, run = fresh_run
    assert validate_run(store, run.run_id) > 0
    current = publish(store, [run.run_id])
    assert current["variants"][0]["run_id"] == run.run_id and current["previous"]


def test_missing_shard(fresh_run):
    store, run = fresh_run
    (store.root / shard_key(run.run_id, 1, 2)).unlink()
    with pytest.raises(InvalidRun, match="missing"):
        publish(store, [run.run_id])


def test_user_in_the_wrong_partition(fresh_run):
    store, run = fresh_run
    other = next(u for u in range(10**6) if partitions_of([u], 2)[0] == 1)
    _rewrite(store, run, 0, lambda rows: rows + [{"user_id": other, "movies": []}])
    with pytest.raises(InvalidRun, match="another partition"):
        validate_run(store, run.run_id)


def test_duplicate_user(fresh_run):
    store, run = fresh_run
    _rewrite(store, run, 0, lambda rows: rows + rows[:1])
    with pytest.raises(InvalidRun, match="duplicate user"):
        validate_run(store, run.run_id)


def test_seen_movie(fresh_run, lines):
    store, run = fresh_run
    seen = seen_by_user(lines)

    def plant(rows):
        rows[0]["movies"][0] = min(seen[rows[0]["user_id"]])
        return rows

    _rewrite(store, run, 0, plant)
    with pytest.raises(InvalidRun, match="already seen"):
        validate_run(store, run.run_id)


def test_too_few_movies_and_duplicate_movies(fresh_run):
    store, run = fresh_run
    _rewrite(store, run, 1, lambda rows: [rows[0] | {"movies": rows[0]["movies"][:5]}] + rows[1:])
    with pytest.raises(InvalidRun, match="where 20 are possible"):
        validate_run(store, run.run_id)
    _rewrite(store, run, 1, lambda rows: [rows[0] | {"movies": rows[0]["movies"][:19] * 2}] + rows[1:])
    with pytest.raises(InvalidRun, match="duplicate movies"):
        validate_run(store, run.run_id)


def test_refused_publish_changes_nothing_and_rollback_goes_back(fresh_run):
    store, run = fresh_run
    before = read_current(store)
    (store.root / shard_key(run.run_id, 0, 2)).unlink()
    with pytest.raises(InvalidRun):
        publish(store, [run.run_id])
    assert read_current(store) == before
    good = start_run(store, run.model_version, partitions=2, top_k=20)
    run_local(store, good)
    publish(store, [good.run_id])
    assert read_current(store)["variants"][0]["run_id"] == good.run_id
    rollback(store)
    assert read_current(store)["variants"] == before["variants"]


def test_ab_split_and_bad_shares(fresh_run):
    store, run = fresh_run
    other = start_run(store, run.model_version, partitions=2, top_k=20)
    run_local(store, other)
    current = publish(store, [run.run_id, other.run_id], shares=[0.3, 0.7])
    assert [(v["name"], v["share"]) for v in current["variants"]] == [("A", 0.3), ("B", 0.7)]
    with pytest.raises(InvalidRun, match="shares"):
        publish(store, [run.run_id, other.run_id], shares=[0.5, 0.6])


def test_nothing_published(tmp_path):
    with pytest.raises(NotReady):
        read_current(open_store(str(tmp_path)))
    with pytest.raises(NotReady):
        rollback(open_store(str(tmp_path)))
