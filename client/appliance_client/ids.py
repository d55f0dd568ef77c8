"""The exact grammar of the ids the appliance makes, and URL paths built from encoded segments
(the node's :mod:`appliance.ids` checks ids from users and peers with these).

A URL path is built by :func:`url_path` from its segments, each percent-encoded whole (``/``,
``?``, ``#``, ``%`` and ``..`` cannot leave their segment), never by pasting a string into an
f-string.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from yarl import URL

from appliance_client.errors import ApplianceError

#: id kind -> its exact grammar (fullmatch)
GRAMMARS: dict[str, re.Pattern[str]] = {
    "request_id": re.compile(r"req_[0-9a-f]{32}"),   # SHA-256 of (cluster, initiator, nonce), cut
    "key_id": re.compile(r"key_[0-9a-f]{24}"),
    "op_id": re.compile(r"op_[0-9a-f]{24}"),
    "job_id": re.compile(r"job_[0-9a-f]{24}"),
    "aux_id": re.compile(r"aux_[0-9a-f]{24}"),
    "node_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
}


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


def url_path(*segments: str) -> URL:
    """The relative URL ``/seg1/seg2/...`` with each segment percent-encoded whole; an empty
    segment, ``.`` or ``..`` is refused (ValueError): they would change the path's meaning."""
    parts = []
    for s in segments:
        if not isinstance(s, str) or s in ("", ".", ".."):
            raise ValueError(f"bad URL path segment {s!r}")
        parts.append(quote(s, safe=""))
    return URL("/" + "/".join(parts), encoded=True)
