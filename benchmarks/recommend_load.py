"""recommend at the limit of its framework: (a) recommend with 1 M users published, (b) a trivial
functions-framework handler under the same server settings, (c) nginx serving a static file.
A second, identical trivial server (b') runs interleaved with (a) and (b): how far (b')/(b) strays
from 1 is how far this run's ratios can be trusted on a shared machine. (b+m) is the trivial
handler plus recommend's metric updates: the ceiling of any handler that counts and times its
answers as recommend does, which (a)/(b) can approach but not pass.

    .venv/bin/python benchmarks/recommend_load.py

Installs wrk and nginx with apt-get when missing. Uses the 1 M-user store of
benchmarks/precompute_scale.py when it has a published run, else publishes a
synthetic run of the same shape (1 M users, 27,000 movies, 32 shards). Prints tables and writes
benchmarks/results/recommend-<date>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Self

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import report
from movierec.index import VariantIndex
from movierec.processes import free_port, wait_until
from movierec.recs import current_variants, load_run, read_current
from movierec.store import LocalStore

CONNECTIONS = (1, 16, 64)
# Both handlers are async (@aio.http): functions-framework serves them with uvicorn, which picks up
# uvloop and httptools from the `recommend` extra. Every answer updates two Prometheus metrics: in
# multiprocess mode (what several workers need) each update writes a memory-mapped file.
DEPLOYED = "WORKERS=2"  # knative/base/service-recommend.yaml: the main table and the cold starts
CONFIGS = {  # name: (WORKERS, Prometheus multiprocess mode)
    "1 worker": (1, True),
    "WORKERS=2": (2, True),
    "1 worker, in-process metrics": (1, False),
}
LUA = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end  -- a file: LuaJIT caps a function's constants
request = function() return wrk.format("GET", "%s" .. ids[math.random(#ids)]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("JSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"non2xx\\": %%d, \\"socket_errors\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def ensure_tools() -> None:
    if shutil.which("wrk") and shutil.which("nginx"):
        return
    lock = ["-o", "DPkg::Lock::Timeout=600"]  # other jobs on the machine may hold the apt lock
    subprocess.run(["apt-get", *lock, "update", "-qq"], check=True)
    subprocess.run(["apt-get", *lock, "install", "-y", "-qq", "wrk", "nginx"], check=True,
                   env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"})


def ensure_published(root: Path, users: int, partitions: int = 32) -> tuple[LocalStore, VariantIndex]:
    """The store's published run; else a synthetic run of `users` users published straight into it:
    recommend reads only run.json, the model's popular list and the shards (a trained model and
    its snapshot would cost gigabytes to build and change nothing here)."""
    store = LocalStore(root)
    if not store.exists("recs/CURRENT"):
        from benchmarks.precompute_world import movie_slugs
        from movierec.partitioning import partitions_of
        from movierec.precompute import encode_shard
        from movierec.recs import shard_key
        from pipelines.fanout import start_run
        from pipelines.publish import publish

        rng = np.random.default_rng(0)
        movies = np.sort(movie_slugs(27_000))
        version = "bench-recommend"
        store.put(f"models/{version}/card.json", json.dumps({"version": version, "snapshot_id": "bench"}).encode())
        store.put(f"models/{version}/popular.json", json.dumps(movies[:100].tolist()).encode())
        run = start_run(store, version, partitions=partitions, top_k=20)
        user_ids = np.sort(rng.choice(4 * users, size=users, replace=False)).astype(np.int64)  # as precompute_world
        for p in range(partitions):
            mine = user_ids[partitions_of(user_ids, partitions) == p]
            start, step = rng.integers(0, 27_000, len(mine)), rng.integers(1, 27_000 // 20, len(mine))
            best = (start[:, None] + step[:, None] * np.arange(20)) % 27_000  # 20 distinct movies a user
            store.put(shard_key(run.run_id, p, partitions), encode_shard(mine, best, movies))
        publish(store, [run.run_id], validate=False)
    index = VariantIndex.open(store, current_variants(read_current(store))[0]).load_all()
    return store, index


class Server:
    def __init__(self, command: list[str], env: dict[str, str], url: str):
        self.command, self.env, self.url = command, env, url
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        self.started = time.perf_counter()
        self.log = tempfile.NamedTemporaryFile(prefix="movierec-bench-", suffix=".log", delete=False)
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def wait(self, path: str, check=lambda r: r.status_code == 200, timeout: float = 60) -> float:
        """Seconds from process start until GET path passes `check`."""
        wait_until(lambda: check(requests.get(self.url + path, timeout=5)), self.process, timeout=timeout,
                   what=f"{self.command[:4]} (log: {self.log.name})", poll=0.005)
        return time.perf_counter() - self.started

    def pids(self) -> list[int]:
        """The server process and its descendants (gunicorn's workers)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
                found.append(pid)
            except FileNotFoundError:
                pass
        return found

    def peak_rss_mb(self) -> list[float]:
        status = [_proc(pid, "status") for pid in self.pids()]
        return [int(s.split("VmHWM:")[1].split()[0]) / 1024 for s in status if "VmHWM:" in s]

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server's processes so far."""
        ticks = 0
        for stat in filter(None, (_proc(pid, "stat") for pid in self.pids())):
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc) -> None:
        if metrics_dir := self.env.get("PROMETHEUS_MULTIPROC_DIR"):
            shutil.rmtree(metrics_dir, ignore_errors=True)
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()


