"""`movierec demo`: the whole loop on this machine, then recommend serving on 127.0.0.1:8082."""

from __future__ import annotations

import os
import subprocess

import requests
from rich.console import Console

from movierec.processes import FunctionProcess, serve_command
from pipelines.pipeline import run_loop


def _data(args, console: Console):
    """(lines, total, source) for the demo: MovieLens when given, else the built-in synthetic stream."""
    if args.movielens:
        from movierec.movielens import load_ratings, resolve, stream_lines

        path = resolve(args.movielens)
        total = len(load_ratings(path)[0])
        console.print(f"[bold]data[/] MovieLens ratings from {path} ({total:,} lines)")
        return stream_lines(path), total, f"movierec/movielens/{path.name}"
    from movierec.synthetic import make_world, stream_lines

    lines = list(stream_lines(make_world(users=args.users, seed=args.seed), seed=args.seed))
    console.print(
        f"[bold]data[/] built-in synthetic stream: {args.users:,} users, {len(lines):,} lines "
        "(pass --movielens PATH for real ratings)"
    )
    return lines, len(lines), f"movierec/synthetic/{args.seed}"


def run_demo(args, console: Console) -> int:
    console.print(f"[bold]store[/] {args.store}")
    lines, total, source = _data(args, console)
    result = run_loop(args.store, lines, total_lines=total, source=source, model_kind=args.model,
                      console=console)
    sample_users = [int(u) for u in _sample_users(args.store, result.model["version"])] + [999_999_999]
    if args.no_serve:
        with FunctionProcess("recommend", store=args.store) as recommend:
            for user in sample_users:
                answer = requests.get(f"{recommend.url}/recommend/{user}",
                                      headers={"Accept": "application/json"}, timeout=10)
                body = answer.json()
                console.print(f"GET /recommend/{user} → {answer.status_code} {body['source']}: "
                              f"{','.join(body['movies'][:5])},… ({len(body['movies'])} movies)")
        return 0
    console.print(f"[bold green]serving[/] http://127.0.0.1:{args.port}/recommend/{sample_users[0]}  (Ctrl-C stops)")
    command = serve_command("recommend", host="127.0.0.1", port=args.port)
    try:
        return subprocess.call(command, env=os.environ | {"MOVIEREC_STORE": args.store})
    except KeyboardInterrupt:
        return 0


def _sample_users(store_uri: str, version: str) -> list[int]:
    from movierec.models.registry import load_model
    from movierec.store import open_store

    return load_model(open_store(store_uri), version).user_ids[:3].tolist()
