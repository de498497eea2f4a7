"""Prometheus metrics of every function: `movierec_<function>_<what>_<unit>`."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from movierec._tally import Counts
from movierec.processes import after_fork_in_child

PROCESS_COLLECTORS: list = []  # custom collectors, also exported in multiprocess mode
TALLIES: weakref.WeakSet[Tally] = weakref.WeakSet()  # flushed before every exposition

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.6, 1.0, 2.5)

RECOMMEND_SECONDS = Histogram(
    "movierec_recommend_request_seconds", "Time to answer GET /recommend", buckets=LATENCY_BUCKETS
)
RECOMMEND_ANSWERS = Counter(
    "movierec_recommend_answers_total", "Answers by status, source and variant", ["status", "source", "variant"]
)
RECOMMEND_RUN_AGE = Gauge(
    "movierec_recommend_published_run_age_seconds", "Age of the published run being served",
    multiprocess_mode="max",
)
RECOMMEND_RELOADS = Counter(
    "movierec_recommend_reloads_total", "Loads of a new recs/CURRENT", ["outcome"]
)
INGEST_EVENTS = Counter("movierec_ingest_events_total", "Stream events stored, by kind", ["kind"])
INGEST_QUARANTINED = Counter(
    "movierec_ingest_quarantined_total", "Lines quarantined, by reason", ["reason"]
)
INGEST_REQUESTS = Counter("movierec_ingest_requests_total", "Ingest answers by HTTP status", ["status"])
INGEST_WRITE_SECONDS = Histogram(
    "movierec_ingest_write_seconds", "Time to make a batch durable in the store", buckets=LATENCY_BUCKETS
)
INGEST_BATCH_EVENTS = Histogram(
    "movierec_ingest_batch_events",
    "Events per group-committed store write",
    buckets=(1, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
)
INGEST_STORE_ERRORS = Counter("movierec_ingest_store_errors_total", "Store writes that failed")
DEADLETTERS = Counter(
    "movierec_deadletter_events_total", "Events Knative could not deliver, kept in the store, by type", ["type"]
)
DEADLETTER_REQUESTS = Counter(
    "movierec_deadletter_requests_total", "Dead-letter sink answers by HTTP status", ["status"]
)
PRECOMPUTE_SECONDS = Histogram(
    "movierec_precompute_partition_seconds",
    "Time to score and write one partition",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600),
)
PRECOMPUTE_PARTITIONS = Counter(
    "movierec_precompute_partitions_total", "Partition requests by outcome", ["outcome"]
)


class Tally:
    """Counts and times of a hot path kept in plain numbers, added to a Prometheus counter and
    histogram in bulk: every second by a thread of this process, and before each exposition.

    A Prometheus update takes a lock (and in multiprocess mode writes a memory-mapped file):
    three of them per answer cost recommend 5-10 % of its throughput (docs/serving.md). A label
    set is given a slot once (`slot`); `record(slot, seconds)` is then one call into C
    (`movierec._tally`), with no lock, dict or bisect in Python. A worker's numbers reach its
    metrics at most `flush_seconds` late, and the answers of its last `flush_seconds` before it
    stops are not counted: a gunicorn worker runs no atexit hook (checked), and
    functions-framework gives a function no shutdown hook.
    """

    def __init__(self, counter: Counter, histogram: Histogram, *, flush_seconds: float = 1.0):
        self.counter, self.histogram, self.flush_seconds = counter, histogram, flush_seconds
        self._labels: list[tuple[str, ...]] = []  # by slot
        self._slots: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()
        self._new_counts()
        after_fork_in_child(self._forget)
        TALLIES.add(self)

    def _new_counts(self) -> None:
        self._counts = Counts(self.histogram._upper_bounds, self._start_flushing)
        self._counts.grow(len(self._labels))
        # record(slot, seconds=None, /): one answer in this slot, and its latency when it is timed.
        # The first call in a process starts the flushing thread.
        self.record = self._counts.record

    def _forget(self) -> None:
        self._lock = threading.Lock()  # a forked worker inherits no flushing thread, nor the parent's numbers
        self._new_counts()

    def slot(self, labels: tuple[str, ...]) -> int:
        """The slot of a label set, for `record`; the same slot for the same labels, always."""
        slot = self._slots.get(labels)
        if slot is None:
            with self._lock:
                slot = self._slots.get(labels)
                if slot is None:
                    self._labels.append(labels)
                    self._counts.grow(len(self._labels))
                    slot = self._slots[labels] = len(self._labels) - 1
        return slot

    def flush(self) -> None:
        with self._lock:
            counts, buckets, total = self._counts.take()
            labels = self._labels[: len(counts)]
        for values, n in zip(labels, counts):
            if n:
                self.counter.labels(*values).inc(n)
        for i, n in enumerate(buckets):
            if n:
                self.histogram._buckets[i].inc(n)  # no public bulk observe; pinned version, tested
        if total:
            self.histogram._sum.inc(total)

    def _start_flushing(self) -> None:
        try:
            threading.Thread(target=self._flush_forever, name="metrics-tally", daemon=True).start()
        except RuntimeError:  # no thread to be had: the answer still counts, added at each scrape instead
            logging.getLogger(__name__).exception("the metrics tally cannot start its flushing thread")

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # that batch is lost; the next ones are still added
                logging.getLogger(__name__).exception("adding tallied answers to the metrics failed")


RECOMMEND_TALLY = Tally(RECOMMEND_ANSWERS, RECOMMEND_SECONDS)


def exposition() -> tuple[bytes, dict[str, str]]:
    """The metrics page. With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR (an empty,
    writable directory) so that every worker's numbers are summed, not one worker's shown."""
    for tally in TALLIES:
        tally.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in PROCESS_COLLECTORS:  # read by this process, not shared through the directory
            registry.register(collector)
        return generate_latest(registry), {"Content-Type": CONTENT_TYPE_LATEST}
    return generate_latest(), {"Content-Type": CONTENT_TYPE_LATEST}
