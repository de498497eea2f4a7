"""Soak: ingest and recommend under steady load, a publish every minute, and one S3 outage.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--outage-seconds 30] [--publish-every 60]
                                        [--ingest-rate 40] [--recommend-rate 40]

Real parts: SeaweedFS S3 behind the tests' loopback fault proxy (the outage stops the proxy:
connections refused and cut), ingest and recommend as real processes. Ingest clients send one
binary CloudEvent per request at a steady rate and redeliver each event until it is answered 2xx,
as the KafkaSource does; recommend clients ask for known and new users. Every `--publish-every`
seconds a new run is precomputed in-process and published. Halfway through, S3 goes away for
`--outage-seconds`.

Reported, with goals: non-2xx answers outside the outage (0; "outside" starts 20 s after S3 is
back, the time one S3 call may take to give up), events acknowledged vs stored (equal), RSS at the
start and the end of each process (flat). Results go to benchmarks/results/soak-<date>.md and .json.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from cloudevents.conversion import to_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import report
from movierec.events import KINDS_STORED, event_keys
from movierec.processes import FunctionProcess
from movierec.replay import line_event
from movierec.store import open_store
from pipelines.fanout import run_local, start_run
from pipelines.publish import publish
from tests.conftest import BUCKET, CREDENTIALS, Seaweed, build_published, small_world_lines
from tests.faults.s3proxy import S3FaultProxy

GRACE = 20.0  # seconds after S3 is back that still count as the outage
SOURCE = "soak"


def group_rss_mib(pid: int) -> float:
    """Resident memory of a process and every process in its group (a function and its workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pid:  # the process group id
                continue
            rss = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("VmRSS"))
            total += int(rss.split()[1])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return total / 1024


