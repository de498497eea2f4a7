"""Online evaluation on a hand-built log: attribution against what recommend really serves, the window, the shares."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from movierec.events import event_from_line, write_events
from movierec.experiments.online import assign, evaluate, served_answers, summarize
from movierec.partitioning import ab_bucket
from movierec.recs import Variant
from movierec.serving import RecommendService
from movierec.store import open_store
from pipelines.fanout import run_local, start_run
from pipelines.publish import publish
from pipelines.train import train
from tests.conftest import build_published, small_world_lines


def test_assign_is_recommends_stable_hash_against_cumulative_shares():
    variants = [Variant("A", "r1", "m1", 0.3), Variant("B", "r2", "m2", 0.7)]
    users = np.arange(5000, 7000)
    expected = [0 if ab_bucket(int(u)) < 0.3 else 1 for u in users]
    assert assign(users, variants).tolist() == expected
    assert 0.25 < np.mean(assign(users, variants) == 0) < 0.35


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _reco(when, user, movies, *, status=200, ms=40) -> str:
    result = ", ".join(movies) if status == 200 else "java.lang.Exception: boom, at server"
    return f"{_stamp(when)},{user},recommendation request test-server, status {status}, result: {result}, {ms} ms"


def _watch(when, user, movie) -> str:
    return f"{_stamp(when)},{user},GET /data/m/{movie}/1.mpg"


def test_online_eval_attributes_answers_and_scores_watch_through(tmp_path):
    uri = str(tmp_path / "store")
    built = build_published(uri, small_world_lines(users=80, movies=60), partitions=2)
    store = open_store(uri)
    weak = train(store, snapshot_id=built["snapshot"]["id"], kind="random")
    weak_run = start_run(store, weak["version"], partitions=2, top_k=20)
    run_local(store, weak_run)
    publish(store, [built["run"].run_id, weak_run.run_id], shares=[0.5, 0.5])
    service = RecommendService(store)
    service.reload()
    users = [1000 + i for i in range(80)]
    served = {u: service.answer(u) for u in users}
    in_a = [u for u in users if served[u].variant.name == "A"]
    in_b = [u for u in users if served[u].variant.name == "B"]
    assert len(in_a) >= 4 and len(in_b) >= 4
    new_user = 99_999
    served[new_user] = service.answer(new_user)
    service.stop()

    t = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + timedelta(minutes=5)
    a1, a2, a3, a4 = in_a[:4]
    b1, b2 = in_b[:2]
    lines = [
        (_reco(t, a1, served[a1].movies), "r-a1"),
        (_reco(t, a1, served[a1].movies), "r-a1"),  # redelivered: the same event id counts once
        (_watch(t + timedelta(hours=1), a1, served[a1].movies[3]), "w1"),  # watched within 6 h
        (_reco(t, b1, served[b1].movies, ms=700), "r-b1"),  # over the 600 ms budget
        (_watch(t + timedelta(hours=7), b1, served[b1].movies[0]), "w2"),  # too late
        (_watch(t - timedelta(hours=1), a2, served[a2].movies[0]), "w3"),  # started before the answer
        (_reco(t, a2, served[a2].movies), "r-a2"),
        (_watch(t + timedelta(hours=1), a2, served[a2].movies[0]), "w4"),  # ...so not a conversion
        (_reco(t, new_user, served[new_user].movies), "r-new"),  # the popular fallback
        (_reco(t, a3, list(reversed(served[a3].movies))), "r-a3"),  # a list no variant serves
        (_reco(t, b2, [], status=500), "r-b2"),  # an error
        (_reco(t + timedelta(hours=9), a4, served[a4].movies), "r-late"),  # its window has not passed
        (_watch(t + timedelta(hours=10), b2, "some+movie+1999"), "w-end"),  # the log runs to t + 10 h
    ]
    write_events(store, [event_from_line("test/online", id_, line.encode()) for line, id_ in lines])

    answers = served_answers(store)
    rows = {(r["user_id"], r["time"]): r for r in answers.to_pylist()}
    assert answers.num_rows == 7  # the redelivered answer once
    row = lambda user, when=t: rows[(user, when)]
    for user in (a1, b1, a2, new_user):
        assert row(user)["variant"] == served[user].variant.name and row(user)["matched"]
        assert row(user)["run_id"] == served[user].variant.run_id
    assert row(new_user)["source"] == "popular" and row(a1)["source"] == "personalized"
    assert row(a1)["converted"] and not row(b1)["converted"] and not row(a2)["converted"]
    assert not row(a3)["matched"] and row(a3)["variant"] == "A" and row(a3)["publication"] == "current"
    assert row(b2)["variant"] == "B" and row(b2)["status"] == 500 and not row(b2)["mature"]
    late = row(a4, t + timedelta(hours=9))
    assert late["matched"] and not late["mature"] and not late["converted"]

    summary = {(r["variant"], r["day"]): r for r in summarize(answers)}
    day = t.strftime("%Y-%m-%d")
    b = summary[("B", day)]
    assert b["answers"] == 2 + (served[new_user].variant.name == "B")
    assert b["error_share"] == pytest.approx(1 / b["answers"])
    assert b["over_budget_share"] == pytest.approx(1 / b["answers"])
    a = summary[("A", day)]
    assert a["watched_answers"] == 1
    assert a["watch_through"] == 1 / a["mature_answers"]

    result = evaluate(store)
    stored = [k for k in store.list("recs") if "/online/" in k]
    assert {k.split("/")[1] for k in stored} == {built["run"].run_id, weak_run.run_id}
    saved = json.loads(store.get(stored[0]))
    assert saved["window_hours"] == 6 and saved["rows"] and len(result["rows"]) >= 2
