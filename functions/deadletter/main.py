"""deadletter: the dead-letter sink; every event Knative could not deliver is kept in the store.

Answers 2xx only once the event is durable (movierec.deadletters), so a dead
letter is never lost while the store is down: Knative retries a 5xx.
`movierec deadletters replay` sends the kept events again once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging

from functions_framework import aio
from starlette.requests import Request

from movierec import deadletters, metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.http import asgi_response, error_answer, json_answer, probe_answer, read_body
from movierec.store import open_store

_log = logging.getLogger("movierec.functions.deadletter")
STORE = open_store(Settings.from_env().store)
# Kafka records are at most 1 MB by default, and stream lines far less; a small bound keeps a
# pod's 10 concurrent requests within its memory limit (a body is held about five times).
MAX_BODY_BYTES = 4 * 1024 * 1024
KNOWN_TYPES = frozenset((*deadletters.STREAM_TYPES, "movierec.precompute.requested.v1"))


@aio.http
async def deadletter(request: Request):
    if request.method == "GET":
        return asgi_response(probe_answer(request.url.path, ready=True) or json_answer({"error": "not found"}, 404))
    try:
        if (body := await read_body(request, MAX_BODY_BYTES)) is None:
            result = json_answer({"error": f"request body over {MAX_BODY_BYTES} bytes"}, 413)
        else:
            event = deadletters.parse(dict(request.headers), body)
            key = await asyncio.to_thread(deadletters.keep, STORE, event)
            metrics.DEADLETTERS.labels(event["type"] if event["type"] in KNOWN_TYPES else "other").inc()
            result = json_answer({"stored": key}, 200)
    except MovierecError as exc:
        result = error_answer(exc)
    except Exception:  # noqa: BLE001 - a bug: a clear 500 (Knative retries it), logged and counted
        _log.exception("keeping a dead letter failed unexpectedly")
        result = json_answer({"error": "internal error"}, 500)
    metrics.DEADLETTER_REQUESTS.labels(str(result[1])).inc()
    return asgi_response(result)
