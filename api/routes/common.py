"""What every route module shares: the route description (one table per module registers the
routes *and* generates ``/openapi.json``), the app keys handlers read, and the edge helpers
that turn a request's body and query into values (or a 400)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import msgspec
from aiohttp import web

from api.bodies import Body

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
    body: type[Body] | None = None  # the JSON request body (api/bodies.py)
    response: type[msgspec.Struct] | None = None  # the JSON body of a success (api/bodies.py)
    example: dict[str, Any] | None = None  # an example request body
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    responses: tuple[int, ...] = (200,)
    content_type: str = "application/json"
    failure_is_response: bool = False  # an error status of ``responses`` answers ``response``, not Error (/readyz)


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


B = TypeVar("B", bound=Body)

_AT = re.compile(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)")
_MISSING = re.compile(r"^Object missing required field `([^`]+)`$")


async def body_of(request: web.Request, body: type[B]) -> B:
    """The body decoded once as ``body`` (``{}`` if empty): depth-bounded, parsed, then
    converted strictly. A field that does not fit answers the code the service gives for it
    (``body.field_codes``; ``body.missing_codes`` when it is missing or null), else ``bad_body``."""
    data = await body_json(request)
    try:
        return msgspec.convert(data, body, strict=True)
    except msgspec.ValidationError as exc:
        raise ServiceError(_code_of(body, data, str(exc)), f"the body does not fit: {exc}"[:300]) from None


def _code_of(body: type[Body], data: dict, message: str) -> str:
    at = _AT.search(message)
    missing = _MISSING.match(message)
    field = at.group(1) if at else missing.group(1) if missing else None
    if field is None:
        return "bad_body"
    if data.get(field) is None and field in body.missing_codes:
        return body.missing_codes[field]
    return body.field_codes.get(field, "bad_body")


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
