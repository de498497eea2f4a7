"""The whole loop wired in one place: replay through ingest, then the batch steps (`refresh`):
snapshot, train, precompute, publish.

`movierec refresh` (the daily CronJob, knative/base/cronjob-refresh.yaml) runs the batch
steps; the demo runs them after a replay. A refresh with no new events since the served
model's snapshot changes nothing, so the job can run as often as wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from movierec.errors import NotReady
from movierec.models.registry import load_card
from movierec.processes import FunctionProcess
from movierec.recs import Run, current_variants, read_current
from movierec.replay import ReplayStats, replay
from movierec.store import Store, open_store
from pipelines.fanout import run_local, run_remote, start_run
from pipelines.publish import publish
from pipelines.snapshot import make_snapshot
from pipelines.train import train

FanOut = Callable[[Store, Run, Callable[[int], None]], None]  # scores every partition of a run


@dataclass(frozen=True)
class Refreshed:
    snapshot: dict
    model: dict | None  # None: the served model already comes from this snapshot
    run_id: str | None


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


def served_snapshots(store: Store) -> set[str]:
    """The snapshots the published models were trained on (empty while nothing is published)."""
    try:
        variants = current_variants(read_current(store))
    except NotReady:
        return set()
    return {load_card(store, v.model_version)["snapshot_id"] for v in variants}


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
    """Snapshot the event log; unless the served model already comes from that snapshot (and not
    `force`), train on it, score every partition through `fan_out` and publish the run."""
    console = console or Console(stderr=True)
    manifest, created = make_snapshot(store)
    counts = manifest["counts"]
    console.print(
        f"[bold]snapshot[/] {manifest['id']} ({'new' if created else 'unchanged'}): "
        f"{counts['users']:,} users, {counts['movies']:,} movies, {counts['interactions']:,} interactions"
    )
    if not force and manifest["id"] in served_snapshots(store):
        console.print("[bold]up to date[/]: the served model was trained on this snapshot")
        return Refreshed(manifest, None, None)
    with progress_bar(console) as bar:
        task = bar.add_task(f"train {model_kind}", total=100)
        card = train(store, snapshot_id=manifest["id"], kind=model_kind, evaluate=evaluate,
                     progress=lambda f: bar.update(task, completed=round(100 * f)))
    console.print(f"[bold]train[/] model {card['version']} in {card['train_seconds']:.1f} s")
    run = start_run(store, card["version"], partitions=partitions, top_k=top_k)
    with progress_bar(console) as bar:
        task = bar.add_task("precompute partitions", total=partitions)
        fan_out(store, run, lambda partition: bar.advance(task))
    publish(store, [run.run_id])
    console.print(f"[bold]publish[/] run {run.run_id}: {card['users']:,} users, {partitions} shards")
    return Refreshed(manifest, card, run.run_id)


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
