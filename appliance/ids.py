"""The exact grammar of every id a user or a peer sends, and URL paths built from encoded segments.

An id from outside is checked here at the edge (route parameters, job descriptions, forwarded
calls) against the grammar of the ids this appliance makes, never by a prefix or a length
alone. The grammars, :class:`BadId` and :func:`url_path` are the client library's
(:mod:`appliance_client.ids`): one definition for the ids the client sends and the node checks.
A URL path to a peer or a node is built by :func:`url_path` from its segments, never by pasting
a string into an f-string.
"""

from __future__ import annotations

import secrets

from yarl import URL

from appliance_client.ids import GRAMMARS as GRAMMARS
from appliance_client.ids import BadId as BadId
from appliance_client.ids import check_id as check_id
from appliance_client.ids import is_id as is_id
from appliance_client.ids import url_path

#: the prefix of the ids :func:`new_id` makes, by kind
_PREFIX = {"key_id": "key", "op_id": "op", "job_id": "job", "aux_id": "aux"}

__all__ = ["GRAMMARS", "BadId", "check_id", "is_id", "new_id", "peer_path", "url_path"]


def new_id(kind: str) -> str:
    """A fresh random id of ``kind`` (key_id, op_id, job_id, aux_id): prefix and 96 random bits."""
    return f"{_PREFIX[kind]}_{secrets.token_hex(12)}"


def peer_path(*segments: str) -> URL:
    """A peer route: ``/v1/peer/`` followed by the encoded ``segments``."""
    return url_path("v1", "peer", *segments)
