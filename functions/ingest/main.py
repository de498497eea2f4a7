"""ingest: CloudEvents carrying stream lines become durable parquet; 2xx only once stored.

An async handler (functions-framework serves it with Starlette and uvicorn): a
request mostly waits for its group commit, and waiting costs no thread here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from functions_framework import aio
from starlette.requests import Request

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.http import asgi_response, error_answer, json_answer, probe_answer, read_body
from movierec.ingest import Ingestor
from movierec.store import open_store

SETTINGS = Settings.from_env()
INGESTOR = Ingestor(
    open_store(SETTINGS.store),
    max_events=SETTINGS.ingest_max_events,
    max_delay=SETTINGS.ingest_max_delay_ms / 1000,
    future_tolerance=timedelta(hours=SETTINGS.ingest_future_hours),
)
_log = logging.getLogger("movierec.functions.ingest")
# A KafkaSource sends one record per request, and Kafka records are at most 1 MiB by default
# (1.34 MiB as data_base64 in structured mode); `movierec replay` batches of 500 lines take
# ~0.1 MiB. 2 MiB x containerConcurrency 50 x the ~5 copies a body makes stays within the 1 GiB pod.
MAX_BODY_BYTES = 2 * 1024 * 1024


@aio.http
async def ingest(request: Request):
    if request.method == "GET":
        return asgi_response(probe_answer(request.url.path, ready=True) or json_answer({"error": "not found"}, 404))
    declared = request.headers.get("content-length") or "0"
    if not (declared.isascii() and declared.isdigit()):  # int() would also take "-1", " 7", "1_000"
        result = json_answer({"error": "Content-Length is not a number of bytes"}, 400)
    elif int(declared) > MAX_BODY_BYTES or (body := await read_body(request, MAX_BODY_BYTES)) is None:
        result = json_answer({"error": f"request body over {MAX_BODY_BYTES} bytes"}, 413)
    else:
        try:
            result = json_answer({"stored": await INGESTOR.ingest(request.headers, body)}, 200)
        except MovierecError as exc:
            result = error_answer(exc)
        except Exception:  # noqa: BLE001 - a bug: a clear 500, logged, counted where IngestFailing sees it
            _log.exception("ingest failed unexpectedly")
            result = json_answer({"error": "internal error"}, 500)
    metrics.INGEST_REQUESTS.labels(str(result[1])).inc()
    return asgi_response(result)