class Log:
    """Answers (time, status) from the client threads, and what else happened when."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answers: dict[str, list[tuple[float, int]]] = {"ingest": [], "recommend": []}
        self.acked: set[str] = set()
        self.publishes: list[tuple[float, str]] = []

    def answer(self, function: str, status: int) -> None:
        with self.lock:
            self.answers[function].append((time.monotonic(), status))


def ingest_client(url: str, lines: list[str], rate: float, stop: threading.Event, log: Log, ids) -> None:
    session, interval, due = requests.Session(), 1.0 / rate, time.monotonic()
    while not stop.is_set():
        event_id = str(next(ids))
        headers, body = to_binary(line_event(SOURCE, event_id, random.choice(lines)))
        while True:  # redeliver until acknowledged, as the KafkaSource does (also after stop: nothing is dropped)
            try:
                status = session.post(url, data=body, headers=headers, timeout=60).status_code
            except requests.RequestException:
                status = 0
            log.answer("ingest", status)
            if 200 <= status < 300:
                with log.lock:
                    log.acked.add(event_id)
                break
            time.sleep(0.5)
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))


def recommend_client(url: str, users: list[int], rate: float, stop: threading.Event, log: Log) -> None:
    session, interval, due = requests.Session(), 1.0 / rate, time.monotonic()
    while not stop.is_set():
        user = random.choice(users) if random.random() < 0.9 else random.randrange(10**6, 10**7)  # 10 % new users
        try:
            status = session.get(f"{url}/recommend/{user}", timeout=30).status_code
        except requests.RequestException:
            status = 0
        log.answer("recommend", status)
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))


def publisher(uri: str, model_version: str, every: float, stop: threading.Event, log: Log) -> None:
    store = open_store(uri)
    while not stop.wait(every):
        try:
            run = start_run(store, model_version, partitions=4, top_k=20)
            run_local(store, run)
            publish(store, [run.run_id])
            outcome = f"published {run.run_id}"
        except Exception as exc:  # noqa: BLE001 - a publish that fails (in the outage) is reported, not fatal
            outcome = f"failed: {type(exc).__name__}"
        with log.lock:
            log.publishes.append((time.monotonic(), outcome))


def stored_ids(uri: str) -> set[str]:
    """Every stored event id of the soak, read straight from S3 (not through the proxy), 16 files at once:
    single-event requests at a steady rate make thousands of small batch files."""
    store, ids = open_store(uri), set()
    keys = [key for kind in KINDS_STORED for key in event_keys(store, kind)]
    with ThreadPoolExecutor(16) as pool:
        for table in pool.map(lambda k: store.get_parquet(k, columns=["event_source", "event_id"]), keys):
            ids.update(i for s, i in zip(table["event_source"].to_pylist(), table["event_id"].to_pylist())
                       if s == SOURCE)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--outage-seconds", type=float, default=30.0, help="S3 outage, halfway through (default 30)")
    parser.add_argument("--publish-every", type=float, default=60.0, help="seconds between publishes (default 60)")
    parser.add_argument("--ingest-rate", type=float, default=40.0, help="ingest requests a second (default 40)")
    parser.add_argument("--recommend-rate", type=float, default=40.0, help="recommend requests a second (default 40)")
    args = parser.parse_args(argv)
    duration = args.minutes * 60

    work = Path(tempfile.mkdtemp(prefix="movierec-soak-"))
    seaweed = Seaweed(work / "s3")
    (work / "s3").mkdir()
    seaweed.start()
    proxy = S3FaultProxy(seaweed.endpoint)
    proxy.start()
    os.environ.update(CREDENTIALS | {"AWS_ENDPOINT_URL": proxy.endpoint})
    uri = f"s3://{BUCKET}/soak"
    lines = small_world_lines(users=300, movies=100)
    built = build_published(uri, lines, partitions=4)
    users = sorted({int(line.split(",")[1]) for line in lines if line.split(",")[1].isdigit()})
    log, stop, ids = Log(), threading.Event(), iter(range(10**9))
    processes = {name: FunctionProcess(name, store=uri, log=work / f"{name}.log",
                                       env={"MOVIEREC_RELOAD_SECONDS": "2"}).start()
                 for name in ("ingest", "recommend")}
    try:
        threads = [threading.Thread(target=ingest_client, args=(processes["ingest"].url, lines,
                                                                 args.ingest_rate / 4, stop, log, ids))
                   for _ in range(4)]
        threads += [threading.Thread(target=recommend_client, args=(processes["recommend"].url, users,
                                                                     args.recommend_rate / 2, stop, log))
                    for _ in range(2)]
        threads.append(threading.Thread(target=publisher, args=(uri, built["model"]["version"],
                                                                 args.publish_every, stop, log)))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(min(10.0, duration / 10))
        rss_start = {name: group_rss_mib(p.process.pid) for name, p in processes.items()}
        time.sleep(max(0.0, started + duration / 2 - time.monotonic()))
        outage = (time.monotonic(), 0.0)
        print(f"S3 outage for {args.outage_seconds:.0f} s", file=sys.stderr)
        proxy.stop()
        time.sleep(args.outage_seconds)
        proxy.start()
        outage = (outage[0], time.monotonic())
        rss_peak = dict(rss_start)
        while time.monotonic() < started + duration:
            time.sleep(5)
            for name, p in processes.items():
                rss_peak[name] = max(rss_peak[name], group_rss_mib(p.process.pid))
        rss_end = {name: group_rss_mib(p.process.pid) for name, p in processes.items()}
        stop.set()
        for thread in threads:
            thread.join(300)
        os.environ["AWS_ENDPOINT_URL"] = seaweed.endpoint
        stored = stored_ids(uri)
    finally:
        stop.set()
        for process in processes.values():
            process.stop()
        proxy.stop()
        seaweed.stop()

    def counts(function: str) -> dict:
        inside = lambda t: outage[0] <= t <= outage[1] + GRACE
        answers = log.answers[function]
        return {"requests": len(answers),
                "non_2xx_outside_outage": sum(1 for t, s in answers if not 200 <= s < 300 and not inside(t)),
                "non_2xx_in_outage": sum(1 for t, s in answers if not 200 <= s < 300 and inside(t)),
                "statuses_outside": sorted({s for t, s in answers if not 200 <= s < 300 and not inside(t)})}

    data = {
        "machine": report.machine(),
        "command": "benchmarks/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "minutes": args.minutes, "outage_seconds": args.outage_seconds, "grace_seconds": GRACE,
        "ingest": counts("ingest"), "recommend": counts("recommend"),
        "events_acknowledged": len(log.acked), "events_stored": len(stored),
        "acknowledged_not_stored": len(log.acked - stored),
        "publishes": {"ok": sum(o.startswith("published") for _, o in log.publishes),
                      "failed": [o for _, o in log.publishes if not o.startswith("published")]},
        "rss_mib": {name: {"start": round(rss_start[name]), "end": round(rss_end[name]), "peak": round(rss_peak[name])}
                    for name in processes},
    }
    rows = [
        ("ingest requests (incl. redeliveries)", data["ingest"]["requests"], ""),
        ("ingest non-2xx outside the outage", data["ingest"]["non_2xx_outside_outage"], "0"),
        ("ingest non-2xx in the outage (+20 s)", data["ingest"]["non_2xx_in_outage"], ""),
        ("recommend requests", data["recommend"]["requests"], ""),
        ("recommend non-2xx outside the outage", data["recommend"]["non_2xx_outside_outage"], "0"),
        ("recommend non-2xx in the outage (+20 s)", data["recommend"]["non_2xx_in_outage"], ""),
        ("events acknowledged", data["events_acknowledged"], "= stored"),
        ("events stored", data["events_stored"], "= acknowledged"),
        ("acknowledged but not stored", data["acknowledged_not_stored"], "0"),
        ("publishes ok / failed", f"{data['publishes']['ok']} / {len(data['publishes']['failed'])}", ""),
    ] + [(f"{name} RSS start / end / peak (MiB)", "{start} / {end} / {peak}".format(**rss), "flat")
         for name, rss in data["rss_mib"].items()]
    table = "| measure | value | goal |\n|---|---:|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    text = (f"# Soak, {args.minutes:g} minutes\n\n`{data['command']}`\n\n{data['machine']}\n\n"
            f"S3 outage of {args.outage_seconds:g} s halfway through; a publish every {args.publish_every:g} s; "
            f"ingest {args.ingest_rate:g} req/s, recommend {args.recommend_rate:g} req/s.\n\n{table}\n")
    print(text)
    print(f"written to {report.write_results('soak', text, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
