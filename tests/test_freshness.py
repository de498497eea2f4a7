"""The batch steps' freshness and drift, as a long-running function exports them (movierec.freshness)."""

from __future__ import annotations

import json
import time

from movierec import freshness
from movierec.store import LocalStore
from tests.conftest import build_published, small_world_lines


def test_store_state_collector_exports_freshness_and_drift(tmp_path):
    from movierec.events import event_from_line, write_events
    from pipelines.snapshot import make_snapshot

    store = LocalStore(tmp_path / "store")
    build_published(str(tmp_path / "store"), small_world_lines(users=40, movies=40), partitions=2)
    collector = freshness.StoreStateCollector(store)
    steps, drift = collector.read()
    assert set(steps) == {"snapshot", "train", "publish"}
    assert time.time() - 120 < steps["snapshot"] <= steps["train"] + 1 <= steps["publish"] + 2
    assert drift == {}  # the first snapshot has nothing to drift from
    # A second snapshot where everyone rates 1: the rating distribution drifts.
    lines = [f"2026-11-25T10:00:00,{1000 + u},GET /rate/drift+movie+{m}+2001=1" for u in range(40) for m in range(5)]
    write_events(store, [event_from_line("drift", str(i), line.encode()) for i, line in enumerate(lines)])
    make_snapshot(store)
    collector.refresh()
    samples = {(s.name, tuple(s.labels.values())): s.value for f in collector.collect() for s in f.samples}
    assert samples[("movierec_pipeline_snapshot_drift_psi", ("rating_psi",))] > 0.2
    assert samples[("movierec_pipeline_last_success_timestamp_seconds", ("snapshot",))] > steps["snapshot"]


def test_store_state_collector_keeps_the_last_values_when_the_store_fails(tmp_path):
    from movierec.errors import StoreUnavailable

    class Flaky(LocalStore):
        down = False

        def list(self, prefix):
            if self.down:
                raise StoreUnavailable("down")
            return super().list(prefix)

    store = Flaky(tmp_path)
    store.put("recs/CURRENT", json.dumps({"published_at": "1970-01-01T00:02:03+00:00"}).encode())
    collector = freshness.StoreStateCollector(store, refresh_seconds=0)
    collector.refresh()
    store.down = True
    collector.refresh()
    assert [s.value for f in collector.collect() for s in f.samples] == [123.0]
