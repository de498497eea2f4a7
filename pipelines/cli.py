"""`movierec`: the command line over the library and the pipeline steps (here, beside the pipelines,
because it imports both: the library never imports `pipelines`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

from rich.console import Console

from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.processes import FUNCTIONS

console = Console(stderr=True)
# Local ports when $PORT is unset: recommend on the stream's own 8082 (SPEC §2), the others beside it.
LOCAL_PORTS = {"ingest": 8080, "precompute": 8081, "recommend": 8082, "deadletter": 8083}


def _store(args):
    from movierec.store import open_store

    return open_store(args.store)


def local_port(function: str) -> int:
    """$PORT when set (as Knative sets it), else the function's own local port."""
    return Settings.from_env().port if os.environ.get("PORT") else LOCAL_PORTS[function]


def cmd_serve(args) -> int:
    from movierec.processes import serve_command

    env = os.environ | {"MOVIEREC_STORE": args.store}
    command = serve_command(args.function, host=args.host, port=args.port or local_port(args.function))
    os.execvpe(command[0], command, env)  # replaces this process: signals reach the server
    return 0


def cmd_replay(args) -> int:
    from movierec.replay import replay
    from pipelines.pipeline import progress_bar

    lines, source = _lines(args)
    with progress_bar(console) as bar:
        task = bar.add_task("replay", total=None)
        stats = replay(args.url, lines, source=source, batch_size=args.batch_size,
                       concurrency=args.concurrency, rate=args.rate,
                       on_progress=lambda n: bar.advance(task, n))
    print(stats.summary())
    return 0


def _lines(args):
    """The lines to replay and the CloudEvent source naming them."""
    if getattr(args, "movielens", None):
        from movierec.movielens import resolve, stream_lines

        folder = resolve(args.movielens)
        return stream_lines(folder), f"movierec/movielens/{folder.name}"
    if getattr(args, "files", None):
        from movierec.replay import file_lines

        return file_lines(args.files), f"movierec/replay/{Path(args.files[0]).name}"  # ids name path and line
    from movierec.synthetic import make_world, stream_lines

    return stream_lines(make_world(users=args.users, seed=args.seed), seed=args.seed), f"movierec/synthetic/{args.seed}"


def cmd_snapshot(args) -> int:
    from movierec.snapshots import list_snapshots, load_manifest
    from pipelines.snapshot import make_snapshot

    store = _store(args)
    if args.action == "list":
        for m in list_snapshots(store):
            c = m["counts"]
            print(f"{m['id']}  {m['created_at']}  users={c['users']} movies={c['movies']} interactions={c['interactions']}")
        return 0
    if args.action == "show":
        if not args.id:
            raise MovierecError("snapshot show needs an ID")
        print(json.dumps(load_manifest(store, args.id), indent=2))
        return 0
    from movierec.quality import summary_lines

    if not args.no_compact:
        _compact(store)
    with console.status("reading the event log"):
        manifest, created = make_snapshot(store, full=args.full)
    read = manifest.get("built_from", {}).get("base")
    print(f"{'created' if created else 'unchanged'} snapshot {manifest['id']}"
          + (f" (from {read} and the files new since)" if created and read else ""))
    print(json.dumps(manifest["counts"], indent=2))
    if "quality" in manifest:  # snapshots written before quality reports existed have none
        print("\n".join(summary_lines(json.loads(store.get(manifest["quality"]["report"])))))
    return 0


def _compact(store) -> None:
    from movierec.compaction import compact

    with console.status("compacting the event log"):
        done = compact(store)
    console.print(f"[bold]compact[/] {done.files_in:,} files ({done.lines:,} lines) into {done.files_out:,} "
                  f"in {done.seconds:.1f} s; {done.deleted:,} replaced files removed"
                  + "".join(f"\n  left in place, {why}: {key}" for key, why in done.skipped.items()))


def cmd_compact(args) -> int:
    _compact(_store(args))
    return 0


