"""Paged listings: the opaque cursor, ``limit`` and the sign-request filters, each checked at
the edge with its exact error code (``bad_cursor``, ``bad_limit``, ``bad_status``,
``bad_time``; an id in a filter: ``bad_id``).

A cursor is the base64url (unpadded) of the JSON ``[listing, created, id]`` of the last item
of a page: the next page starts strictly after it in the listing's fixed order (sign requests
newest first by (created, request_id); keys oldest first by (created, key_id)), so items
added meanwhile never shift a page nor repeat an item. A cursor of another listing, or one
whose id is not of its grammar, is ``bad_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.errors import ServiceError
from appliance.ids import BadId, check_id
from appliance.policy.grammar import ID as USER_ID

LIMIT_DEFAULT = 100
LIMIT_MAX = 500
#: the statuses a sign request shows (``cancelled``: rejected by its own initiator)
REQUEST_STATUSES = ("pending", "signing", "signed", "failed", "rejected", "cancelled", "expired")
#: listing -> the id kind of its items
LISTINGS = {"sign_requests": "request_id", "keys": "key_id"}

_CURSOR_MAX = 256
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LIMIT = re.compile(r"[0-9]{1,4}")
_TIME = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


@dataclass(frozen=True)
class PageQuery:
    """Where a page starts (``after``: (created, id) of the previous page's last item) and its size."""

    limit: int = LIMIT_DEFAULT
    after: tuple[float, str] | None = None


FIRST_PAGE = PageQuery()


@dataclass(frozen=True)
class SignRequestFilter:
    """Which sign requests a listing shows (None: any). Times are Unix seconds, exclusive."""

    statuses: tuple[str, ...] | None = None
    key_id: str | None = None
    initiator: str | None = None
    created_after: float | None = None
    created_before: float | None = None


def encode_cursor(listing: str, created: float, item_id: str) -> str:
    raw = json.dumps([listing, created, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(listing: str, text: str) -> tuple[float, str]:
    """(created, id) of a cursor this listing gave, else ``bad_cursor``."""
    bad = ServiceError("bad_cursor", "cursor is not one this listing gave (pass next_cursor as it came)")
    if not isinstance(text, str) or len(text) > _CURSOR_MAX or not _B64URL.fullmatch(text):
        raise bad
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not (isinstance(value, list) and len(value) == 3 and value[0] == listing):
        raise bad
    created, item_id = value[1], value[2]
    if (isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created)
            or created < 0):
        raise bad
    try:
        check_id(LISTINGS[listing], item_id)
    except BadId:
        raise bad from None
    return float(created), item_id


def parse_limit(text: str | None) -> int:
    if text is None:
        return LIMIT_DEFAULT
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= LIMIT_MAX:
        raise ServiceError("bad_limit", f"limit must be an integer from 1 to {LIMIT_MAX}")
    return int(text)


def page_query(listing: str, limit: str | None, cursor: str | None) -> PageQuery:
    return PageQuery(parse_limit(limit), None if cursor is None else decode_cursor(listing, cursor))


#: what ``GET /v1/sign-requests`` lists without a ``status`` (the contract: the open ones)
OPEN_STATUSES = ("pending", "signing")


def parse_statuses(values: Iterable[str]) -> tuple[str, ...] | None:
    """``status`` given repeated or as a comma list; not given: :data:`OPEN_STATUSES`;
    ``all``: every status (None: no filter)."""
    out: list[str] = []
    for value in values:
        for s in value.split(","):
            if s == "all":
                return None
            if s not in REQUEST_STATUSES:
                raise ServiceError("bad_status", f"status must be all or one of {', '.join(REQUEST_STATUSES)}")
            if s not in out:
                out.append(s)
    return tuple(out) or OPEN_STATUSES


def parse_time(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    if not _TIME.fullmatch(text):
        raise ServiceError("bad_time", f"{name} must be Unix seconds (digits, up to 9 decimals)")
    return float(text)


def sign_request_filter(*, status: Iterable[str], key_id: str | None, initiator: str | None,
                        created_after: str | None, created_before: str | None) -> SignRequestFilter:
    """The filters of ``GET /v1/sign-requests`` from their query values, each checked."""
    if key_id is not None:
        check_id("key_id", key_id)
    if initiator is not None and not USER_ID.fullmatch(initiator):
        raise BadId("initiator")
    return SignRequestFilter(parse_statuses(status), key_id, initiator,
                             parse_time("created_after", created_after),
                             parse_time("created_before", created_before))


def page(listing: str, items: list[dict], query: PageQuery, *, id_field: str) -> tuple[list[dict], str | None]:
    """``items``: up to ``query.limit + 1`` in listing order; the page and its next cursor."""
    if len(items) <= query.limit:
        return items, None
    last = items[query.limit - 1]
    return items[:query.limit], encode_cursor(listing, last["created"], last[id_field])
