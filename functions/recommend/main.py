"""recommend: GET /recommend/<user_id> answers 20 movie ids from the published shards.

An async handler (functions-framework serves it with Starlette and uvicorn): a
warm answer is a lookup in memory, done on the event loop with no thread hop.
Only a cold instance, still loading shards, answers from a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time

from functions_framework import aio
from starlette.requests import Request
from starlette.responses import Response

from movierec import metrics
from movierec.config import Settings
from movierec.freshness import watch_store
from movierec.http import accepts_json, asgi_response, error_answer, json_answer, probe_answer
from movierec.serving import RecommendService, parse_user_id
from movierec.store import open_store

_log = logging.getLogger(__name__)
SETTINGS = Settings.from_env()
SERVICE = RecommendService(open_store(SETTINGS.store), reload_seconds=SETTINGS.reload_seconds)
PREFIX = "/recommend/"
watch_store(SERVICE.store)  # exports the batch steps' freshness and drift for the alerts


@aio.http
async def recommend(request: Request) -> Response:
    path = request.scope["path"]  # request.url would parse the whole URL, which recommend does not need
    if not path.startswith(PREFIX):
        return await probe(path)
    started = time.perf_counter()
    try:
        user_id = parse_user_id(path[len(PREFIX) :])
        if SERVICE.in_memory:
            answer = SERVICE.answer(user_id)
        else:  # cold: may wait for the first CURRENT or a shard, off the event loop
            answer = await asyncio.to_thread(SERVICE.answer, user_id)
    except Exception as exc:  # noqa: BLE001 - every failure is answered, logged by error_answer, and counted
        result = error_answer(exc)
        metrics.recommend_answers(str(result[1]), "none", "none").inc()
        return asgi_response(result)
    variant = answer.variant
    headers = {"X-Model-Version": variant.model_version, "X-Recs-Run": variant.run_id, "X-Variant": variant.name}
    if accepts_json(request.scope):
        body = {"user_id": answer.user_id, "movies": answer.movies, "model_version": variant.model_version,
                "variant": variant.name, "source": answer.source}
        response = asgi_response(json_answer(body, 200, headers))
    else:
        response = Response(answer.text, headers=headers, media_type="text/plain")
    metrics.recommend_answered(answer.source, variant.name, time.perf_counter() - started)
    return response


async def probe(path: str) -> Response:
    SERVICE.ensure_started()  # a worker loads from its first request on, whatever it asks
    if path == "/metrics" and (age := SERVICE.run_age_seconds()) is not None:
        metrics.RECOMMEND_RUN_AGE.set(age)
    ready = SERVICE.ready or (path == "/readyz" and await asyncio.to_thread(SERVICE.ready_after_first_load, 2.0))
    if path == "/readyz" and ready and (unavailable := SERVICE.unavailable()):
        # Every instance reads the same shards: failing the probe would turn a partial fallback into an outage.
        return Response(f"ready, degraded: shards {', '.join(unavailable)} cannot be loaded; "
                        "their users get the popular fallback", media_type="text/plain")
    return asgi_response(probe_answer(path, ready=ready) or json_answer({"error": "not found"}, 404))
