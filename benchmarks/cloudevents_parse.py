"""How ingest reads CloudEvents, against the cloudevents SDK doing the same, in one process.

    .venv/bin/python benchmarks/cloudevents_parse.py

Rows: one binary-mode event (what a KafkaSource sends: one stream line a request), one
structured event, and a batch of 500 lines (`movierec replay`'s requests; the SDK 1.x has no
batch reader, so each item goes through `from_dict`). Both sides end with the same stream lines.
Real lines from the course stream when ../shared/datasets has them, else generated ones.
Medians of 7 timings; results go to benchmarks/results/cloudevents-<date>.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import timeit
from datetime import date
from pathlib import Path

from cloudevents.http import from_dict, from_http

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import report
from movierec.ingest import BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE, parse_delivery

STREAM = Path(__file__).resolve().parents[2] / "shared/datasets/course-stream"
BATCH = 500


def stream_lines(n: int) -> list[str]:
    found = [line for path in sorted(STREAM.glob("*.log")) for line in path.read_text(errors="replace").splitlines()]
    if len(found) >= n:
        return found[:n]
    return [f"2026-12-07T10:00:{i % 60:02d},{1000 + i},GET /data/m/the+movie+{i}+1999/{i % 90}.mpg" for i in range(n)]


def event(i: int, line: str) -> dict:
    return {"specversion": "1.0", "id": f"partition:0/offset:{i}", "source": "kafka", "type": "dev.knative.kafka.event",
            "datacontenttype": "text/plain", "data": line}


def sdk_lines(headers: dict, body: bytes) -> list[bytes]:
    """The SDK's reading of the same request, down to the stream lines ingest stores."""
    if headers["Content-Type"] == BATCH_CONTENT_TYPE:
        return [from_dict(item).data.encode() for item in json.loads(body)]
    data = from_http(headers, body).data
    return [data if isinstance(data, bytes) else data.encode()]


def main() -> int:
    lines = stream_lines(BATCH)
    binary = ({"Content-Type": "text/plain", "ce-specversion": "1.0", "ce-id": "partition:0/offset:0",
               "ce-source": "kafka", "ce-type": "dev.knative.kafka.event"}, lines[0].encode())
    structured = ({"Content-Type": STRUCTURED_CONTENT_TYPE}, json.dumps(event(0, lines[0])).encode())
    batch = ({"Content-Type": BATCH_CONTENT_TYPE}, json.dumps([event(i, s) for i, s in enumerate(lines)]).encode())
    rows = []
    for name, (headers, body), per in [("binary, 1 line", binary, 1), ("structured, 1 line", structured, 1),
                                       (f"batch, {BATCH} lines", batch, BATCH)]:
        ours = [line for _, _, line in parse_delivery(headers, body)]
        assert ours == sdk_lines(headers, body), f"{name}: the SDK reads other lines"
        number = max(1, 20_000 // per)
        times = {}
        for label, parse in (("ingest", parse_delivery), ("sdk", sdk_lines)):
            runs = timeit.repeat(lambda: parse(headers, body), number=number, repeat=7)  # noqa: B023
            times[label] = statistics.median(runs) / number / per * 1e6
        rows.append({"request": name, "ingest_us_per_line": times["ingest"], "sdk_us_per_line": times["sdk"]})
    table = ["| request | ingest µs a line | SDK µs a line | SDK / ingest |", "|---|---:|---:|---:|"] + [
        f"| {r['request']} | {r['ingest_us_per_line']:.2f} | {r['sdk_us_per_line']:.2f} "
        f"| {r['sdk_us_per_line'] / r['ingest_us_per_line']:.1f} |" for r in rows]
    source = "the course-stream samples" if STREAM.exists() else "generated lines"
    text = "\n".join([f"# CloudEvents reading, {date.today()}", "",
                      f"Machine: {report.machine()}. Lines: {source}. In one process, medians of 7 timings.",
                      "", *table, ""])
    print(text)
    report.write_results("cloudevents", text, {"machine": report.machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
