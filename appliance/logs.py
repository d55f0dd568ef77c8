"""The node's logs: one JSON object a line (structlog), and the request id.

Every line carries ``event``, ``level``, ``logger``, ``timestamp``, ``node`` and, while a request
(or a job it caused) is being handled, ``request_id``. Records of the standard library's
``logging`` (``logging.getLogger(...).info("... %s", x)``) are routed through the same
renderer, so existing calls come out as JSON with the formatted message as ``event``.

The request id (:data:`REQUEST_ID`) is a context variable: bound by the HTTP edge
(:mod:`api.request_log`) from ``X-Request-Id`` or made fresh, copied into every task spawned
while it is bound (asyncio copies the context), written into the audit entries the request
causes (:class:`appliance.recorder.Recorder`), sent to peers with each job (the job spec's
``http_request_id``, covered by the coordinator's signature) and on every peer request.

What never goes into a log line: a secret, a PIN, a share, a key, a payload or request body.
Events name ids, codes, counts and durations only.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import structlog

#: the request id of the request (or job) being handled, None outside one
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: the job spec's field for the request id (``request_id`` there is the sign request's id)
HTTP_REQUEST_ID = "http_request_id"
_NODE: dict[str, str | None] = {"id": None}


def valid_request_id(value: Any) -> bool:
    return isinstance(value, str) and REQUEST_ID_PATTERN.match(value) is not None


def new_request_id() -> str:
    """A fresh id: 128 random bits, hex."""
    return secrets.token_hex(16)


def current_request_id() -> str | None:
    return REQUEST_ID.get()


@contextmanager
def bound_request_id(request_id: str | None) -> Iterator[None]:
    """Bind ``request_id`` (if valid) for the block and the tasks it spawns."""
    if not valid_request_id(request_id):
        yield
        return
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


def get_logger(name: str) -> Any:
    """A structlog logger: ``log.info("event_name", key=value, ...)``."""
    return structlog.stdlib.get_logger(name)


def _add_context(_logger: Any, _name: str, event: dict) -> dict:
    if _NODE["id"] is not None:
        event.setdefault("node", _NODE["id"])
    rid = REQUEST_ID.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


_SHARED: list = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_context,
]


def configure(node_id: str | None = None, *, level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """JSON lines on ``stream`` (stderr) for structlog and stdlib loggers at ``level``; ``node_id``
    goes into every line (set again once the node's configuration is read)."""
    _NODE["id"] = node_id
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(sort_keys=False, default=str)],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's own access logger stays off (api.request_log writes one event per request)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def set_node(node_id: str) -> None:
    _NODE["id"] = node_id
