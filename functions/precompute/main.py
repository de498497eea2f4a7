"""precompute: one CloudEvent per user partition; scores those users and writes one shard."""

from __future__ import annotations

import time

import flask
import functions_framework

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.http import error_answer, json_answer, probe_answer
from movierec.precompute import parse_request, precompute_partition
from movierec.store import open_store

SETTINGS = Settings.from_env()
STORE = open_store(SETTINGS.store)


@functions_framework.http
def precompute(request: flask.Request):
    if request.method == "GET":
        return probe_answer(request.path, ready=True) or json_answer({"error": "not found"}, 404)
    started = time.perf_counter()
    try:
        job = parse_request(request.headers, request.get_data())
        key = precompute_partition(STORE, **job)
    except MovierecError as exc:
        metrics.PRECOMPUTE_PARTITIONS.labels("error").inc()
        return error_answer(exc)
    metrics.PRECOMPUTE_PARTITIONS.labels("done").inc()
    metrics.PRECOMPUTE_SECONDS.observe(time.perf_counter() - started)
    return json_answer({"shard": key}, 200)
