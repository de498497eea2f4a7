"""The nightly job at course scale: a course-shaped stream through a running ingest, `movierec refresh
--local` as the CronJob runs it, recommend serving, and quality on what users watched next.

    .venv/bin/python benchmarks/course_scale.py                                  # 1 M users, 27,000 movies, ~30 M lines
    .venv/bin/python benchmarks/course_scale.py --users 100000 --lines 3000000   # a quick look

The stream's last `--future-days` are held back: the users who watch something new then are
asked of recommend over HTTP, and its answers are scored (NDCG@20, Recall@20) side by side with
recent popularity and implicit ALS fitted on the same snapshot (each peer's best setting on
this very test, which flatters the peers). Every step prints its wall time and peak RSS.
The stream, the ingested store and the refresh are kept in --workdir and reused by a later run
with the same sizes (--ingest-only prepares the first two; --again runs refresh anew). Writes benchmarks/results/course-scale.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import report
from benchmarks.precompute_scale import tree_peak_rss_mb
from movierec.course_world import DAY, future_truth, make_course_world, stream_lines
from movierec.evaluation.metrics import interaction_matrix, ndcg_at_k, recall_at_k, top_k
from movierec.evaluation.peers import ImplicitFactors, RecentPopularity
from movierec.precompute import BATCH_USERS
from movierec.processes import FunctionProcess, wait_until
from movierec.resources import measured
from movierec.snapshots import latest_snapshot_id, load_snapshot
from movierec.store import LocalStore

RESULTS = Path(__file__).resolve().parent / "results"
MOVIEREC = str(Path(sys.executable).parent / "movierec")
K = 20
READY_TIMEOUT = 300  # seconds for recommend to load the publication (0.0 s after /healthz at 1 M users)


def run_measured(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a command to completion; its wall seconds and peak RSS, the largest VmHWM seen in its process
    tree every 0.2 s (the kernel's ru_maxrss of a child also counts this process's memory at the fork)."""
    start, peak = time.perf_counter(), 0.0
    process = subprocess.Popen(command, env=env)
    while process.poll() is None:
        peak = max(peak, tree_peak_rss_mb(process.pid))
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with {process.returncode}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak, 1)}


def build_stream(args, work: Path, steps: dict) -> tuple[Path, dict[int, set[str]], int]:
    """The stream file before the cut and each future user's new movies; reused when already built."""
    path, marker = work / "stream.log", work / "stream.json"
    if not marker.exists():
        with measured(steps, "world + stream file"):
            world = make_course_world(users=args.users, movies=args.movies, lines=args.lines, days=args.days,
                                      seed=args.seed)
            cut = (args.days - args.future_days) * DAY
            lines = 0
            with path.open("w") as out:
                for line in stream_lines(world, until=cut, seed=args.seed):
                    out.write(line + "\n")
                    lines += 1
            truth = future_truth(world, cut)
        marker.write_text(json.dumps({"lines": lines, "step": steps["world + stream file"],
                                      "truth": {str(u): sorted(m) for u, m in truth.items()}}))
    built = json.loads(marker.read_text())
    steps["world + stream file"] = built["step"]
    return path, {int(u): set(m) for u, m in built["truth"].items()}, built["lines"]


def ingest_stream(path: Path, store_uri: str, env: dict, work: Path, steps: dict) -> None:
    """The stream through a running ingest, as `movierec replay` posts it; done once per work directory."""
    marker = work / "ingest.json"
    if not marker.exists():
        with FunctionProcess("ingest", store=store_uri) as ingest:
            step = run_measured([MOVIEREC, "replay", str(path), "--url", ingest.url, "--batch-size", "1000",
                                 "--concurrency", "4"], env)
            step["ingest_peak_rss_mb"] = round(tree_peak_rss_mb(ingest.process.pid), 1)
        marker.write_text(json.dumps(step))
    steps["replay → ingest"] = json.loads(marker.read_text())


