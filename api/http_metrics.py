"""HTTP metrics: every answered request counted by method, route TEMPLATE and status code, and
timed (``appliance_http_requests_total``, ``appliance_http_request_duration_seconds``). The
label is the matched route's template (``/v1/sign-requests/{request_id}``), never the concrete
path, so no id becomes a label value; a request no route matched is ``unmatched``."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from appliance.metrics import Metrics


def route_template(request: web.Request) -> str | None:
    info = request.match_info
    if getattr(info, "http_exception", None) is not None:  # 404/405: no route matched
        return None
    resource = info.route.resource
    return resource.canonical if resource is not None else None


def http_metrics_middleware(metrics: Metrics) -> Callable:
    """Outermost middleware: it sees the status the client gets (error answers included)."""

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        t0 = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.http_request(request.method, route_template(request), status, time.perf_counter() - t0)

    return middleware
