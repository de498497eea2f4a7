"""The whole loop wired in one place: replay through ingest, snapshot, train, precompute, publish."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from movierec.processes import FunctionProcess
from movierec.replay import ReplayStats, replay
from movierec.store import open_store
from pipelines.fanout import run_local, run_remote, start_run
from pipelines.publish import publish
from pipelines.snapshot import make_snapshot
from pipelines.train import train


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
    manifest, created = make_snapshot(store)
    counts = manifest["counts"]
    console.print(
        f"[bold]snapshot[/] {manifest['id']} ({'new' if created else 'unchanged'}): "
        f"{counts['users']:,} users, {counts['movies']:,} movies, {counts['interactions']:,} interactions"
    )
    with progress_bar(console) as bar:
        task = bar.add_task(f"train {model_kind}", total=100)
        card = train(store, snapshot_id=manifest["id"], kind=model_kind,
                     progress=lambda f: bar.update(task, completed=round(100 * f)))
    console.print(f"[bold]train[/] model {card['version']} in {card['train_seconds']:.1f} s")
    run = start_run(store, card["version"], partitions=partitions, top_k=top_k)
    with progress_bar(console) as bar:
        task = bar.add_task("precompute partitions", total=partitions)
        if local:
            run_local(store, run, on_done=lambda p: bar.advance(task))
        else:
            with FunctionProcess("precompute", store=store_uri) as worker:
                run_remote(store, run, worker.url, concurrency=2, on_done=lambda p: bar.advance(task))
    publish(store, [run.run_id])
    users = card["users"]
    console.print(f"[bold]publish[/] run {run.run_id}: {users:,} users, {partitions} shards")
    return LoopResult(stats, manifest, card, run.run_id, users)