def function_server(source: Path, target: str, store: Path, workers: int, multiprocess: bool,
                    env: dict | None = None) -> Server:
    """A function served as Knative serves it (knative/base/service-recommend.yaml): `workers`
    uvicorn workers and, when `multiprocess`, Prometheus multiprocess mode with a directory of its own."""
    port = free_port()
    command = [sys.executable, "-m", "functions_framework", "--source", str(source), "--target", target,
               "--host", "127.0.0.1", "--port", str(port)]
    env = os.environ | (env or {}) | {"MOVIEREC_STORE": str(store), "WORKERS": str(workers)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if multiprocess:
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="movierec-bench-prom-")
    return Server(command, env, f"http://127.0.0.1:{port}")


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict:
    command = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-s", str(script),
               "-d", f"{seconds}s", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    stats = json.loads(re.search(r"^JSON (.*)$", out, re.MULTILINE).group(1))
    return {"connections": connections, "requests": stats["requests"], "rps": stats["requests"] / (stats["duration_us"] / 1e6),
            "p50_ms": stats["p50_us"] / 1000, "p99_ms": stats["p99_us"] / 1000,
            "non2xx": stats["non2xx"], "socket_errors": stats["socket_errors"]}


def _proc(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except FileNotFoundError:
        return ""


def median_row(runs: list[dict]) -> dict:
    row = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
    return row | {"connections": runs[0]["connections"], "runs": len(runs), "rps_runs": [r["rps"] for r in runs],
                  "non2xx": sum(r["non2xx"] for r in runs), "socket_errors": sum(r["socket_errors"] for r in runs)}


def interleaved(servers: list[tuple[Server, Path]], seconds: int, repeats: int) -> list[list[dict]]:
    """Rows for each server at 1/16/64 connections; runs alternate between servers so that
    the other jobs on a shared machine disturb every row alike. Medians of `repeats` runs."""
    for server, script in servers:
        wrk(server.url, script, 16, 1)  # warm-up
    rows: list[list[dict]] = [[] for _ in servers]
    for connections in CONNECTIONS:
        runs: list[list[dict]] = [[] for _ in servers]
        for _ in range(repeats):
            for i, (server, script) in enumerate(servers):
                cpu = server.cpu_seconds()
                run = wrk(server.url, script, connections, seconds)
                used = server.cpu_seconds() - cpu  # the server's CPU per answer, whatever wrk and others take
                runs[i].append(run | {"cpu_us": used / max(run["requests"], 1) * 1e6})
        for i in range(len(servers)):
            rows[i].append(median_row(runs[i]))
    return rows


def nginx(workdir: Path, body: str) -> Server:
    (workdir / "www").mkdir(exist_ok=True)
    (workdir / "www" / "recommend.txt").write_text(body)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
worker_processes auto; pid {workdir}/nginx.pid; error_log {workdir}/nginx.err; daemon off; user root;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {workdir}; proxy_temp_path {workdir};
  fastcgi_temp_path {workdir}; uwsgi_temp_path {workdir}; scgi_temp_path {workdir};
  server {{ listen 127.0.0.1:{port}; root {workdir}/www; }} }}