def serve_and_ask(store: str, users: list[int], steps: dict) -> tuple[dict[int, list[str]], dict]:
    """recommend's answers for `users` over HTTP, with its latency and memory."""
    answers, latencies, sources = {}, [], {"personalized": 0, "popular": 0}
    with FunctionProcess("recommend", store=store) as recommend:
        started = time.perf_counter()
        wait_until(lambda: requests.get(f"{recommend.url}/readyz", timeout=5).status_code == 200, recommend.process,
                   timeout=READY_TIMEOUT, what="recommend (/readyz)", poll=0.2)
        steps["recommend ready"] = {"seconds": round(time.perf_counter() - started, 2)}
        session = requests.Session()
        for user in users:
            t = time.perf_counter()
            body = session.get(f"{recommend.url}/recommend/{user}", headers={"Accept": "application/json"},
                               timeout=10).json()
            latencies.append(time.perf_counter() - t)
            answers[user] = body["movies"]
            sources[body["source"]] += 1
        steps["recommend"] = {"seconds": round(sum(latencies), 1),
                              "peak_rss_mb": round(tree_peak_rss_mb(recommend.process.pid), 1)}
    latency = {"p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
               "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2), "sources": sources}
    return answers, latency


def peer_lists(store: LocalStore, users: list[int], steps: dict) -> dict[str, dict[int, list[str]]]:
    """Each peer setting's top 20 unseen movies for `users`, fitted on the snapshot refresh built."""
    with measured(steps, "peers (fit + rank)"):
        data = load_snapshot(store, latest_snapshot_id(store)).interactions()
        position = {int(u): i for i, u in enumerate(data.user_ids)}
        seen_rows = np.searchsorted(data.user_ids, np.asarray(users))
        known = [u for u, r in zip(users, seen_rows) if r < data.n_users and data.user_ids[r] == u]
        seen = interaction_matrix(data)
        rows = np.asarray([position[u] for u in known], dtype=np.int64)
        settings = {f"recent popularity (half-life {h} d)": lambda h=h: RecentPopularity(half_life_days=h)
                    for h in (1, 3, 7)}
        settings |= {f"implicit ALS ({f} factors, reg {r}, alpha {a})":
                     lambda f=f, r=r, a=a: ImplicitFactors(algorithm="als", factors=f, regularization=r, alpha=a,
                                                           iterations=15)
                     for f, r, a in ((64, 1.0, 1.0), (64, 0.1, 10.0))}
        fallback = RecentPopularity(half_life_days=3)
        fallback.fit(data)
        popular = [str(data.movie_ids[m]) for m in np.argsort(-fallback.score(np.zeros(1, np.int64))[0])[:K]]
        lists = {}
        for name, make in settings.items():
            model = make()
            model.fit(data)
            ranked = np.concatenate([top_k(model.score(rows[i:i + 2048]), seen[rows[i:i + 2048]], K)
                                     for i in range(0, len(rows), 2048)]) if len(rows) else np.zeros((0, K))
            by_user = {u: [str(data.movie_ids[m]) for m in ranked[i]] for i, u in enumerate(known)}
            lists[name] = {u: by_user.get(u, popular) for u in users}
    return lists


def bare_products(users: int, hidden: int, movies: int, steps: dict) -> None:
    """What precompute cannot beat: the decoder's matrix products alone, same shapes, same batches, 2 threads."""
    import torch

    torch.set_num_threads(2)
    weights, batch = torch.randn(hidden, movies), torch.randn(BATCH_USERS, hidden)
    with measured(steps, "  bare products (same shapes)"):
        for start in range(0, users, BATCH_USERS):
            torch.mm(batch[: min(BATCH_USERS, users - start)], weights)


def quality(lists: dict[int, list[str]], truth: dict[int, set[str]]) -> dict[str, float]:
    codes: dict[str, int] = {}
    ndcg, recall = [], []
    for user, movies in lists.items():
        ranked = np.asarray([codes.setdefault(m, len(codes)) for m in movies], dtype=np.int64)
        relevant = {codes.setdefault(m, len(codes)) for m in truth[user]}
        ndcg.append(ndcg_at_k(ranked, relevant, K))
        recall.append(recall_at_k(ranked, relevant, K))
    return {"ndcg@20": round(float(np.mean(ndcg)), 4), "recall@20": round(float(np.mean(recall)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--lines", type=int, default=30_000_000, help="stream lines over the whole period")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--future-days", type=int, default=2, help="held back: the users' future")
    parser.add_argument("--queries", type=int, default=20_000, help="future users asked of recommend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/movierec-course-scale"))
    parser.add_argument("--ingest-only", action="store_true",
                        help="build the stream and ingest it, then stop (a later run goes on from there)")
    parser.add_argument("--again", action="store_true", help="run refresh again even if this work directory has one")
    parser.add_argument("--out", default="course-scale", help="result file name in benchmarks/results/")
    args = parser.parse_args()
    work = args.workdir / f"{args.users}-{args.lines}-{args.seed}"
    (work / "store").mkdir(parents=True, exist_ok=True)
    store_uri = str(work / "store")
    env = os.environ | {"MOVIEREC_STORE": store_uri}
    steps: dict[str, dict] = {}
    load_at_start = os.getloadavg()[0]

    path, truth, lines = build_stream(args, work, steps)
    print(f"stream: {lines:,} lines before the cut; {len(truth):,} users watch something new after it", flush=True)
    ingest_stream(path, store_uri, env, work, steps)
    if args.ingest_only:
        return
    if args.again or not (work / "refresh.json").exists():  # the job's own figures are kept in its report
        job = run_measured([MOVIEREC, "refresh", "--local", "--force", "--report", str(work / "refresh.json")], env)
        (work / "refresh-job.json").write_text(json.dumps(job))
    steps["refresh --local"] = json.loads((work / "refresh-job.json").read_text())
    refresh = json.loads((work / "refresh.json").read_text())
    # refresh resets its VmHWM at each step: the job's peak is the largest of its steps' peaks
    steps["refresh --local"]["peak_rss_mb"] = max(step["peak_rss_mb"] for step in refresh["steps"].values())
    for name, step in refresh["steps"].items():
        steps[f"  {name}"] = step
    card = json.loads((work / "store" / "models" / refresh["model"] / "card.json").read_text())
    bare_products(card["users"], card["params"]["hidden"], card["movies"], steps)
    users = sorted(np.random.default_rng(args.seed).choice(sorted(truth), min(args.queries, len(truth)),
                                                           replace=False).tolist())
    answers, latency = serve_and_ask(store_uri, users, steps)
    store = LocalStore(store_uri)
    rows = {"movierec forecast-dae (served by recommend)": quality(answers, truth)}
    for name, lists in peer_lists(store, users, steps).items():
        rows[name] = quality(lists, truth)
    ours = rows["movierec forecast-dae (served by recommend)"]["ndcg@20"]
    best = max((r["ndcg@20"], n) for n, r in rows.items() if not n.startswith("movierec"))
    result = {
        "date": date.today().isoformat(), "machine": report.machine(),
        "load_average_1m": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
        "world": {"users": args.users, "movies": args.movies, "lines_before_cut": lines, "days": args.days,
                  "future_days": args.future_days, "future_users": len(truth), "queried": len(users)},
        "steps": steps, "recommend_latency": latency, "quality": rows,
        "ratio_to_best_peer": round(ours / best[0], 3) if best[0] else None, "best_peer": best[1],
        "model_card": {k: card.get(k) for k in ("version", "users", "movies", "train_seconds",
                                            "metrics", "notes")},
    }
    print_result(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{args.out}.md").write_text(markdown(result, " ".join(sys.argv[1:])))


def table(result: dict) -> list[str]:
    out = ["| step | wall s | peak RSS MB |", "|---|---:|---:|"]
    for name, step in result["steps"].items():
        peak = step.get("peak_rss_mb")
        extra = f" (ingest {step['ingest_peak_rss_mb']:,.0f})" if "ingest_peak_rss_mb" in step else ""
        out.append(f"| {name} | {step['seconds']:,.1f} | {'' if peak is None else f'{peak:,.0f}'}{extra} |")
    out += ["", "| on users' future | NDCG@20 | Recall@20 |", "|---|---:|---:|"]
    out += [f"| {name} | {r['ndcg@20']:.4f} | {r['recall@20']:.4f} |" for name, r in result["quality"].items()]
    out += ["", f"forecast-dae / best peer ({result['best_peer']}): {result['ratio_to_best_peer']}",
            (f"recommend latency p50 {result['recommend_latency']['p50_ms']} ms, "
             f"p99 {result['recommend_latency']['p99_ms']} ms, sources {result['recommend_latency']['sources']}")]
    return out


def print_result(result: dict) -> None:
    print(json.dumps(result["world"]))
    print("\n".join(table(result)))


def markdown(result: dict, argv: str) -> str:
    return "\n".join([
        f"# Course scale, {result['date']}", "",
        f"`.venv/bin/python benchmarks/course_scale.py {argv}`".replace(" `", "`"), "",
        f"Machine: {result['machine']}; load average {result['load_average_1m']}", f"World: {json.dumps(result['world'])}", "",
        *table(result), "",
        "Model card (fit, in-job evaluation):", "", "```json", json.dumps(result["model_card"], indent=2), "```", "",
    ])


if __name__ == "__main__":
    main()
