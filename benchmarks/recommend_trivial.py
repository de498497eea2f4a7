"""Row (b) of the recommend benchmark: a trivial functions-framework handler answering the same shape.

Same answer size and headers as `recommend`, served the same way (an async handler), no lookup:
the framework's own cost.
"""

from __future__ import annotations

from functions_framework import aio
from starlette.responses import Response

BODY = ",".join(f"some+movie+title+{i}+1999" for i in range(20))
HEADERS = {"Content-Type": "text/plain; charset=utf-8", "X-Model-Version": "m", "X-Recs-Run": "r", "X-Variant": "A"}


@aio.http
async def trivial(request):
    return Response(BODY, 200, headers=HEADERS)
