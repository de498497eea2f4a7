"""deadletter: the dead-letter sink; every event Knative could not deliver is kept in the store.

Answers 2xx only once the event is durable (movierec.deadletters), so a dead
letter is never lost while the store is down: Knative retries a 5xx.
`movierec deadletters replay` sends the kept events again once the cause is fixed.
"""

from __future__ import annotations

import asyncio

from cloudevents import exceptions as ce_errors
from cloudevents.http import from_http
from functions_framework import aio
from starlette.requests import Request

from movierec import deadletters, metrics
from movierec.config import Settings
from movierec.errors import BadInput, MovierecError
from movierec.http import asgi_response, error_answer, json_answer, probe_answer
from movierec.store import open_store

STORE = open_store(Settings.from_env().store)
MAX_BODY_BYTES = 32 * 1024 * 1024


@aio.http
async def deadletter(request: Request):
    if request.method == "GET":
        return asgi_response(probe_answer(request.url.path, ready=True) or json_answer({"error": "not found"}, 404))
    try:
        body = bytearray()
        async for chunk in request.stream():  # bounded while reading: a chunked body has no Content-Length
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return asgi_response(json_answer({"error": f"request body over {MAX_BODY_BYTES} bytes"}, 413))
        try:
            event = from_http(dict(request.headers), bytes(body))
        except (ce_errors.GenericException, ValueError, UnicodeError) as exc:
            raise BadInput(f"not a CloudEvent: {exc}") from None
        key = await asyncio.to_thread(deadletters.keep, STORE, event)
        metrics.DEADLETTERS.labels(event["type"]).inc()
        result = json_answer({"stored": key}, 200)
    except MovierecError as exc:
        result = error_answer(exc)
    return asgi_response(result)
