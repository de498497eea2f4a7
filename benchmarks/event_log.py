"""Event-log benchmark: objects and bytes at the stream's pace, compaction, snapshots at scale.

    .venv/bin/python benchmarks/event_log.py [--scale-lines 1000000 30000000] [--new-lines 1000000] [--no-pace]

1. Pace: synthetic stream lines sent to a real `ingest` process one binary CloudEvent per request
   (as a KafkaSource sends them), 8 in flight, at several rates, and batched (`movierec replay`'s
   500 per request). Per run: objects per 1,000 lines and bytes per line before and after
   compaction, ingest p50/p99, compaction time, snapshot time.
2. Scale, for each of `--scale-lines`: a month of the log as compaction leaves it (watch minutes of
   1 M users over 27,000 movies, a rating per ~30 lines, 1 % redelivered), written directly as
   event parquet; then a night of `--new-lines` lines in ingest-sized files (1,000 lines each).
   Each step runs in its own process, which reports its time and peak RSS: the snapshot from
   scratch, the night's compaction, the incremental snapshot, and a full rebuild, whose id must
   equal the incremental one.
Results go to benchmarks/results/event_log-<date>.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import report
from movierec.compaction import compact
from movierec.events import SCHEMAS
from movierec.processes import FunctionProcess
from movierec.replay import replay
from movierec.store import LocalStore
from movierec.synthetic import make_world, stream_lines
from pipelines.snapshot import make_snapshot

PACES = [(20, 300), (200, 2_000), (2_000, 6_000)]  # (lines per second, lines)
BATCHED_LINES = 20_000
IN_FLIGHT = 8
USERS, MOVIES, DAYS = 1_000_000, 27_000, 30
STEP = """
import json, resource, sys, time
from movierec.store import LocalStore
started = time.perf_counter()
store = LocalStore(sys.argv[1])
if sys.argv[2] == "compact":
    from movierec.compaction import compact
    done = compact(store); out = {"files_in": done.files_in, "files_out": done.files_out}
else:
    from pipelines.snapshot import make_snapshot
    manifest, _ = make_snapshot(store, full=sys.argv[2] == "full")
    out = {"id": manifest["id"], "base": manifest["built_from"]["base"], "counts": manifest["counts"]}
