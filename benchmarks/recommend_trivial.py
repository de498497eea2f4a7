"""Row (b) of the recommend benchmark: a trivial functions-framework handler answering the same shape.

Same answer size and headers as `recommend`, no lookup: the framework's own cost.
"""

from __future__ import annotations

import functions_framework

BODY = ",".join(f"some+movie+title+{i}+1999" for i in range(20))
HEADERS = {"Content-Type": "text/plain; charset=utf-8", "X-Model-Version": "m", "X-Recs-Run": "r", "X-Variant": "A"}


@functions_framework.http
def trivial(request):
    if hasattr(request, "scope"):  # Starlette under --asgi
        from starlette.responses import Response

        return Response(BODY, 200, headers=HEADERS)
    return BODY, 200, HEADERS
