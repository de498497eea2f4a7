"""deadletter: the dead-letter sink; every event Knative could not deliver is kept in the store.

Answers 2xx only once the event is durable (movierec.deadletters), so a dead
letter is never lost while the store is down: Knative retries a 5xx.
`movierec deadletters replay` sends the kept events again once the cause is fixed.
"""

from __future__ import annotations

import asyncio

from cloudevents import exceptions as ce_errors
from cloudevents.http import from_http
from cloudevents.sdk.converters import is_binary
from functions_framework import aio
from starlette.requests import Request

from movierec import deadletters, metrics
from movierec.config import Settings
from movierec.errors import BadInput, MovierecError
from movierec.http import asgi_response, error_answer, json_answer, probe_answer, read_body
from movierec.store import open_store

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
            return asgi_response(json_answer({"error": f"request body over {MAX_BODY_BYTES} bytes"}, 413))
        headers = dict(request.headers)
        # Binary mode: the body is kept as the bytes that were sent (the SDK would parse a body
        # that looks like JSON, and a replay would then send other bytes than the original).
        as_sent = {"data_unmarshaller": lambda data: data} if is_binary(headers) else {}
        try:
            event = from_http(headers, body, **as_sent)
        except (ce_errors.GenericException, ValueError, UnicodeError) as exc:
            raise BadInput(f"not a CloudEvent: {exc}") from None
        key = await asyncio.to_thread(deadletters.keep, STORE, event)
        metrics.DEADLETTERS.labels(event["type"] if event["type"] in KNOWN_TYPES else "other").inc()
        result = json_answer({"stored": key}, 200)
    except MovierecError as exc:
        result = error_answer(exc)
    return asgi_response(result)
