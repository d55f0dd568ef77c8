"""The request id and the access log: one ``http_request`` event per request.

* ``X-Request-Id``: the client's when it matches ``[A-Za-z0-9._-]{1,64}``, else a fresh one
  (:func:`appliance.logs.new_request_id`); bound in :data:`appliance.logs.REQUEST_ID` while the
  request is handled (so every log line, audit entry and peer job it causes carries it) and
  returned in the ``X-Request-Id`` header of every response, refusals and 401s included
  (set when the response is prepared, so streamed ones carry it too).
* The event: ``method``, ``route`` (the matched route's TEMPLATE, ``unmatched`` when none),
  ``status``, ``user`` (the authenticated user's id, ``node:<index>`` for a peer, absent
  before authentication), ``duration_ms``. Never the path's ids, the query, a header's value
  other than the id, or a body. Client routes at info; peer routes (one per protocol message)
  and probes (``/healthz``, ``/readyz``, ``/metrics``) at debug unless they fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from api.http_metrics import route_template
from appliance.metrics import Metrics
from appliance.logs import REQUEST_ID, REQUEST_ID_HEADER, get_logger, new_request_id, valid_request_id

log = get_logger("appliance.access")

_QUIET = ("/healthz", "/readyz", "/metrics")
_KEY = web.RequestKey("request_id", str)


def request_id_of(request: web.Request) -> str:
    """The id of ``request``: the client's ``X-Request-Id`` if well formed, else a fresh one."""
    given = request.headers.get(REQUEST_ID_HEADER)
    return given if valid_request_id(given) else new_request_id()


def _user(request: web.Request) -> str | None:
    user = request.get("user")
    if user is not None:
        return getattr(user, "id", None)
    peer = request.get("peer_index")
    return f"node:{peer}" if peer is not None else None


def request_log_middleware(metrics: Metrics) -> Callable:
    """Outermost middleware: binds the id, times the request once, writes the event and counts
    it in the HTTP metrics (it sees the status the client gets, error answers included)."""

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        rid = request_id_of(request)
        request[_KEY] = rid
        token = REQUEST_ID.set(rid)
        t0 = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = rid
            raise
        finally:
            seconds = time.perf_counter() - t0
            template = route_template(request)
            metrics.http_request(request.method, template, status, seconds)
            route = template or "unmatched"
            level = logging.INFO
            if status < 400 and (route.startswith("/v1/peer/") or route in _QUIET):
                level = logging.DEBUG
            fields = {"method": request.method, "route": route, "status": status,
                      "duration_ms": round(seconds * 1000, 1)}
            user = _user(request)
            if user is not None:
                fields["user"] = user
            log.log(level, "http_request", **fields)
            REQUEST_ID.reset(token)

    return middleware


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response carries the request's id."""
    rid = request.get(_KEY)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid
