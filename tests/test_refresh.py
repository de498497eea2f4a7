"""`movierec refresh`, the scheduled batch job: a new model and run only when there are new events."""

from __future__ import annotations

from movierec.cli import main
from movierec.events import event_from_line, write_events
from movierec.recs import CURRENT_KEY, current_variants, read_current
from movierec.serving import RecommendService
from movierec.store import open_store
from tests.conftest import build_published, seen_by_user, small_world_lines

REFRESH = ["refresh", "--local", "--model", "popularity", "--no-evaluate", "--partitions", "3"]


def test_refresh_publishes_only_when_there_is_something_new(tmp_path, capsys):
    uri = str(tmp_path / "store")
    built = build_published(uri, small_world_lines())
    store = open_store(uri)
    before = store.get(CURRENT_KEY)

    assert main(["--store", uri, *REFRESH]) == 0  # nothing new: the served model is the snapshot's
    assert capsys.readouterr().out.strip() == "up to date" and store.get(CURRENT_KEY) == before

    newcomers = [line.replace(",", ",9", 1) for line in small_world_lines(users=40, seed=7)]  # users 9xxx
    write_events(store, [event_from_line("test-2", str(i), line.encode()) for i, line in enumerate(newcomers)])
    assert main(["--store", uri, *REFRESH]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    (variant,) = current_variants(read_current(store))
    assert variant.run_id == run_id != built["run"].run_id
    service = RecommendService(store, reload_seconds=60)
    try:
        for user, seen in list(seen_by_user(newcomers).items())[:10]:
            answer = service.recommend(user)
            assert answer.source == "personalized" and len(answer.movies) == 20 and not set(answer.movies) & seen
    finally:
        service.stop()

    assert main(["--store", uri, *REFRESH, "--force"]) == 0  # forced: a new run on the same snapshot
    assert current_variants(read_current(store))[0].run_id not in (run_id, built["run"].run_id)


def test_refresh_without_a_sink_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("K_SINK", raising=False)
    uri = str(tmp_path / "store")
    store = open_store(uri)
    write_events(store, [event_from_line("test", str(i), line.encode()) for i, line in enumerate(small_world_lines())])
    assert main(["--store", uri, "refresh", "--model", "popularity"]) == 2
    assert store.list("snapshots") == [] and store.list("models") == [] and store.list("recs") == []
