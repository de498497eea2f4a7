"""ingest: CloudEvents carrying stream lines become durable parquet; 2xx only once stored."""

from __future__ import annotations

import flask
import functions_framework

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.http import error_answer, json_answer, probe_answer
from movierec.ingest import Ingestor
from movierec.store import open_store

SETTINGS = Settings.from_env()
INGESTOR = Ingestor(
    open_store(SETTINGS.store),
    max_events=SETTINGS.ingest_max_events,
    max_delay=SETTINGS.ingest_max_delay_ms / 1000,
)
MAX_BODY_BYTES = 32 * 1024 * 1024


@functions_framework.http
def ingest(request: flask.Request):
    if request.method == "GET":
        return probe_answer(request.path, ready=True) or json_answer({"error": "not found"}, 404)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        result = json_answer({"error": f"request body over {MAX_BODY_BYTES} bytes"}, 413)
    else:
        try:
            result = json_answer({"stored": INGESTOR.ingest(request.headers, request.get_data())}, 200)
        except MovierecError as exc:
            result = error_answer(exc)
    metrics.INGEST_REQUESTS.labels(str(result[1])).inc()
    return result
