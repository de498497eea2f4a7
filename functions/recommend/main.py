"""recommend: GET /recommend/<user_id> answers 20 movie ids from the published shards.

The same handler runs under functions-framework's Flask server (the default)
and under `--asgi` (Starlette), which docs/serving.md measured to be faster.
"""

from __future__ import annotations

import time

import functions_framework

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.freshness import watch_store
from movierec.http import asgi_response, error_answer, json_answer, probe_answer
from movierec.serving import RecommendService, parse_user_id
from movierec.store import open_store

SETTINGS = Settings.from_env()
SERVICE = RecommendService(
    open_store(SETTINGS.store), top_k=SETTINGS.top_k, reload_seconds=SETTINGS.reload_seconds
)
PREFIX = "/recommend/"
watch_store(SERVICE.store)  # exports the batch steps' freshness and drift for the alerts


@functions_framework.http
def recommend(request):
    result = answer(request)
    if hasattr(request, "scope"):  # Starlette under --asgi: it takes Response objects, not tuples
        return asgi_response(result)
    return result


def answer(request):
    SERVICE.ensure_started()
    path = request.scope["path"] if hasattr(request, "scope") else request.path  # .url.path costs 6 µs
    if not path.startswith(PREFIX):
        if path == "/metrics" and (age := SERVICE.run_age_seconds()) is not None:
            metrics.RECOMMEND_RUN_AGE.set(age)
        return probe_answer(path, ready=SERVICE.ready) or json_answer({"error": "not found"}, 404)
    started = time.perf_counter()
    try:
        reply = SERVICE.recommend(parse_user_id(path[len(PREFIX) :]))
    except MovierecError as exc:
        result = error_answer(exc)
        metrics.RECOMMEND_ANSWERS.labels(str(result[1]), "none", "none").inc()
        return result
    headers = {
        "X-Model-Version": reply.model_version,
        "X-Recs-Run": reply.run_id,
        "X-Variant": reply.variant,
    }
    if "application/json" in request.headers.get("Accept", ""):
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
