"""recommend: GET /recommend/<user_id> answers 20 movie ids from the published shards.

An async handler (functions-framework serves it with Starlette and uvicorn): a
warm answer is a lookup in memory, done on the event loop with no thread hop.
Only a cold instance, still loading shards, answers from a worker thread.
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
from movierec.http import asgi_response, error_answer, json_answer, probe_answer
from movierec.serving import RecommendService, parse_user_id
from movierec.store import open_store

SETTINGS = Settings.from_env()
SERVICE = RecommendService(open_store(SETTINGS.store), reload_seconds=SETTINGS.reload_seconds)
PREFIX = "/recommend/"
watch_store(SERVICE.store)  # exports the batch steps' freshness and drift for the alerts


@aio.http
async def recommend(request: Request):
    return asgi_response(await answer(request))


async def answer(request: Request):
    SERVICE.ensure_started()
    path = request.scope["path"]  # request.url.path costs 6 µs
    if not path.startswith(PREFIX):
        if path == "/metrics" and (age := SERVICE.run_age_seconds()) is not None:
            metrics.RECOMMEND_RUN_AGE.set(age)
        return probe_answer(path, ready=SERVICE.ready) or json_answer({"error": "not found"}, 404)
    started = time.perf_counter()
    try:
        user_id = parse_user_id(path[len(PREFIX) :])
        if SERVICE.warm:
            reply = SERVICE.recommend(user_id)
        else:  # may wait for the first CURRENT or load a shard: keep the event loop free
            reply = await asyncio.to_thread(SERVICE.recommend, user_id)
    except MovierecError as exc:
        result = error_answer(exc)
        metrics.RECOMMEND_ANSWERS.labels(str(result[1]), "none", "none").inc()
        return result
    headers = {
        "X-Model-Version": reply.model_version,
        "X-Recs-Run": reply.run_id,
        "X-Variant": reply.variant,
    }
    if "application/json" in request.headers.get("accept", ""):
        body = {
            "user_id": reply.user_id,
            "movies": reply.movies,
            "model_version": reply.model_version,
            "variant": reply.variant,
            "source": reply.source,
        }
        result = json_answer(body, 200, headers)
    else:
        result = ",".join(reply.movies), 200, headers | {"Content-Type": "text/plain; charset=utf-8"}
    metrics.RECOMMEND_ANSWERS.labels("200", reply.source, reply.variant).inc()
    metrics.RECOMMEND_SECONDS.observe(time.perf_counter() - started)
    return result
