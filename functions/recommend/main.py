"""recommend: GET /recommend/<user_id> answers 20 movie ids from the published shards."""

from __future__ import annotations

import time

import flask
import functions_framework

from movierec import metrics
from movierec.config import Settings
from movierec.errors import MovierecError
from movierec.http import error_answer, json_answer, probe_answer
from movierec.serving import RecommendService, parse_user_id
from movierec.store import open_store

SETTINGS = Settings.from_env()
SERVICE = RecommendService(
    open_store(SETTINGS.store), top_k=SETTINGS.top_k, reload_seconds=SETTINGS.reload_seconds
)
PREFIX = "/recommend/"


@functions_framework.http
def recommend(request: flask.Request):
    SERVICE.ensure_started()
    if not request.path.startswith(PREFIX):
        if request.path == "/metrics" and (age := SERVICE.run_age_seconds()) is not None:
            metrics.RECOMMEND_RUN_AGE.set(age)
        return probe_answer(request.path, ready=SERVICE.ready) or json_answer({"error": "not found"}, 404)
    started = time.perf_counter()
    try:
        answer = SERVICE.recommend(parse_user_id(request.path[len(PREFIX) :]))
    except MovierecError as exc:
        result = error_answer(exc)
        metrics.RECOMMEND_ANSWERS.labels(str(result[1]), "none", "none").inc()
        return result
    headers = {
        "X-Model-Version": answer.model_version,
        "X-Recs-Run": answer.run_id,
        "X-Variant": answer.variant,
    }
    if "application/json" in request.headers.get("Accept", ""):
        body = {
            "user_id": answer.user_id,
            "movies": answer.movies,
            "model_version": answer.model_version,
            "variant": answer.variant,
            "source": answer.source,
        }
        result = json_answer(body, 200, headers)
    else:
        result = ",".join(answer.movies), 200, headers | {"Content-Type": "text/plain; charset=utf-8"}
    metrics.RECOMMEND_ANSWERS.labels("200", answer.source, answer.variant).inc()
    metrics.RECOMMEND_SECONDS.observe(time.perf_counter() - started)
    return result
