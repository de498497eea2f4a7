"""`movierec refresh`, the scheduled batch job: a new model and run only when there are new events,
and never over an A/B test or a rollback."""

from __future__ import annotations

import pytest

from movierec.events import event_from_line, write_events
from movierec.recs import CURRENT_KEY, current_variants, read_current
from movierec.serving import RecommendService
from movierec.store import open_store
from pipelines.cli import main
from pipelines.fanout import run_local, start_run
from pipelines.publish import publish, rollback
from tests.conftest import build_published, seen_by_user, small_world_lines

REFRESH = ["refresh", "--local", "--model", "popularity", "--no-evaluate", "--partitions", "3"]


def new_events(store, seed: int) -> list[str]:
    """Lines of 40 users never seen before (ids <seed>0000<n>)."""
    lines = [line.replace(",", f",{seed}0000", 1) for line in small_world_lines(users=40, seed=seed)]
    write_events(store, [event_from_line(f"test-{seed}", str(i), line.encode()) for i, line in enumerate(lines)])
    return lines


def refreshed(uri: str, capsys, *extra: str) -> str:
    assert main(["--store", uri, *REFRESH, *extra]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.fixture
def published(tmp_path):
    uri = str(tmp_path / "store")
    return uri, build_published(uri, small_world_lines()), open_store(uri)


def test_refresh_publishes_only_when_there_is_something_new(published, capsys):
    uri, built, store = published
    before = store.get(CURRENT_KEY)
    assert refreshed(uri, capsys) == "nothing published" and store.get(CURRENT_KEY) == before

    newcomers = new_events(store, 9)
    run_id = refreshed(uri, capsys)
    (variant,) = current_variants(read_current(store))
    assert variant.run_id == run_id != built["run"].run_id
    service = RecommendService(store, reload_seconds=60)
    try:
        for user, seen in list(seen_by_user(newcomers).items())[:10]:
            answer = service.answer(user)
            assert answer.source == "personalized" and len(answer.movies) == 20 and not set(answer.movies) & seen
    finally:
        service.stop()

    forced = refreshed(uri, capsys, "--force")  # a new run on the same snapshot
    assert current_variants(read_current(store))[0].run_id == forced not in (run_id, built["run"].run_id)


def test_refresh_does_not_undo_a_rollback_nor_end_an_a_b_test(published, capsys):
    uri, built, store = published
    new_events(store, 8)
    bad = refreshed(uri, capsys)
    rollback(store)  # the new model was bad: back to the first
    assert current_variants(read_current(store))[0].run_id == built["run"].run_id
    assert refreshed(uri, capsys) == "nothing published"
    assert current_variants(read_current(store))[0].run_id == built["run"].run_id != bad

    new_events(store, 7)  # new data: a refresh may publish again
    second = refreshed(uri, capsys)
    run = start_run(store, built["model"]["version"], partitions=2, top_k=20)
    run_local(store, run)
    publish(store, [second, run.run_id], shares=[0.5, 0.5])
    split = store.get(CURRENT_KEY)
    new_events(store, 6)
    assert refreshed(uri, capsys) == "nothing published" and store.get(CURRENT_KEY) == split


def test_a_refresh_that_failed_after_training_reuses_its_model(published, capsys, monkeypatch):
    uri, _, store = published
    new_events(store, 5)
    monkeypatch.setattr("pipelines.fanout.run_local", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("node lost")))
    with pytest.raises(RuntimeError, match="node lost"):
        main(["--store", uri, *REFRESH])
    models = [k for k in store.list("models") if k.endswith("card.json")]
    monkeypatch.undo()
    refreshed(uri, capsys)
    assert [k for k in store.list("models") if k.endswith("card.json")] == models  # no second training


def test_a_deleted_model_card_does_not_stop_the_job(published, capsys):
    uri, built, store = published
    (store.root / "models" / built["model"]["version"] / "card.json").unlink()
    new_events(store, 4)
    assert refreshed(uri, capsys) != "nothing published"


def test_refresh_without_a_sink_or_with_an_unknown_kind_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("K_SINK", raising=False)
    uri = str(tmp_path / "store")
    store = open_store(uri)
    write_events(store, [event_from_line("test", str(i), line.encode()) for i, line in enumerate(small_world_lines())])
    assert main(["--store", uri, "refresh", "--model", "popularity"]) == 2
    assert main(["--store", uri, "refresh", "--local", "--model", "no-such-kind"]) == 2
    assert store.list("snapshots") == [] and store.list("models") == [] and store.list("recs") == []


def test_a_broken_current_is_a_clear_error(published, capsys):
    uri, _, store = published
    store.put("recs/CURRENT", b"{not json")
    assert main(["--store", uri, *REFRESH]) == 2
    assert "recs/CURRENT is not valid JSON" in capsys.readouterr().err
