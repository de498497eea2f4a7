"""metrics.Tally: answers counted in bulk end up exactly where observing each one would put them."""

from __future__ import annotations

import random
import re
import sys
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from movierec.metrics import LATENCY_BUCKETS, Tally

LABELS = [("200", "personalized", "A"), ("200", "popular", "B"), ("400", "none", "none")]


def pair(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    counter = Counter("answers", "answers", ["status", "source", "variant"], registry=registry)
    return counter, Histogram("seconds", "seconds", buckets=LATENCY_BUCKETS, registry=registry)


def page(registry: CollectorRegistry) -> str:
    """The exposition without creation times and the float sum (added up in another order)."""
    lines = generate_latest(registry).decode().splitlines()
    return "\n".join(line for line in lines if "_created" not in line and not line.startswith("seconds_sum"))


def test_bulk_counts_equal_one_observation_at_a_time():
    rng = random.Random(0)
    # every bound exactly (Prometheus buckets are "less or equal"), between them, zero and past the last
    seconds = [*LATENCY_BUCKETS, 0.0, 7.5, *(rng.expovariate(200) for _ in range(2000))]
    each, bulk = CollectorRegistry(), CollectorRegistry()
    counter, histogram = pair(each)
    tally = Tally(*pair(bulk), flush_seconds=3600)
    for i, s in enumerate(seconds):
        labels = LABELS[i % 3]
        counter.labels(*labels).inc()
        tally.record(labels, None if labels[0] == "400" else s)
        if labels[0] != "400":
            histogram.observe(s)
        if i == 1000:
            tally.flush()  # flushes add up; they do not overwrite
    tally.flush()
    assert page(bulk) == page(each)
    assert abs(bulk.get_sample_value("seconds_sum") - each.get_sample_value("seconds_sum")) < 1e-9
    assert re.search(r'seconds_bucket\{le="0.001"\} [1-9]', page(bulk))


@pytest.mark.parametrize("flushers", [1, 2])
def test_nothing_is_lost_or_counted_twice_when_threads_record_while_it_flushes(flushers: int):
    registry = CollectorRegistry()
    counter, histogram = pair(registry)
    tally = Tally(counter, histogram, flush_seconds=3600)  # these threads flush, as often as they can
    per_thread, threads = 20_000, 4

    def work():
        for _ in range(per_thread):
            tally.record(LABELS[0], 0.002)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()

        def flush_while_recording():
            while any(w.is_alive() for w in workers):
                tally.flush()

        others = [threading.Thread(target=flush_while_recording) for _ in range(flushers - 1)]
        for f in others:
            f.start()
        flush_while_recording()
        for t in workers + others:
            t.join()
        tally.flush()
    finally:
        sys.setswitchinterval(interval)
    total = per_thread * threads
    labels = dict(zip(("status", "source", "variant"), LABELS[0]))
    assert registry.get_sample_value("answers_total", labels) == total
    assert registry.get_sample_value("seconds_count") == total
    assert abs(registry.get_sample_value("seconds_sum") - 0.002 * total) < 1e-6


def test_a_failed_flush_loses_that_batch_and_the_thread_goes_on(monkeypatch, caplog):
    registry = CollectorRegistry()
    counter, histogram = pair(registry)
    tally = Tally(counter, histogram, flush_seconds=0.05)
    labels = dict(zip(("status", "source", "variant"), LABELS[0]))
    failures = []

    def labels_failing_once(*values):
        if not failures:
            failures.append(values)
            raise OSError("metrics file unwritable")
        return Counter.labels(counter, *values)

    monkeypatch.setattr(counter, "labels", labels_failing_once)
    tally.record(LABELS[0], 0.002)  # starts the flushing thread; its first flush fails
    deadline = time.monotonic() + 5
    while not failures:
        assert time.monotonic() < deadline, "the flushing thread never ran"
        time.sleep(0.01)
    tally.record(LABELS[0], 0.002)
    while registry.get_sample_value("answers_total", labels) != 1:
        assert time.monotonic() < deadline, "the thread stopped adding after a failed flush"
        time.sleep(0.01)
    assert "adding tallied answers to the metrics failed" in caplog.text
