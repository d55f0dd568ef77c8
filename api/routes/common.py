"""What every route module shares: the route description (one table per module registers the
routes *and* generates ``/openapi.json``), the app keys handlers read, and the edge helpers
that turn a request's body and query into values (or a 400)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from appliance.bounded import TooDeep, loads_json
from appliance.errors import ServiceError
from appliance.node import Node

NODE_KEY = web.AppKey("node", Node)
OPENAPI_KEY = web.AppKey("openapi", dict)  # the document, made once by api.app.make_app

ANY_ROLE: tuple[str, ...] = ()  # any user of the policy


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    auth: str  # "open" | "user" | "peer" | "metrics"
    roles: tuple[str, ...] = ()
    body: dict | None = None  # JSON schema of the request body
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    responses: tuple[int, ...] = (200,)
    content_type: str = "application/json"


async def body_json(request: web.Request) -> dict:
    """The body as a JSON object (``{}`` if empty): depth-bounded before it is parsed
    (``too_deep``), else ``bad_json``."""
    raw = request.get("raw_body")
    if raw is None:
        raw = await request.read()
    if not raw:
        return {}
    try:
        data = loads_json(raw)  # depth-bounded before json recurses
    except TooDeep:
        raise  # errors_middleware: 400 too_deep
    except ValueError:
        raise ServiceError("bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ServiceError("bad_json", "the body must be a JSON object")
    return data


def wait_param(request: web.Request) -> float:
    """``?wait=`` (a long-poll), 0 to 60 seconds."""
    w = request.query.get("wait")
    if w is None:
        return 0.0
    try:
        v = float(w)
    except ValueError:
        raise ServiceError("bad_wait", "wait must be a number of seconds") from None
    if not 0 <= v <= 60:
        raise ServiceError("bad_wait", "wait must be between 0 and 60 seconds")
    return v


def node_of(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def user_of(request: web.Request):
    """The authenticated user (api.app's auth middleware set it)."""
    return request["user"]


def peer_index_of(request: web.Request) -> int:
    """The pinned peer's node index (api.app's auth middleware set it)."""
    return request["peer_index"]


async def hsm_health(node: Node) -> bool:
    try:
        return await asyncio.get_running_loop().run_in_executor(None, node.hsm.health)
    except Exception:
        return False
