"""One future-dated line must not rewrite the popular fallback every new user gets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
from cloudevents.conversion import to_binary

from movierec.events import event_from_line, event_keys, write_events
from movierec.ingest import to_events
from movierec.models.base import Interactions
from movierec.models.popularity import popular_order, recent_popularity
from movierec.quality import compare, profile, summary_lines
from movierec.replay import line_event
from movierec.store import open_store
from pipelines.snapshot import make_snapshot
from pipelines.train import train
from tests.conftest import small_world_lines
from tests.functions.test_ingest import client_for, stored_rows

FORGED = "9999-12-31T23:59:59,1,GET /rate/zzz+forged+2001=5"


def test_ingest_quarantines_a_line_dated_beyond_its_arrival(tmp_path, monkeypatch):
    uri = str(tmp_path / "store")
    client = client_for(uri, monkeypatch)
    soon = (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")  # within the tolerance
    for event_id, line in (("forged", FORGED), ("skewed", f"{soon},2,GET /rate/a+2001=4")):
        headers, body = to_binary(line_event("t", event_id, line))
        assert client.post("/", headers=headers, content=body).status_code == 200
    store = open_store(uri)
    (quarantined,) = stored_rows(store, "quarantine")
    assert (quarantined["event_id"], quarantined["reason"]) == ("forged", "future_time")
    assert quarantined["raw"] == FORGED.encode()
    assert [r["event_id"] for r in stored_rows(store, "rate")] == ["skewed"]
    assert 'movierec_ingest_quarantined_total{reason="future_time"}' in client.get("/metrics").text


def test_to_events_keeps_lines_up_to_the_tolerance():
    now = datetime.now(UTC).replace(tzinfo=None)
    lines = [(now + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S") + ",1,GET /rate/a+2001=4" for m in (-5, 50, 70)]
    events = to_events([("t", str(i), line.encode()) for i, line in enumerate(lines)])
    assert [e.reason for e in events] == [None, None, "future_time"]


def interactions(times: list[float], movies: list[int]) -> Interactions:
    n = len(times)
    return Interactions(user_ids=np.arange(n), movie_ids=np.array([f"m{i}" for i in range(max(movies) + 1)]),
                        user_idx=np.arange(n, dtype=np.int32), movie_idx=np.array(movies, np.int32),
                        watch_minutes=np.ones(n, np.float32), rating=np.full(n, np.nan, np.float32),
                        last_time=np.array(times, np.int64))


def test_recency_counts_from_the_snapshot_time_so_a_future_line_changes_no_other_weight():
    now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    day = 86_400
    # m2 is watched by three users a month ago, m1 by one user yesterday, m0 by one forged line in 9999.
    times = [now - 30 * day] * 3 + [now - day, datetime(9999, 12, 31).timestamp()]
    movies = [2, 2, 2, 1, 0]
    honest = recent_popularity(interactions(times[:4], movies[:4]), now=now)
    poisoned = recent_popularity(interactions(times, movies), now=now)
    assert poisoned[1:].min() > 0
    assert np.allclose(poisoned[1:] / poisoned[1:].sum(), honest[1:] / honest[1:].sum())  # one common factor
    assert [m for m in popular_order(poisoned) if m] == [m for m in popular_order(honest) if m] == [1, 2]
    assert poisoned[0] == 1.0  # the forged line weighs as one at the snapshot's own time, no more


def test_a_snapshot_with_a_future_dated_line_warns_and_the_fallback_stays_by_popularity(tmp_path):
    """A forged line already in the log (written before ingest quarantined them): the quality report
    names it, and the popular fallback is the one without it, not alphabetical."""
    lines = small_world_lines(users=60, movies=40)
    events = [event_from_line("t", str(i), line.encode()) for i, line in enumerate(lines)]
    honest_store = open_store(str(tmp_path / "honest"))
    write_events(honest_store, events)
    poisoned_store = open_store(str(tmp_path / "poisoned"))
    write_events(poisoned_store, events + [event_from_line("t", "forged", FORGED.encode())])

    def fallback(store) -> list[str]:
        manifest, _ = make_snapshot(store)
        card = train(store, snapshot_id=manifest["id"], kind="popularity", evaluate=False)
        return manifest, json.loads(store.get(f"models/{card['version']}/popular.json"))

    (honest_manifest, honest), (poisoned_manifest, poisoned) = fallback(honest_store), fallback(poisoned_store)
    assert honest_manifest["quality"]["warnings"] == []
    (warning,) = poisoned_manifest["quality"]["warnings"]
    assert "9999-12-31" in warning
    assert [m for m in poisoned if m != "zzz+forged+2001"][:10] == honest[:10]
    assert poisoned[:10] != sorted(poisoned[:10])
    assert event_keys(poisoned_store, "rate")


def test_the_time_range_check_reports_on_a_first_snapshot_too():
    import pyarrow as pa

    table = pa.table({"user_id": [1, 2], "movie_id": ["a", "b"], "watch_minutes": pa.array([1, 0], pa.int32()),
                      "rating": pa.array([None, 4], pa.int16()),
                      "last_time": pa.array([datetime(2026, 11, 1), datetime(9999, 12, 31)], pa.timestamp("us"))})
    report = compare(profile(table, {}), None, None, at=datetime(2026, 12, 1, tzinfo=UTC))
    assert len(report["warnings"]) == 1 and "9999-12-31" in report["warnings"][0]
    assert any("WARNING" in line for line in summary_lines(report))
    assert compare(profile(table.slice(0, 1), {}), None, None, at=datetime(2026, 12, 1, tzinfo=UTC))["warnings"] == []


def test_the_tolerance_is_a_setting(tmp_path, monkeypatch):
    """`movierec simulate` dates its sessions days ahead and says so to its own ingest."""
    import pytest

    from movierec.config import Settings
    from movierec.errors import ConfigError

    uri = str(tmp_path / "store")
    monkeypatch.setenv("MOVIEREC_INGEST_FUTURE_HOURS", "48")
    client = client_for(uri, monkeypatch)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    headers, body = to_binary(line_event("t", "tomorrow", f"{tomorrow},2,GET /rate/a+2001=4"))
    assert client.post("/", headers=headers, content=body).status_code == 200
    assert [r["event_id"] for r in stored_rows(open_store(uri), "rate")] == ["tomorrow"]
    with pytest.raises(ConfigError):
        Settings.from_env({"MOVIEREC_INGEST_FUTURE_HOURS": "-1"})
