"""Precompute at course scale against its limit, the bare matrix products of the same shapes.

    .venv/bin/python benchmarks/precompute_scale.py            # 1 M users x 27,000 movies
    .venv/bin/python benchmarks/precompute_scale.py --users 50000 --configs 2x1,4x2   # a quick look

Prints a table and writes benchmarks/results/precompute-<date>.{md,json}.
The last run is published, so benchmarks/recommend_load.py serves it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import report
from benchmarks.precompute_world import build_world
from movierec.models.registry import load_model
from movierec.precompute import BATCH_USERS
from movierec.processes import FunctionProcess
from pipelines.fanout import run_remote, start_run
from pipelines.publish import publish, validate_run


def tree_peak_rss_mb(pid: int) -> float:
    """The largest VmHWM among a process and its descendants (gunicorn forks the worker)."""
    peak, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) / 1024)
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return peak


def bare_products(store, version: str, repeats: int) -> list[float]:
    """Seconds for U[batch] @ V.T over every user, the batches precompute uses: nothing else."""
    model = load_model(store, version).model
    users = torch.from_numpy(model.user_factors)
    movies_t = torch.from_numpy(model.movie_factors).T
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(users), BATCH_USERS):
            users[start : start + BATCH_USERS] @ movies_t
        times.append(time.perf_counter() - started)
    return times


def fan_out(store, version: str, partitions: int, workers: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // workers)
    started = time.perf_counter()
    with ExitStack() as stack:
        procs = [stack.enter_context(FunctionProcess("precompute", store=store.uri,
                                                     env={"OMP_NUM_THREADS": str(threads)}))
                 for _ in range(workers)]
        up = time.perf_counter() - started
        run = start_run(store, version, partitions=partitions, top_k=20)
        sends = run_remote(store, run, [p.url for p in procs], poll_seconds=0.2)
        seconds = time.perf_counter() - started
        peak = max(tree_peak_rss_mb(p.process.pid) for p in procs)
    return {"partitions": partitions, "workers": workers, "threads_per_worker": threads,
            "seconds": seconds, "start_seconds": up, "peak_rss_mb_per_worker": peak,
            "resends": sum(sends.values()) - partitions, "run_id": run.run_id}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--store", help="world cache directory (default /tmp/movierec-bench/world-<users>)")
    parser.add_argument("--configs", default="8x2,2x1,32x2",
                        help="partitions x workers to run, comma-separated (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="bare-product repeats (median is reported)")
    args = parser.parse_args()
    root = Path(args.store or f"/tmp/movierec-bench/world-{args.users}")
    store, version = build_world(root, users=args.users, movies=args.movies)
    print(f"store {root}, model {version}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    limit = statistics.median(bare_products(store, version, args.repeats))
    print(f"bare products: {limit:.1f} s (median of {args.repeats})")
    for config in args.configs.split(","):
        partitions, workers = (int(x) for x in config.split("x"))
        row = fan_out(store, version, partitions, workers)
        row["vs_limit"] = row["seconds"] / limit
        rows.append(row)
        print(f"  {partitions} partitions x {workers} workers: {row['seconds']:.1f} s "
              f"({row['vs_limit']:.2f}x the limit), peak {row['peak_rss_mb_per_worker']:.0f} MB a worker")
    best = min(rows, key=lambda r: r["seconds"])
    started = time.perf_counter()
    users = validate_run(store, best["run_id"])
    validate_seconds = time.perf_counter() - started
    publish(store, [best["run_id"]], validate=False)  # validated just above
    print(f"validate + publish {best['run_id']}: {users:,} users in {validate_seconds:.1f} s")

    machine = report.machine()
    table = ["| partitions | workers | threads/worker | total s | × bare products | peak RSS/worker MB | re-sends |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['partitions']} | {r['workers']} | {r['threads_per_worker']} | {r['seconds']:.1f} | "
              f"{r['vs_limit']:.2f} | {r['peak_rss_mb_per_worker']:.0f} | {r['resends']} |" for r in rows]
    text = "\n".join([
        f"# precompute at {args.users:,} users x {args.movies:,} movies, {date.today()}", "",
        f"Machine: {machine}; load average at the end {os.getloadavg()[0]:.1f}.",
        (f"Bare products U[{BATCH_USERS}] @ V.T over every user (torch, {torch.get_num_threads()} threads): "
        f"**{limit:.1f} s** (median of {args.repeats}). Goal: total within 2x."), "",
        *table, "",
        f"Publish validation of {users:,} users: {validate_seconds:.1f} s.", ""])
    print("\n" + text)
    report.write_results("precompute", text, {
        "machine": machine, "users": args.users, "movies": args.movies,
        "bare_products_seconds": limit, "runs": rows, "validate_seconds": validate_seconds,
        "published_run": best["run_id"], "store": str(root)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
