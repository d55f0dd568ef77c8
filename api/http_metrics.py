"""The route label of a request for the HTTP metrics and the access log
(:mod:`api.request_log` counts and times every answered request once:
``appliance_http_requests_total``, ``appliance_http_request_duration_seconds``). The label is
the matched route's template (``/v1/sign-requests/{request_id}``), never the concrete path, so
no id becomes a label value; a request no route matched is ``unmatched``."""

from __future__ import annotations


from aiohttp import web


def route_template(request: web.Request) -> str | None:
    info = request.match_info
    if getattr(info, "http_exception", None) is not None:  # 404/405: no route matched
        return None
    resource = info.route.resource
    return resource.canonical if resource is not None else None
