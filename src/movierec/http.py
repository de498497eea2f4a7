"""Shared answers of the HTTP entrypoints: JSON errors, probes and the metrics page."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import Response as StarletteResponse

from movierec import metrics
from movierec.errors import BadInput, NotFound, NotReady, StoreUnavailable

_log = logging.getLogger(__name__)
Response = tuple[bytes | str, int, dict[str, str]]


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json.dumps(body), status, {"Content-Type": "application/json"} | (headers or {})


def error_answer(exc: Exception) -> Response:
    """Map the library's errors to HTTP: 400 bad input, 404, 503 not ready or store down, 500 bug."""
    if isinstance(exc, BadInput):
        return json_answer({"error": str(exc)}, 400)
    if isinstance(exc, NotFound):
        return json_answer({"error": str(exc)}, 404)
    if isinstance(exc, StoreUnavailable):  # its text names endpoints, buckets and keys: for the log only
        _log.warning("store unavailable: %s", exc)
        return json_answer({"error": "the store is unavailable; retry later"}, 503, {"Retry-After": "5"})
    if isinstance(exc, NotReady):
        return json_answer({"error": str(exc)}, 503, {"Retry-After": "5"})
    _log.error("unexpected error", exc_info=exc)  # a bug: the traceback goes to the log, not to the caller
    return json_answer({"error": "internal error"}, 500)


def probe_answer(path: str, *, ready: bool) -> Response | None:
    """Answer /healthz, /readyz and /metrics; None for any other path."""
    if path == "/healthz":
        return "ok", 200, {"Content-Type": "text/plain"}
    if path == "/readyz":
        if ready:
            return "ready", 200, {"Content-Type": "text/plain"}
        return json_answer({"error": "not ready"}, 503, {"Retry-After": "5"})
    if path == "/metrics":
        body, headers = metrics.exposition()
        return body, 200, headers
    return None


def asgi_response(result: Response) -> StarletteResponse:
    """A (body, status, headers) answer as the Starlette response that `--asgi` serving needs."""
    body, status, headers = result
    return StarletteResponse(body, status, headers=headers)


async def read_body(request, limit: int) -> bytes | None:
    """A request's body, or None once it passes `limit` bytes: bounded while reading, since a
    chunked body declares no length to check first."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def accepts_json(scope: dict) -> bool:
    """Whether a request's Accept header names JSON (media types are case-insensitive). Read from
    the ASGI scope: Starlette's `request.headers` builds a mapping recommend does not need."""
    for name, value in scope["headers"]:  # names arrive lower-case
        if name == b"accept":
            return b"application/json" in value.lower()
    return False
