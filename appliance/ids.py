"""The exact grammar of every id a user or a peer sends, and URL paths built from encoded segments.

An id from outside is checked here at the edge (route parameters, job descriptions, forwarded
calls) against the grammar of the ids this appliance makes, never by a prefix or a length
alone. A URL path to a peer or a node is built by :func:`url_path` from its segments, each
percent-encoded whole (``/``, ``?``, ``#``, ``%`` and ``..`` cannot leave their segment), never
by pasting a string into an f-string.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import quote

from yarl import URL

from appliance.errors import ApplianceError

#: id kind -> its exact grammar (fullmatch)
GRAMMARS: dict[str, re.Pattern[str]] = {
    "request_id": re.compile(r"req_[0-9a-f]{32}"),   # SHA-256 of (cluster, initiator, nonce), cut
    "key_id": re.compile(r"key_[0-9a-f]{24}"),
    "op_id": re.compile(r"op_[0-9a-f]{24}"),
    "job_id": re.compile(r"job_[0-9a-f]{24}"),
    "node_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
}
#: the prefix of the ids :func:`new_id` makes, by kind
_PREFIX = {"key_id": "key", "op_id": "op", "job_id": "job"}


class BadId(ApplianceError, ValueError):
    """An id that is not of its kind's exact grammar (``kind``: request_id, key_id, ...)."""

    code = "bad_id"

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} is not a well-formed {kind.replace('_', ' ')}")
        self.kind = kind
        self.message = str(self)


def is_id(kind: str, value: Any) -> bool:
    return isinstance(value, str) and GRAMMARS[kind].fullmatch(value) is not None


def check_id(kind: str, value: Any) -> str:
    """``value`` if it is a well-formed id of ``kind``, else :class:`BadId`."""
    if not is_id(kind, value):
        raise BadId(kind)
    return value


def new_id(kind: str) -> str:
    """A fresh random id of ``kind`` (key_id, op_id, job_id): prefix and 96 random bits."""
    return f"{_PREFIX[kind]}_{secrets.token_hex(12)}"


def url_path(*segments: str) -> URL:
    """The relative URL ``/seg1/seg2/...`` with each segment percent-encoded whole; an empty
    segment, ``.`` or ``..`` is refused (ValueError): they would change the path's meaning."""
    parts = []
    for s in segments:
        if not isinstance(s, str) or s in ("", ".", ".."):
            raise ValueError(f"bad URL path segment {s!r}")
        parts.append(quote(s, safe=""))
    return URL("/" + "/".join(parts), encoded=True)


def peer_path(*segments: str) -> URL:
    """A peer route: ``/v1/peer/`` followed by the encoded ``segments``."""
    return url_path("v1", "peer", *segments)
