"""Post stream lines to an `ingest` URL as CloudEvents, at a chosen rate and concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from movierec.errors import MovierecError
from movierec.ingest import BATCH_CONTENT_TYPE

LINE_TYPE = "movierec.stream.line.v1"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class ReplayStats:
    lines: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def summary(self) -> str:
        lat = np.array(self.latencies or [0.0]) * 1000
        return (
            f"{self.lines:,} lines in {self.requests:,} requests, {self.seconds:.1f} s: "
            f"{self.lines / max(self.seconds, 1e-9):,.0f} lines/s; latency p50 {np.percentile(lat, 50):.1f} ms, "
            f"p99 {np.percentile(lat, 99):.1f} ms; retries {self.retries}"
        )


def line_id(origin: str, number: int, line: str | bytes) -> str:
    """An event id from where a line is (origin, line number) and what it holds: sending the same
    input again is a redelivery (deduplicated), and different lines never share an id."""
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    digest = hashlib.sha256(f"{origin}\x00{number}\x00".encode("utf-8", "surrogatepass") + raw)
    return f"{number}-{digest.hexdigest()[:24]}"


def file_lines(paths: Iterable[str | Path]) -> Iterator[tuple[str, str]]:
    """Each file's lines as (event id, line), named by the file's resolved path: two files under one
    name (a rotated log) never collide, and replaying a file again sends the same events."""
    for path in paths:
        origin = str(Path(path).resolve())
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for number, line in enumerate(f):
                line = line.rstrip("\n")
                yield line_id(origin, number, line), line


def line_event(source: str, event_id: str, line: str | bytes) -> CloudEvent:
    """A single line as KafkaSource sends it: the raw bytes as the body (binary mode)."""
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    return CloudEvent({"type": LINE_TYPE, "source": source, "id": event_id, "datacontenttype": "text/plain"}, raw)


def _structured(source: str, event_id: str, line: str) -> dict:
    return {
        "specversion": "1.0",
        "type": LINE_TYPE,
        "source": source,
        "id": event_id,
        "datacontenttype": "text/plain",
        "data": line,
    }


def replay(
    url: str,
    lines: Iterable[str] | Iterable[tuple[str, str]],
    *,
    source: str = "movierec/replay",
    batch_size: int = 500,
    concurrency: int = 4,
    rate: float | None = None,
    max_retries: int = 8,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Send every line; batch_size 1 sends binary-mode single events.

    `lines` are lines, whose ids come from `source`, line number and content (`line_id`), or
    (id, line) pairs that carry their own ids (`file_lines`).

    5xx and 429 answers are retried with backoff, as Knative's delivery does; a
    4xx is a bug in what was sent and stops the replay.
    """
    stats = ReplayStats()
    lock = threading.Lock()
    local = threading.local()
    started = time.perf_counter()

    def chunks():
        chunk: list[tuple[str, str]] = []
        for number, line in enumerate(lines):
            chunk.append(line if isinstance(line, tuple) else (line_id(source, number, line), line))
            if len(chunk) == batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def send(chunk: list[tuple[str, str]]) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        if batch_size == 1:
            event_id, line = chunk[0]
            headers, body = to_binary(line_event(source, event_id, line))
        else:
            headers = {"Content-Type": BATCH_CONTENT_TYPE}
            body = json.dumps([_structured(source, event_id, line) for event_id, line in chunk]).encode()
        for attempt in range(max_retries + 1):
            t0 = time.perf_counter()
            try:
                status = session.post(url, data=body, headers=headers, timeout=30).status_code
            except requests.ConnectionError:
                status = 503
            elapsed = time.perf_counter() - t0
            with lock:
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status < 300:
                break
            if status not in RETRY_STATUSES or attempt == max_retries:
                raise MovierecError(f"ingest answered {status} for events {chunk[0][0]}..{chunk[-1][0]}")
            with lock:
                stats.retries += 1
            time.sleep(min(0.05 * 2**attempt, 2.0))
        with lock:
            stats.lines += len(chunk)
            stats.requests += 1
            stats.latencies.append(elapsed)
        if on_progress:
            on_progress(len(chunk))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending = set()
        for i, chunk in enumerate(chunks()):
            if rate:  # pace by lines: line n leaves no earlier than n / rate seconds in
                delay = started + (i * batch_size) / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            pending.add(pool.submit(send, chunk))
            if len(pending) >= concurrency * 2:  # bounded look-ahead: lines are streamed, not loaded
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
        for f in pending:
            f.result()
    stats.seconds = time.perf_counter() - started
    return stats
