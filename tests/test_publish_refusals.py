"""publish and rollback never write a recs/CURRENT that recommend could answer nobody from; the A/B
report counts two events that differ only in where a NUL falls as two."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from movierec.errors import InvalidRun
from movierec.experiments.online import _deduplicated
from movierec.recs import CURRENT_KEY, write_current
from pipelines.publish import publish, rollback
from tests.conftest import build_published, small_world_lines


def test_a_publication_without_variants_is_refused(local_store):
    with pytest.raises(InvalidRun):
        write_current(local_store, [], previous=None, history=[])
    with pytest.raises(InvalidRun):
        publish(local_store, [])
    assert not local_store.exists(CURRENT_KEY)


def test_rollback_refuses_a_history_entry_without_variants_and_leaves_current_as_it_is(local_store):
    build_published(str(local_store.root), small_world_lines(users=40, movies=30), partitions=2)
    current = json.loads(local_store.get(CURRENT_KEY))
    current["history"] = [{"variants": [], "published_at": "2026-11-01T00:00:00+00:00"}]
    local_store.put(CURRENT_KEY, json.dumps(current).encode())
    before = local_store.get(CURRENT_KEY)
    with pytest.raises(InvalidRun):
        rollback(local_store)
    assert local_store.get(CURRENT_KEY) == before


def test_the_ab_report_dedupes_on_the_source_and_id_pair_not_a_joined_string():
    table = pa.table({"event_source": ["a\x00b", "a", "a"], "event_id": ["c", "b\x00c", "b\x00c"], "n": [1, 2, 3]})
    assert _deduplicated(table)["n"].to_pylist() == [1, 2]
