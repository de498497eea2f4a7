"""Prometheus metrics of every function: `movierec_<function>_<what>_<unit>`."""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

PROCESS_COLLECTORS: list = []  # custom collectors, also exported in multiprocess mode

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
RECOMMEND_UNAVAILABLE_SHARDS = Gauge(
    "movierec_recommend_unavailable_shards", "Shards of the served publication that could not be loaded "
    "(deleted or unreadable): their users get the popular fallback", multiprocess_mode="max",
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


@functools.cache
def recommend_answers(status: str, source: str, variant: str) -> Counter:
    """The answers counter's child for one label set, created once and then only `.inc()`ed."""
    return RECOMMEND_ANSWERS.labels(status, source, variant)


def recommend_answered(source: str, variant: str, seconds: float) -> None:
    """What recommend records of each 200 answer: one count by source and variant, and its time."""
    recommend_answers("200", source, variant).inc()
    RECOMMEND_SECONDS.observe(seconds)


def exposition() -> tuple[bytes, dict[str, str]]:
    """The metrics page. With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR (an empty,
    writable directory) so that every worker's numbers are summed, not one worker's shown."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in PROCESS_COLLECTORS:  # read by this process, not shared through the directory
            registry.register(collector)
        return generate_latest(registry), {"Content-Type": CONTENT_TYPE_LATEST}
    return generate_latest(), {"Content-Type": CONTENT_TYPE_LATEST}