def cmd_train(args) -> int:
    from pipelines.pipeline import progress_bar
    from pipelines.train import train

    with progress_bar(console) as bar:
        task = bar.add_task(f"train {args.model}", total=100)
        card = train(_store(args), snapshot_id=args.snapshot, kind=args.model, seed=args.seed,
                     evaluate=not args.no_evaluate, progress=lambda f: bar.update(task, completed=round(100 * f)))
    print(json.dumps(card, indent=2))
    return 0


def cmd_models(args) -> int:
    from movierec.models.registry import list_models, load_card

    store = _store(args)
    if args.action == "show":
        if not args.version:
            raise MovierecError("models show needs a VERSION")
        print(json.dumps(load_card(store, args.version), indent=2))
        return 0
    for card in list_models(store):
        print(f"{card['version']}  kind={card['kind']}  snapshot={card['snapshot_id']}  users={card['users']}")
    return 0


def _fan_out(args):
    """How `precompute` and `refresh` score a run's partitions: --local, --workers N, or events to
    --sink / $K_SINK. Checked before anything is written: no orphan run.json."""
    from pipelines.fanout import run_local, run_remote, run_workers

    sink = args.sink or os.environ.get("K_SINK")
    if not (args.local or args.workers or sink):
        raise MovierecError("no sink: set K_SINK or pass --sink URL, or use --workers N or --local")

    def fan_out(store, run, on_done) -> None:
        options = {"partition_timeout": args.timeout, "max_sends": args.max_sends, "on_done": on_done}
        if args.local:
            run_local(store, run, on_done=on_done)
        elif args.workers:
            threads = max(1, (os.cpu_count() or 1) // args.workers)
            run_workers(store, run, workers=args.workers, threads_per_worker=threads, **options)
        else:
            run_remote(store, run, sink, concurrency=args.concurrency, **options)
    return fan_out


def cmd_precompute(args) -> int:
    from movierec.models.registry import latest_version
    from pipelines.fanout import start_run

    store = _store(args)
    fan_out = _fan_out(args)
    settings = Settings.from_env()
    run = start_run(store, args.model or latest_version(store),
                    partitions=args.partitions or settings.partitions, top_k=settings.top_k)
    console.print(f"run {run.run_id}: model {run.model_version}, {run.partitions} partitions")
    fan_out(store, run, lambda p: console.print(f"  partition {p} done"))
    print(run.run_id)
    return 0


def cmd_refresh(args) -> int:
    from movierec.models.registry import KINDS
    from pipelines.pipeline import refresh

    if args.model not in KINDS:  # before the snapshot is built
        raise MovierecError(f"unknown model kind {args.model!r}; known: {', '.join(KINDS)}")
    settings = Settings.from_env()
    done = refresh(_store(args), _fan_out(args), model_kind=args.model, top_k=settings.top_k,
                   partitions=args.partitions or settings.partitions, evaluate=not args.no_evaluate,
                   force=args.force, console=console)
    if args.report:
        Path(args.report).write_text(json.dumps({"run_id": done.run_id, "snapshot": done.snapshot["id"],
                                                 "model": done.model and done.model["version"],
                                                 "steps": done.steps}, indent=2))
    print(done.run_id or "nothing published")
    return 0


def cmd_publish(args) -> int:
    from pipelines.publish import publish

    current = publish(_store(args), args.run_ids, shares=args.shares)
    print(json.dumps({k: current[k] for k in ("variants", "published_at")}, indent=2))
    return 0


def cmd_rollback(args) -> int:
    from pipelines.publish import rollback

    current = rollback(_store(args))
    print(json.dumps({k: current[k] for k in ("variants", "published_at")}, indent=2))
    return 0


def cmd_deadletters(args) -> int:
    from movierec import deadletters

    store = _store(args)
    keys = deadletters.keys(store, since=args.since)
    if args.action == "list":
        for line in deadletters.summary(store, keys):
            print(line)
        print(f"{len(keys)} dead letters")
        return 0
    if not args.url:
        raise MovierecError("deadletters replay needs --url: ingest's URL (or the Broker's, with --type)")
    result = deadletters.resend(store, args.url, keys, types=args.type or deadletters.STREAM_TYPES,
                                concurrency=args.concurrency)
    print(f"sent {result.sent}, skipped {result.skipped} of other types, failed {len(result.failed)}")
    for key in result.failed:
        print(f"  not delivered: {key}")
    return 1 if result.failed else 0


def cmd_demo(args) -> int:
    from pipelines.demo import run_demo

    return run_demo(args, console)


def cmd_simulate(args) -> int:
    from pipelines.simulate import simulate

    store = args.store_dir or tempfile.mkdtemp(prefix="movierec-simulate-")
    result = simulate(store, users=args.users, days=args.days, sessions=args.sessions, good=args.good,
                      weak=args.weak, seed=args.seed, out=Path(args.out))
    print(result.comparison.verdict)
    print(f"store: {store}; attribution agrees with recommend's X-Variant on {result.agreement:.1%} of answers")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    winner = result.comparison.treatment if result.comparison.difference > 0 else result.comparison.control
    return 0 if result.comparison.significant and winner.name == result.good_variant else 1


def positive(kind: type):
    """An argparse type: a number of `kind` above zero."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def port(text: str) -> int:
    value = positive(int)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {value}")
    return value


def day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day YYYY-MM-DD: {text!r}") from None


def shares(text: str) -> list[float]:
    """A/B shares: comma-separated numbers, e.g. 0.5,0.5 (publish checks that they fit the runs)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shares must be comma-separated numbers, e.g. 0.5,0.5; got {text!r}") from None


def _common_options(store: str, *, top: bool) -> argparse.ArgumentParser:
    """--store and -v, before or after the command: only the top level holds their defaults, so a
    command's parser leaves them alone unless they are given after the command."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store", default=store if top else argparse.SUPPRESS,
                        help=f"store root URI: a directory or s3://bucket/prefix (default $MOVIEREC_STORE or {store})")
    parser.add_argument("-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="log at INFO level")
    return parser


def _fan_out_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partitions", type=positive(int), help="partition count (default $MOVIEREC_PARTITIONS or 8)")
    p.add_argument("--local", action="store_true", help="run the partitions in this process")
    p.add_argument("--workers", type=positive(int), metavar="N",
                   help="start N local precompute processes and send them the events over HTTP")
    p.add_argument("--sink", help="where events go (default $K_SINK)")
    p.add_argument("--concurrency", type=positive(int), default=4,
                   help="events in flight to the sink (default %(default)s)")
    p.add_argument("--timeout", type=positive(float), default=600.0,
                   help="seconds after which an unfinished partition is sent again (default %(default)s)")
    p.add_argument("--max-sends", type=positive(int), default=3,
                   help="sends per partition before giving up (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    settings = Settings.from_env()
    common = _common_options(settings.store, top=False)

    class CommandParser(argparse.ArgumentParser):
        """Every command's parser (and its own commands', which inherit the class) takes the common options."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, parents=[common, *kwargs.pop("parents", [])], **kwargs)

    parser = argparse.ArgumentParser(prog="movierec", description=__doc__,
                                     parents=[_common_options(settings.store, top=True)])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    p = sub.add_parser("demo", help="the whole loop on this machine, then serve recommend on :8082")
    p.add_argument("--movielens", metavar="PATH|NAME",
                   help="MovieLens instead of the synthetic stream: a folder (ml-100k or ml-latest-small), or the "
                        "name ml-latest-small / ml-100k to download it, checksum-verified, into ~/.cache/movierec")
    p.add_argument("--users", type=positive(int), default=1000, help="synthetic users (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="forecast-dae", help="model kind to train (default %(default)s)")
    p.add_argument("--port", type=port, default=8082, help="port recommend serves on (default %(default)s)")
    p.add_argument("--no-serve", action="store_true", help="print sample answers and exit instead of serving")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="run one function locally under functions-framework")
    p.add_argument("function", choices=FUNCTIONS)
    p.add_argument("--port", type=port,
                   help="default $PORT, else ingest 8080, precompute 8081, recommend 8082 (SPEC §2), deadletter 8083")
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("replay", help="post stream lines to ingest as CloudEvents")
    p.add_argument("files", nargs="*", help="stream files (default: the synthetic stream)")
    p.add_argument("--movielens", metavar="PATH|NAME", help="MovieLens ratings turned into stream lines (a folder, or ml-latest-small / ml-100k to download)")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="ingest URL (default %(default)s)")
    p.add_argument("--rate", type=positive(float), help="lines per second (default: as fast as possible)")
    p.add_argument("--concurrency", type=positive(int), default=4)
    p.add_argument("--batch-size", type=positive(int), default=500,
                   help="events per request; 1 sends single binary events")
    p.add_argument("--users", type=positive(int), default=1000, help="synthetic users")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("snapshot", help="compact the event log into an immutable snapshot; list; show ID")
    p.add_argument("action", nargs="?", choices=("create", "list", "show"), default="create")
    p.add_argument("id", nargs="?")
    p.add_argument("--full", action="store_true", help="read the whole log, not only what is new since the last snapshot")
    p.add_argument("--no-compact", action="store_true", help="do not compact the event log first")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("compact", help="rewrite the event log's small files into few large ones (snapshot does it too)")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("train", help="train a model on a snapshot and store it")
    p.add_argument("--snapshot", help="snapshot id (default: the latest)")
    p.add_argument("--model", default="forecast-dae",
                   help="model kind: forecast-dae (the PyTorch network), popularity, ... (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-evaluate", action="store_true", help="skip the offline evaluation against baselines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list stored models, or show one's card")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("version", nargs="?")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("precompute", help="score every user partition: one CloudEvent each to $K_SINK, or --local")
    p.add_argument("--model", help="model version (default: the latest)")
    _fan_out_options(p)
    p.set_defaults(func=cmd_precompute)

    p = sub.add_parser("refresh", help="the scheduled batch job: compact, snapshot, train, precompute and publish, "
                                       "unless nothing is new, an A/B test is served or a rollback would be undone")
    p.add_argument("--model", default="forecast-dae", help="model kind to train (default %(default)s)")
    p.add_argument("--no-evaluate", action="store_true", help="skip the offline evaluation against baselines")
    p.add_argument("--force", action="store_true",
                   help="train and publish even with nothing new, during an A/B test or after a rollback")
    p.add_argument("--report", metavar="PATH", help="also write each step's wall time and peak RSS there (JSON)")
    _fan_out_options(p)
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("publish", help="validate a run and make it the served one (two runs: an A/B split)")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    p.add_argument("--shares", type=shares, help="A/B shares, e.g. 0.5,0.5")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("deadletters", help="list the events Knative could not deliver, or replay them")
    p.add_argument("action", nargs="?", choices=("list", "replay"), default="list")
    p.add_argument("--since", metavar="YYYY-MM-DD", type=day, help="only dead letters that arrived on or after this day")
    p.add_argument("--url", help="replay: where to send them (ingest's URL for stream lines)")
    p.add_argument("--type", action="append", metavar="TYPE",
                   help="replay: event types to send (repeatable; default the stream's: "
                        "dev.knative.kafka.event, movierec.stream.line.v1)")
    p.add_argument("--concurrency", type=positive(int), default=8, help="replay: events in flight (default %(default)s)")
    p.set_defaults(func=cmd_deadletters)

    p = sub.add_parser("rollback", help="republish the publication before the current one; again steps further back (up to 10)")
    p.set_defaults(func=cmd_rollback)

    from movierec.evaluation.command import register as register_evaluate
    from movierec.experiments.command import register as register_experiments

    register_evaluate(sub)
    register_experiments(sub)
    p = sub.add_parser("simulate", help="an A/B test end to end: simulated users react to a good and a weak model")
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--days", type=int, default=2, help="simulated days of sessions (default %(default)s)")
    p.add_argument("--sessions", type=int, default=3, help="recommendation requests per user (default %(default)s)")
    p.add_argument("--good", default="popularity", help="model kind of variant B (default %(default)s)")
    p.add_argument("--weak", default="random", help="model kind of variant A, the control (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store-dir", help="store to build the world in (default: a new temporary directory)")
    p.add_argument("--out", default="simulate-report", help="directory for the A/B report (default %(default)s)")
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except MovierecError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except MovierecError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
