"""Rows (b) and (b+m) of the recommend benchmark: trivial functions-framework handlers answering the same shape.

Same answer size and headers as `recommend`, served the same way (an async handler), no lookup:
`trivial` is the framework's own cost; `trivial_counted` adds recommend's metric updates (the same
`metrics.recommend_answered`: one `.inc()` and one `.observe()` an answer), the most any handler
that counts and times its answers as recommend does can reach.
"""

from __future__ import annotations

import time

from functions_framework import aio
from starlette.responses import Response

from movierec import metrics

BODY = ",".join(f"some+movie+title+{i}+1999" for i in range(20))
HEADERS = {"Content-Type": "text/plain; charset=utf-8", "X-Model-Version": "m", "X-Recs-Run": "r", "X-Variant": "A"}


@aio.http
async def trivial(request):
    return Response(BODY, 200, headers=HEADERS)


@aio.http
async def trivial_counted(request):
    started = time.perf_counter()
    response = Response(BODY, 200, headers=HEADERS)
    metrics.recommend_answered("personalized", "A", time.perf_counter() - started)
    return response
