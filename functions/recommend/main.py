"""recommend: GET /recommend/<user_id> answers 20 movie ids from the published shards.

An async handler (functions-framework serves it with Starlette and uvicorn): a
warm answer is a lookup in memory, done on the event loop with no thread hop.
Only a cold instance, still loading shards, answers from a worker thread.
The request path is kept lean on purpose (benchmarks/results/recommend-*.md):
the answer is found and rendered in C, headers are encoded once per variant, and
metrics are tallied in bulk, not per request.
"""

from __future__ import annotations

import asyncio
import time

from functions_framework import aio
from starlette.requests import Request

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.freshness import watch_store
from movierec.http import (
    EncodedResponse,
    accepts_json,
    asgi_response,
    error_answer,
    json_answer,
    probe_answer,
)
from movierec.serving import RecommendService, parse_user_id
from movierec.store import open_store

SETTINGS = Settings.from_env()
SERVICE = RecommendService(open_store(SETTINGS.store), reload_seconds=SETTINGS.reload_seconds)
PREFIX = "/recommend/"
watch_store(SERVICE.store)  # exports the batch steps' freshness and drift for the alerts


@aio.http
async def recommend(request: Request):
    path = request.scope["path"]  # request.url.path costs 6 µs
    if not path.startswith(PREFIX):
        SERVICE.ensure_started()  # a worker loads from its first request on, whatever it asks
        if path == "/metrics" and (age := SERVICE.run_age_seconds()) is not None:
            metrics.RECOMMEND_RUN_AGE.set(age)
        ready = SERVICE.ready or (path == "/readyz" and await asyncio.to_thread(SERVICE.ready_after_first_load, 2.0))
        return asgi_response(probe_answer(path, ready=ready) or json_answer({"error": "not found"}, 404))
    started = time.perf_counter()
    try:
        user_id = parse_user_id(path[len(PREFIX) :])
        reply = SERVICE.answer_now(user_id)
        if reply is None:  # cold: starts loading, may wait for the first CURRENT or a shard, off the event loop
            reply = await asyncio.to_thread(SERVICE.recommend, user_id)
    except MovierecError as exc:
        result = error_answer(exc)
        metrics.RECOMMEND_TALLY.record(metrics.RECOMMEND_TALLY.slot((str(result[1]), "none", "none")))
        return asgi_response(result)
    if accepts_json(request.scope):
        body = {
            "user_id": reply.user_id,
            "movies": reply.movies,
            "model_version": reply.model_version,
            "variant": reply.variant,
            "source": reply.source,
        }
        response = asgi_response(json_answer(body, 200, reply.index.headers))
    else:
        response = EncodedResponse(reply.text, reply.index.text_headers)
    metrics.RECOMMEND_TALLY.record(reply.index.tally_slots[reply.source], time.perf_counter() - started)
    return response

