"""The whole loop wired in one place: replay through ingest, then the batch steps (`refresh`):
compact, snapshot, train, precompute, publish.

`movierec refresh` (the daily CronJob, knative/base/cronjob-refresh.yaml) runs the batch
steps; the demo runs them after a replay. A refresh with no new events since the served
model's snapshot changes nothing, so the job can run as often as wanted; neither does one
while an A/B test is served, or after a rollback from a model of the latest snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from movierec.compaction import compact
from movierec.errors import NotFound, NotReady
from movierec.models.registry import list_models, load_card
from movierec.processes import FunctionProcess
from movierec.recs import Run, publication_history, read_current
from movierec.replay import ReplayStats, replay
from movierec.resources import measured
from movierec.store import Store, open_store
from pipelines.fanout import run_local, run_remote, start_run
from pipelines.publish import publish
from pipelines.snapshot import make_snapshot
from pipelines.train import train

FanOut = Callable[[Store, Run, Callable[[int], None]], None]  # scores every partition of a run


@dataclass(frozen=True)
class Refreshed:
    snapshot: dict
    model: dict | None  # None: nothing published (see _why_not)
    run_id: str | None
    steps: dict[str, dict[str, float]]  # each step's wall seconds and peak RSS (movierec.resources)


@dataclass(frozen=True)
class LoopResult:
    replay: ReplayStats
    snapshot: dict
    model: dict
    run_id: str
    users: int


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


def _published_snapshots(store: Store, current: dict) -> set[str]:
    """The snapshots of every model CURRENT serves or remembers (rolled back from, or earlier)."""
    publications = [current, *([current["previous"]] if current.get("previous") else []),
                    *publication_history(current)]
    snapshots = set()
    for version in {v["model_version"] for p in publications for v in p["variants"]}:
        try:
            snapshots.add(load_card(store, version)["snapshot_id"])
        except NotFound:  # a deleted model: it cannot be what is served, nor block a refresh
            pass
    return snapshots


def _why_not(store: Store, snapshot_id: str) -> str | None:
    """Why a scheduled refresh must leave CURRENT alone, or None. A model trained on this snapshot
    was published already (and, if it is not served now, rolled back: training it again would undo
    the rollback), or an A/B test is running (a refresh would end it)."""
    try:
        current = read_current(store)
    except NotReady:
        return None
    if len(current["variants"]) > 1:
        return "an A/B test is being served; publishing one run would end it"
    if snapshot_id in _published_snapshots(store, current):
        return "a model trained on this snapshot was published already (served, or rolled back)"
    return None


def _trained_on(store: Store, snapshot_id: str, kind: str) -> dict | None:
    """The newest model of `kind` already trained on the snapshot (left by a refresh that failed later)."""
    cards = [c for c in list_models(store) if c["snapshot_id"] == snapshot_id and c["kind"] == kind]
    return cards[-1] if cards else None


def refresh(
    store: Store,
    fan_out: FanOut,
    *,
    model_kind: str,
    partitions: int,
    top_k: int,
    evaluate: bool = True,
    force: bool = False,
    console: Console | None = None,
) -> Refreshed:
    """Compact and snapshot the event log, train on it, score every partition through `fan_out` and publish the
    run. Without `force`, nothing is published while `_why_not` says so, and a model already trained
    on the snapshot (by a refresh that failed later) is reused rather than trained again."""
    console = console or Console(stderr=True)
    steps: dict[str, dict[str, float]] = {}
    with measured(steps, "compact"):
        compacted = compact(store)
    console.print(f"[bold]compact[/] {compacted.files_in:,} files into {compacted.files_out:,} "
                  f"in {compacted.seconds:.1f} s" + (f"; {len(compacted.skipped)} unreadable left in place"
                                                      if compacted.skipped else ""))
    with measured(steps, "snapshot"):
        manifest, created = make_snapshot(store)
    counts = manifest["counts"]
    console.print(
        f"[bold]snapshot[/] {manifest['id']} ({'new' if created else 'unchanged'}): "
        f"{counts['users']:,} users, {counts['movies']:,} movies, {counts['interactions']:,} interactions"
    )
    if not force and (reason := _why_not(store, manifest["id"])):
        console.print(f"[bold]nothing to do[/]: {reason} (--force overrides)")
        return Refreshed(manifest, None, None, steps)
    if not force and (card := _trained_on(store, manifest["id"], model_kind)):
        console.print(f"[bold]train[/] reusing model {card['version']}, already trained on this snapshot")
    else:
        with measured(steps, "train"), progress_bar(console) as bar:
            task = bar.add_task(f"train {model_kind}", total=100)
            card = train(store, snapshot_id=manifest["id"], kind=model_kind, evaluate=evaluate,
                         progress=lambda f: bar.update(task, completed=round(100 * f)))
        console.print(f"[bold]train[/] model {card['version']} in {card['train_seconds']:.1f} s")
    run = start_run(store, card["version"], partitions=partitions, top_k=top_k)
    with measured(steps, "precompute"), progress_bar(console) as bar:
        task = bar.add_task("precompute partitions", total=partitions)
        fan_out(store, run, lambda partition: bar.advance(task))
    with measured(steps, "publish"):
        publish(store, [run.run_id])
    console.print(f"[bold]publish[/] run {run.run_id}: {card['users']:,} users, {partitions} shards")
    for name, step in steps.items():
        console.print(f"  {name:<11} {step['seconds']:>9.1f} s  peak {step['peak_rss_mb']:>8,.0f} MB")
    return Refreshed(manifest, card, run.run_id, steps)


def run_loop(
    store_uri: str,
    lines: Iterable[str],
    *,
    total_lines: int | None,
    source: str,
    model_kind: str = "forecast-dae",
    partitions: int = 8,
    top_k: int = 20,
    local: bool = False,
    console: Console | None = None,
) -> LoopResult:
    """Every step against `store_uri`; ingest and precompute run as real function processes."""
    console = console or Console(stderr=True)
    store = open_store(store_uri)
    with FunctionProcess("ingest", store=store_uri) as ingest, progress_bar(console) as bar:
        task = bar.add_task("replay → ingest", total=total_lines)
        stats = replay(ingest.url, lines, source=source, on_progress=lambda n: bar.advance(task, n))
    console.print(f"[bold]replay[/] {stats.summary()}")

    def fan_out(store: Store, run: Run, on_done: Callable[[int], None]) -> None:
        if local:
            run_local(store, run, on_done=on_done)
        else:
            with FunctionProcess("precompute", store=store_uri) as worker:
                run_remote(store, run, worker.url, concurrency=2, on_done=on_done)

    done = refresh(store, fan_out, model_kind=model_kind, partitions=partitions, top_k=top_k,
                   force=True, console=console)
    return LoopResult(stats, done.snapshot, done.model, done.run_id, done.model["users"])
