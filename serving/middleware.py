"""The app's one HTTP middleware: a body that declares more than ``FINMATH_SERVING_MAX_BODY_BYTES``
is refused before it is read (413; a chunked one is stopped by ``errors.StrictJSONRequest``), and
every request is counted by route and status and timed by route (``serving/metrics.py``)."""

from __future__ import annotations

import time

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.base import RequestResponseEndpoint

from serving.deps import service_of, serving_settings
from serving.errors import limit_message


def _route(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "path", "unmatched"))


async def observe(request: Request, call_next: RequestResponseEndpoint) -> Response:
    limit = serving_settings(request).max_body_bytes
    metrics = service_of(request).metrics
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        response: Response = JSONResponse(
            status_code=413,
            content={
                "detail": f"body of {declared} bytes exceeds the limit of {limit_message(limit)}"
            },
        )
    else:
        started = time.perf_counter()
        response = await call_next(request)
        metrics.latency.labels(_route(request)).observe(time.perf_counter() - started)
    metrics.requests.labels(_route(request), str(response.status_code)).inc()
    return response