""")
    return Server(["nginx", "-c", str(conf), "-p", str(workdir)], dict(os.environ), f"http://127.0.0.1:{port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="/tmp/movierec-bench/world-1000000")
    parser.add_argument("--users", type=int, default=1_000_000, help="users when the store must be built")
    parser.add_argument("--seconds", type=int, default=4, help="per wrk run (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="wrk runs per row, interleaved; medians reported")
    parser.add_argument("--sample", type=int, default=200_000, help="distinct known users asked (default %(default)s)")
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also serve recommend from this checkout (e.g. a `git worktree` of the previous "
                             "commit), interleaved with (a) and (b): before and after in the same run")
    args = parser.parse_args()
    ensure_tools()
    store_root = Path(args.store)
    store, index = ensure_published(store_root, args.users)
    run = load_run(store, index.run.run_id)
    users = sum(len(index.shard(p).user_ids) for p in range(run.partitions))
    print(f"published run {run.run_id}: {users:,} users, {run.partitions} shards")
    rng = np.random.default_rng(1)
    # Nearly every recommendation request in the course stream is from a different user: ask many
    # distinct users (no cache can help) and 5 % new ones (the popular fallback).
    known = np.concatenate([index.shard(p).user_ids for p in range(run.partitions)])
    sample = rng.choice(known, min(args.sample, len(known)), replace=False)
    ids = [str(u) for u in sample] + [str(10**12 + i) for i in range(len(sample) // 19)]
    args.asked = len(ids)
    workdir = Path(tempfile.mkdtemp(prefix="movierec-bench-"))
    (workdir / "ids.txt").write_text("\n".join(ids) + "\n")
    (workdir / "none.txt").write_text("\n")
    (workdir / "recommend.lua").write_text(LUA % (workdir / "ids.txt", "/recommend/"))
    (workdir / "static.lua").write_text(LUA % (workdir / "none.txt", "/recommend.txt"))
    recommend_src, trivial_src = REPO / "functions/recommend/main.py", REPO / "benchmarks/recommend_trivial.py"

    tuning = {}
    loaded = 'reloads_total{outcome="loaded"} 1'
    for name, (workers, multiprocess) in CONFIGS.items():
        with ExitStack() as servers:
            server_a = servers.enter_context(function_server(recommend_src, "recommend", store_root, workers, multiprocess))
            trivial = [servers.enter_context(function_server(trivial_src, target, store_root, workers, multiprocess))
                       for target in ("trivial", "trivial", "trivial_counted")]  # (b), its control (b'), (b+m)
            recommends = [server_a]
            if args.before:  # the checkout's library first on the path, ahead of this one's editable install
                recommends.append(servers.enter_context(function_server(
                    args.before / "functions/recommend/main.py", "recommend", store_root,
                    workers, multiprocess, {"PYTHONPATH": str(args.before / "src")})))
            for server in recommends:
                server.wait("/metrics", lambda r: loaded in r.text, timeout=120)
            for server in trivial:
                server.wait("/")
            script = workdir / "recommend.lua"
            rows = interleaved([(server, script) for server in [server_a, *trivial, *recommends[1:]]],
                               args.seconds, args.repeats)
            rss_a = server_a.peak_rss_mb()
        tuning[name] = ({"a": rows[0], "b": rows[1], "b_control": rows[2], "b_metrics": rows[3], "peak_rss_mb": rss_a}
                        | ({"a_before": rows[4]} if args.before else {}))
        print(f"{name}: (a) {_rates(rows[0])} req/s; (b) {_rates(rows[1])}; (b') {_rates(rows[2])}; "
              f"(b+m) {_rates(rows[3])} at 1/16/64 connections"
              + (f"; (a) before {_rates(rows[4])}" if args.before else ""), flush=True)
    with nginx(workdir, index.popular_text.decode()) as server:
        server.wait("/recommend.txt")
        [rows_c] = interleaved([(server, workdir / "static.lua")], args.seconds, args.repeats)
    best = DEPLOYED

    # Cold start under the chosen settings: process start to the first correct answer.
    user = int(sample[0])
    expected = index.answer(user).text.decode()
    _, multiprocess = CONFIGS[best]
    cold, full = [], []
    for _ in range(args.cold_starts):
        with function_server(recommend_src, "recommend", store_root, 1, multiprocess) as server:
            cold.append(server.wait(f"/recommend/{user}", lambda r: r.status_code == 200 and r.text == expected))
            full.append(server.wait("/metrics", lambda r: 'reloads_total{outcome="loaded"} 1' in r.text))
            rss_cold = server.peak_rss_mb()
    trivial_cold = []
    for _ in range(args.cold_starts):
        with function_server(trivial_src, "trivial", store_root, 1, multiprocess) as server:
            trivial_cold.append(server.wait("/"))
    write_report(args, run, users, tuning, rows_c, best, cold, full, trivial_cold, rss_cold)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _rates(rows: list[dict]) -> str:
    return " / ".join(f"{r['rps']:,.0f}" for r in rows)


def write_report(args, run, users, tuning, rows_c, best, cold, full, trivial_cold, rss_cold) -> None:
    machine = report.machine()
    rows_a, rows_b, rows_b2, rows_bm = (tuning[best][k] for k in ("a", "b", "b_control", "b_metrics"))

    def line(label, rows):
        return f"| {label} | " + " | ".join(f"{r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}" for r in rows) + " |"

    head = ["| row | " + " | ".join(f"req/s @{c} | p50 ms | p99 ms" for c in CONNECTIONS) + " |",
            "|---|" + "---:|" * (3 * len(CONNECTIONS))]
    main_table = head + [line("(a) recommend, 1 M users", rows_a), line("(b) trivial handler", rows_b),
                         line("(b+m) trivial handler + recommend's metric updates", rows_bm),
                         line("(c) nginx static file", rows_c)]
    ratio = [("| connections | (a)/(b) req/s | (a)/(b) p99 | server CPU µs per answer (a) / (b+m) / (b) "
             "| ceiling: (b+m)/(b) req/s | control: (b')/(b) req/s | (b')/(b) p99 |"),
             "|---:|---:|---:|---:|---:|---:|---:|"] + [
        f"| {ra['connections']} | {ra['rps'] / rb['rps']:.2f} | {ra['p99_ms'] / rb['p99_ms']:.2f} "
        f"| {ra['cpu_us']:.0f} / {rm['cpu_us']:.0f} / {rb['cpu_us']:.0f} | {rm['rps'] / rb['rps']:.2f} "
        f"| {rc['rps'] / rb['rps']:.2f} | {rc['p99_ms'] / rb['p99_ms']:.2f} |"
        for ra, rb, rc, rm in zip(rows_a, rows_b, rows_b2, rows_bm)]
    def ratios(top, bottom):
        return " / ".join(f"{x['rps'] / y['rps']:.2f}" for x, y in zip(top, bottom))

    tune = [("| settings | (a) req/s @1/16/64 | (b) req/s @1/16/64 | (a)/(b) req/s @1/16/64 | (b+m)/(b) | (b')/(b) "
             "| CPU µs per answer (a) / (b) @16 | (a) p99 ms @16/64 | peak RSS MB per process |"),
            "|---|---|---|---|---|---|---|---|---|"] + [
        f"| {n} | {_rates(t['a'])} | {_rates(t['b'])} | {ratios(t['a'], t['b'])} | {ratios(t['b_metrics'], t['b'])} "
        f"| {ratios(t['b_control'], t['b'])} "
        f"| {t['a'][1]['cpu_us']:.0f} / {t['b'][1]['cpu_us']:.0f} "
        f"| {t['a'][1]['p99_ms']:.1f} / {t['a'][2]['p99_ms']:.1f} "
        f"| {', '.join(f'{m:.0f}' for m in t['peak_rss_mb'])} |"
        for n, t in tuning.items()]
    errors = sum(r["non2xx"] + r["socket_errors"] for t in tuning.values() for r in t["a"])
    before = []
    if args.before:
        before = [f"## (a) before and after, same run: {args.before}", "",
                  "| settings | connections | (a) before / (b) req/s | (a) after / (b) req/s | server CPU µs per answer, before / after / (b) |",
                  "|---|---:|---:|---:|---:|"] + [
            f"| {n} | {ra['connections']} | {r0['rps'] / rb['rps']:.2f} | {ra['rps'] / rb['rps']:.2f} "
            f"| {r0['cpu_us']:.0f} / {ra['cpu_us']:.0f} / {rb['cpu_us']:.0f} |"
            for n, t in tuning.items() for r0, ra, rb in zip(t["a_before"], t["a"], t["b"])] + [""]
    text = "\n".join([
        f"# recommend under load, {date.today()}", "",
        f"Machine: {machine}; load average at the end {os.getloadavg()[0]:.1f} (other jobs share it).",
        (f"Published run {run.run_id}: {users:,} users in {run.partitions} shards. wrk, median of {args.repeats} runs of {args.seconds} s a row, "
        f"(a), (b), (b') and (b+m) interleaved, ids drawn from {args.asked:,}: {args.sample:,} distinct known users and 5 % new ones. Both served alike: the WORKERS shown, PROMETHEUS_MULTIPROC_DIR set unless the settings say in-process metrics. Non-2xx or socket errors in (a): {errors}."),
        "", f"## Rows (a), (b), (c) as deployed: {best}", "", *main_table, "", *ratio, "",
        ("(b') is a second trivial server, identical to (b) and interleaved with it: (b')/(b) is how far two identical "
        "servers differ in this run, the resolution of every ratio above. (b+m)/(b) is what counting and timing "
        "each answer costs (one `.inc()`, one `.observe()`, three writes into memory-mapped files in multiprocess "
        "mode): no handler that makes those updates can exceed it."), "",
        "## Server settings tried (same run)", "", *tune, "", *before,
        f"## Cold start ({best}, 1 worker, {len(cold)} starts)", "",
        (f"- process start to the first correct answer: median **{statistics.median(cold):.2f} s** "
        f"(min {min(cold):.2f}, max {max(cold):.2f})"),
        (f"- process start to every shard loaded (what loading at start would cost): median "
        f"{statistics.median(full):.2f} s"),
        f"- trivial handler, process start to first answer: median {statistics.median(trivial_cold):.2f} s",
        f"- peak RSS after the full load: {', '.join(f'{m:.0f}' for m in rss_cold)} MB (gunicorn arbiter, worker)", ""])
    print("\n" + text)
    report.write_results("recommend", text, {
        "machine": machine, "users": users, "run": run.run_id, "best": best,
        "tuning": tuning, "nginx": rows_c, "cold_start_s": cold, "full_load_s": full,
        "trivial_cold_start_s": trivial_cold, "peak_rss_mb_cold": rss_cold})


if __name__ == "__main__":
    sys.exit(main())
