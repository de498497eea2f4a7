"""ingest: CloudEvents carrying stream lines become durable parquet; 2xx only once stored."""

from __future__ import annotations

import flask
import functions_framework

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.http import error_answer, json_answer, probe_answer
from movierec.ingest import parse_delivery, store_events, to_events
from movierec.store import open_store

SETTINGS = Settings.from_env()
STORE = open_store(SETTINGS.store)


@functions_framework.http
def ingest(request: flask.Request):
    if request.method == "GET":
        return probe_answer(request.path, ready=True) or json_answer({"error": "not found"}, 404)
    try:
        events = to_events(parse_delivery(request.headers, request.get_data()))
        store_events(STORE, events)
    except MovierecError as exc:
        result = error_answer(exc)
    else:
        result = json_answer({"stored": len(events)}, 200)
    metrics.INGEST_REQUESTS.labels(str(result[1])).inc()
    return result
