"""Ingest benchmark: one instance over HTTP against the in-process limit, and a 10M-line snapshot.

    .venv/bin/python benchmarks/ingest_bench.py [--seconds 10] [--snapshot-lines 10000000]

Rows: single-event requests at 32 connections (wrk, binary CloudEvents),
batched requests (`movierec replay`'s client), and the in-process rate of
writing the same records to parquet in the same store, the limit both are
compared with. Then a snapshot of synthetic lines: time and peak memory.
Results go to benchmarks/results/ingest-<date>.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import report
from movierec.events import SCHEMAS, event_from_line, write_events
from movierec.processes import FunctionProcess
from movierec.replay import replay
from movierec.store import LocalStore
from movierec.synthetic import make_world, stream_lines

WRK_SCRIPT = """
local n = 0
local lines = {%s}
request = function()
  n = n + 1
  local id = tostring(n) .. "-" .. tostring(math.random(1, 1000000000))
  local headers = {["ce-specversion"]="1.0", ["ce-type"]="movierec.stream.line.v1", ["ce-source"]="bench",
                   ["ce-id"]=id, ["Content-Type"]="text/plain"}
  return wrk.format("POST", "/", headers, lines[(n %% #lines) + 1])
end
"""


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        subprocess.run("apt-get update -qq && apt-get install -y -qq wrk", shell=True, check=True)
    return shutil.which("wrk")


def wrk_run(url: str, lines: list[str], *, connections: int, seconds: int) -> dict:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(WRK_SCRIPT % ",".join(json.dumps(line) for line in lines[:1000]))
    out = subprocess.run(
        [ensure_wrk(), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _wrk_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))
    p99 = _wrk_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"lines_per_s": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def in_process_limit(lines: list[str], batch: int) -> float:
    """Lines/s of parse + write_events into a fresh local store, the same records as over HTTP."""
    store = LocalStore(tempfile.mkdtemp(prefix="limit-"))
    started = time.perf_counter()
    for start in range(0, len(lines), batch):
        chunk = lines[start : start + batch]
        write_events(store, [event_from_line("limit", str(start + i), l.encode()) for i, l in enumerate(chunk)])
    return len(lines) / (time.perf_counter() - started)


def write_synthetic_events(store: LocalStore, total: int, *, users: int = 200_000, movies: int = 27_000) -> None:
    """`total` watch and rate events written straight as event-log files (vectorised, no parsing)."""
    rng = np.random.default_rng(0)
    slugs = np.array([f"movie+{i}+{1950 + i % 75}" for i in range(movies)], dtype=object)
    popularity = 1.0 / np.arange(1, movies + 1) ** 0.9
    popularity /= popularity.sum()
    received = pa.scalar(0, pa.timestamp("us", tz="UTC"))
    per_file, done = 100_000, 0
    while done < total:
        n = min(per_file, total - done)
        user = rng.integers(1, users, n)
        movie = rng.choice(movies, n, p=popularity)
        when = np.datetime64("2026-11-01") + rng.integers(0, 28 * 86_400, n).astype("timedelta64[s]")
        common = {"event_source": pa.array(["bench"] * n), "event_id": pa.array(np.arange(done, done + n).astype(str)),
                  "received_at": pa.array([received.value] * n, pa.timestamp("us", tz="UTC")),
                  "time": pa.array(when.astype("datetime64[us]")), "user_id": pa.array(user)}
        is_rate = rng.random(n) < 0.1
        for kind, mask in (("watch", ~is_rate), ("rate", is_rate)):
            columns = {k: v.filter(pa.array(mask)) for k, v in common.items()}
            columns["movie_id"] = pa.array(slugs[movie[mask]].tolist())
            if kind == "watch":
                columns["minute"] = pa.array(rng.integers(0, 120, mask.sum()), pa.int32())
            else:
                columns["rating"] = pa.array(rng.integers(1, 6, mask.sum()), pa.int16())
            table = pa.table(columns, schema=SCHEMAS[kind])
            store.put_parquet(f"events/kind={kind}/date=2026-11-01/synthetic-{done:012d}.parquet", table)
        done += n


SNAPSHOT_CHILD = """
import json, resource, sys, time
from movierec.store import LocalStore
from pipelines.snapshot import make_snapshot
started = time.perf_counter()
manifest, _ = make_snapshot(LocalStore(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "interactions": manifest["counts"]["interactions"]}))
"""


def snapshot_bench(total: int) -> dict:
    store = LocalStore(tempfile.mkdtemp(prefix="snap-"))
    write_synthetic_events(store, total)
    out = subprocess.run([sys.executable, "-c", SNAPSHOT_CHILD, str(store.root)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1])
    shutil.rmtree(store.root)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; medians are reported")
    parser.add_argument("--snapshot-lines", type=int, default=10_000_000)
    parser.add_argument("--workers", default="2", help="WORKERS (uvicorn processes) for ingest")
    args = parser.parse_args()

    lines = list(stream_lines(make_world(users=3000, seed=1), seed=1))[:200_000]
    env = {"WORKERS": args.workers}
    if int(args.workers) > 1:  # as deployed: several workers sum their metrics through a directory
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prom-")
    rows: dict[str, list[dict]] = {"single": [], "batched": []}
    limits = []
    for _ in range(args.repeats):
        limits.append(in_process_limit(lines, 5000))
        with FunctionProcess("ingest", store=tempfile.mkdtemp(prefix="ingest-"), env=env) as ingest:
            rows["single"].append(wrk_run(ingest.url, lines, connections=32, seconds=args.seconds))
            stats = replay(ingest.url, lines, source="bench", batch_size=1000, concurrency=4)
            lat = np.array(stats.latencies) * 1000
            rows["batched"].append({"lines_per_s": stats.lines / stats.seconds, "p50_ms": float(np.percentile(lat, 50)),
                                    "p99_ms": float(np.percentile(lat, 99)), "non_2xx": sum(
                                        v for k, v in stats.statuses.items() if k >= 300)})
    limit = statistics.median(limits)
    snap = snapshot_bench(args.snapshot_lines)

    def med(mode, key):
        return statistics.median(r[key] for r in rows[mode])

    table = [
        "| mode | lines/s (median) | p50 ms | p99 ms | non-2xx | ratio to limit | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
        (f"| single-event requests, 32 connections | {med('single', 'lines_per_s'):,.0f} | {med('single', 'p50_ms'):.1f} | "
        f"{med('single', 'p99_ms'):.1f} | {sum(r['non_2xx'] for r in rows['single'])} | {med('single', 'lines_per_s') / limit:.3f} | ≥ 3,000 |"),
        (f"| batched requests (1,000 events, 4 connections) | {med('batched', 'lines_per_s'):,.0f} | {med('batched', 'p50_ms'):.1f} | "
        f"{med('batched', 'p99_ms'):.1f} | {sum(r['non_2xx'] for r in rows['batched'])} | {med('batched', 'lines_per_s') / limit:.3f} | ≥ 50,000 |"),
        f"| limit: parse + write_events in-process, same records, same store | {limit:,.0f} | | | | 1.000 | |",
        "",
        "| snapshot | lines | seconds | peak RSS MB | interactions |",
        "|---|---:|---:|---:|---:|",
        f"| synthetic, 200k users × 27k movies | {args.snapshot_lines:,} | {snap['seconds']:.1f} | {snap['peak_rss_mb']:,.0f} | {snap['interactions']:,} |",
    ]
    header = (f"# Ingest benchmark, {date.today()}\n\nMachine: {report.machine()}, "
              f"Python {platform.python_version()}; ingest under functions-framework (async handler, uvicorn) with "
              f"WORKERS={args.workers}, local-directory store; {args.repeats} runs of {args.seconds} s per row, medians.\n\n")
    text = header + "\n".join(table) + "\n"
    print(text)
    report.write_results("ingest", text)


if __name__ == "__main__":
    main()