out |= {"seconds": time.perf_counter() - started, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
print(json.dumps(out))
"""


def footprint(root: Path) -> tuple[int, int]:
    files = [p for p in (root / "events").rglob("*.parquet")]
    return len(files), sum(p.stat().st_size for p in files)


def pace_run(work: Path, name: str, lines: list[str], *, rate: float | None, batch_size: int) -> dict:
    root = work / name.replace("/", "-per-")
    with FunctionProcess("ingest", store=str(root)) as ingest:
        stats = replay(ingest.url, lines, source=f"bench/{name}", batch_size=batch_size,
                       concurrency=IN_FLIGHT, rate=rate)
    objects, size = footprint(root)
    store = LocalStore(root)
    done = compact(store)
    after_objects, after_size = footprint(root)
    started = time.perf_counter()
    make_snapshot(store)
    latencies = np.array(stats.latencies) * 1000
    return {
        "run": name, "lines": len(lines), "achieved_lines_per_s": len(lines) / stats.seconds,
        "objects_per_1000_lines": 1000 * objects / len(lines), "bytes_per_line": size / len(lines),
        "objects_per_1000_lines_after": 1000 * after_objects / len(lines), "bytes_per_line_after": after_size / len(lines),
        "ingest_p50_ms": float(np.percentile(latencies, 50)), "ingest_p99_ms": float(np.percentile(latencies, 99)),
        "compaction_s": done.seconds, "snapshot_s": time.perf_counter() - started,
    }


def watch_table(rng, lines: int, first_id: int, day0: int, days: int) -> pa.Table:
    """Watch lines as ingest stores them: sessions of consecutive minutes, popular movies more often."""
    sessions = lines // 30 + 10  # sessions average 40 minutes: enough for `lines`
    users = rng.integers(1, USERS + 1, sessions)
    movies = (rng.zipf(1.2, sessions) - 1) % MOVIES
    length = rng.integers(1, 80, sessions)
    start = rng.integers(day0 * 86_400, (day0 + days) * 86_400, sessions)
    session = np.repeat(np.arange(sessions), length)[:lines]
    minute = (np.arange(len(session)) - np.repeat(np.cumsum(length) - length, length)[:lines]).astype(np.int32)
    seconds = start[session] + minute * 60
    table = _common(rng, len(session), first_id, seconds)
    slugs = pa.array([f"movie+number+{m}+{1950 + m % 70}" for m in range(MOVIES)])
    return table.append_column("user_id", pa.array(users[session])) \
        .append_column("movie_id", slugs.take(pa.array(movies[session]))) \
        .append_column("minute", pa.array(minute)).select(SCHEMAS["watch"].names).cast(SCHEMAS["watch"])


def rate_table(rng, lines: int, first_id: int, day0: int, days: int) -> pa.Table:
    seconds = rng.integers(day0 * 86_400, (day0 + days) * 86_400, lines)
    slugs = pa.array([f"movie+number+{m}+{1950 + m % 70}" for m in range(MOVIES)])
    table = _common(rng, lines, first_id, seconds)
    return table.append_column("user_id", pa.array(rng.integers(1, USERS + 1, lines))) \
        .append_column("movie_id", slugs.take(pa.array((rng.zipf(1.2, lines) - 1) % MOVIES))) \
        .append_column("rating", pa.array(rng.integers(1, 6, lines).astype(np.int16))) \
        .select(SCHEMAS["rate"].names).cast(SCHEMAS["rate"])


def _common(rng, n: int, first_id: int, seconds: np.ndarray) -> pa.Table:
    ids = np.arange(first_id, first_id + n)
    redelivered = rng.random(n) < 0.01  # the same event again: same id, same line
    ids[redelivered] = np.maximum(ids[redelivered] - 1, first_id)
    time_us = (np.datetime64("2026-11-01", "us") + seconds.astype("timedelta64[s]")).astype("datetime64[us]")
    return pa.table({"event_source": pa.array(["bench"] * n), "event_id": pc.cast(pa.array(ids), pa.string()),
                     "received_at": pa.array(time_us, pa.timestamp("us", tz="UTC")), "time": pa.array(time_us)})


def write_log(root: Path, lines: int, *, first_id: int, day0: int, days: int, per_file: int, name: str) -> None:
    """`lines` lines over `days` arrival days, `per_file` lines to a file (a 30th of them ratings)."""
    rng = np.random.default_rng(first_id)
    written = 0
    while written < lines:
        n = min(per_file, lines - written)
        day = day0 + (written * days) // lines
        ratings = n // 30
        for kind, table in (("watch", watch_table(rng, n - ratings, first_id + written, day, 1)),
                            ("rate", rate_table(rng, ratings, first_id + written + n, day, 1))):
            folder = root / "events" / f"kind={kind}" / f"date=2026-11-{day + 1:02d}" if day < 30 else \
                root / "events" / f"kind={kind}" / f"date=2026-12-{day - 29:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, folder / f"{name}-{written:09d}.parquet", compression="zstd",
                           row_group_size=512 * 1024)
        written += n


def step(root: Path, what: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEP, str(root), what], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scale_run(work: Path, lines: int, new_lines: int) -> dict:
    root = work
    started = time.perf_counter()
    # The month as compaction leaves it: files of up to 2 M lines (named as compacted files).
    write_log(root, lines, first_id=0, day0=0, days=DAYS, per_file=2_000_000, name="compacted-month")
    made = time.perf_counter() - started
    scratch = step(root, "snapshot")
    write_log(root, new_lines, first_id=10**12, day0=DAYS, days=1, per_file=1_000, name="night")
    before = footprint(root)
    compacted = step(root, "compact")
    incremental = step(root, "snapshot")
    full = step(root, "full")
    return {"lines": lines, "new_lines": new_lines, "generate_s": made, "scratch": scratch,
            "night_files": before[0], "compaction": compacted, "incremental": incremental, "full": full,
            "same_id": incremental["id"] == full["id"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale-lines", type=int, nargs="+", default=[1_000_000, 30_000_000])
    parser.add_argument("--new-lines", type=int, default=1_000_000)
    parser.add_argument("--no-pace", action="store_true", help="only the scale run")
    parser.add_argument("--output", default="event_log", help="result file name (default %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="event-log-") as work:
        pace, scales = run(Path(work), args)
    text = render(pace, scales)
    print(text)
    print(report.write_results(args.output, text, {"machine": report.machine(), "pace": pace, "scale": scales}))


def run(work: Path, args) -> tuple[list[dict], list[dict]]:
    pace = []
    if not args.no_pace:
        stream = [line for line, _ in zip(stream_lines(make_world(users=3000, seed=1), seed=1), range(BATCHED_LINES))]
        for rate, count in PACES:
            pace.append(pace_run(work, f"{rate}/s", stream[:count], rate=rate, batch_size=1))
            print(pace[-1], flush=True)
        pace.append(pace_run(work, "batched", stream, rate=None, batch_size=500))
        print(pace[-1], flush=True)
    scales = []
    for lines in args.scale_lines:
        scales.append(scale_run(work / f"scale-{lines}", lines, args.new_lines))
        print(json.dumps(scales[-1], indent=2), flush=True)
        shutil.rmtree(work / f"scale-{lines}")
    return pace, scales


def render(pace: list[dict], scales: list[dict]) -> str:
    lines = [f"# Event log: {time.strftime('%Y-%m-%d')}", "", f"Machine: {report.machine()}", "",
             "`.venv/bin/python benchmarks/event_log.py " + " ".join(sys.argv[1:]) + "`", ""]
    if pace:
        lines += ["## At the stream's pace (one CloudEvent per request, 8 in flight) and batched", "",
                  ("| run | lines | achieved lines/s | objects / 1,000 lines | bytes / line | after compaction: "
                  "objects / 1,000 lines | bytes / line | ingest p50 ms | p99 ms | compaction s | snapshot s |"),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['run']} | {r['lines']:,} | {r['achieved_lines_per_s']:.0f} | {r['objects_per_1000_lines']:.0f} "
                  f"| {r['bytes_per_line']:.0f} | {r['objects_per_1000_lines_after']:.1f} | {r['bytes_per_line_after']:.1f} "
                  f"| {r['ingest_p50_ms']:.1f} | {r['ingest_p99_ms']:.1f} | {r['compaction_s']:.2f} | {r['snapshot_s']:.2f} |"
                  for r in pace]
        lines.append("")
    for s in scales:
        lines += _scale_rows(s)
    return "\n".join(lines)


def _scale_rows(s: dict) -> list[str]:
    return [f"## A month of {s['lines']:,} lines, then a night of {s['new_lines']:,}", "",
              "| step | time s | peak RSS MiB | notes |", "|---|---:|---:|---|",
              (f"| snapshot from scratch | {s['scratch']['seconds']:.1f} | {s['scratch']['peak_rss_mib']:.0f} | "
              f"{s['scratch']['counts']['users']:,} users, {s['scratch']['counts']['movies']:,} movies, "
              f"{s['scratch']['counts']['interactions']:,} interactions |"),
              (f"| compaction of the night | {s['compaction']['seconds']:.1f} | {s['compaction']['peak_rss_mib']:.0f} | "
              f"{s['compaction']['files_in']:,} files into {s['compaction']['files_out']} |"),
              (f"| incremental snapshot | {s['incremental']['seconds']:.1f} | {s['incremental']['peak_rss_mib']:.0f} | "
              f"base {s['incremental']['base']} |"),
              (f"| full rebuild | {s['full']['seconds']:.1f} | {s['full']['peak_rss_mib']:.0f} | "
              f"same id as incremental: {s['same_id']} |"), ""]


if __name__ == "__main__":
    main()
