"""precompute: one CloudEvent per user partition; scores those users and writes one shard."""

from __future__ import annotations

import logging
import time

import flask
import functions_framework

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.http import error_answer, json_answer, probe_answer
from movierec.precompute import MAX_REQUEST_BYTES, parse_request, precompute_partition, read_request_body
from movierec.store import open_store

_log = logging.getLogger("movierec.functions.precompute")
SETTINGS = Settings.from_env()
STORE = open_store(SETTINGS.store)


@functions_framework.http
def precompute(request: flask.Request):
    if request.method == "GET":
        return probe_answer(request.path, ready=True) or json_answer({"error": "not found"}, 404)
    started = time.perf_counter()
    try:
        if (body := read_request_body(request)) is None:
            metrics.PRECOMPUTE_PARTITIONS.labels("error").inc()
            return json_answer({"error": f"request body over {MAX_REQUEST_BYTES} bytes"}, 413)
        job = parse_request(request.headers, body)
        key = precompute_partition(STORE, **job)
    except MovierecError as exc:
        metrics.PRECOMPUTE_PARTITIONS.labels("error").inc()
        return error_answer(exc)
    except Exception:  # noqa: BLE001 - a bug: a clear 500, logged, counted where PrecomputeFailing sees it
        _log.exception("precompute failed unexpectedly")
        metrics.PRECOMPUTE_PARTITIONS.labels("error").inc()
        return json_answer({"error": "internal error"}, 500)
    metrics.PRECOMPUTE_PARTITIONS.labels("done").inc()
    metrics.PRECOMPUTE_SECONDS.observe(time.perf_counter() - started)
    return json_answer({"shard": key}, 200)
