"""The ``appliance`` commands of the sign-request routes, and the payload options of
``appliance sign``:

    appliance requests list [--status pending --status signed | --status all] [--key-id K]
                            [--initiator U] [--created-after T] [--created-before T]
                            [--limit N] [--cursor C | --all]      # newest first; a table, or --json
    appliance requests show ID                 # what the node decoded, the statement, the signature
    appliance requests cancel ID               # the initiator withdraws a pending request
    appliance reject ID [--reason TEXT]        # an approver (as `approve ID --reject`)
    appliance sign --key-id K --psbt FILE [--network regtest]   # base64 text or a binary PSBT
    appliance sign --key-id K --eth-tx FILE    # an unsigned Ethereum transaction, hex
    appliance sign --key-id K --eip712 FILE    # EIP-712 typed data, JSON

Times (``--created-after``/``--created-before``): Unix seconds or ISO 8601 (UTC unless it says).
"""

from __future__ import annotations

import argparse
import base64
import binascii
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appliance.bounded import loads_json
from appliance.cli_client import add_client_arguments, client_from_args, emit
from appliance.cli_errors import UsageError
from appliance.policy import BITCOIN_NETWORKS

REQUEST_COLUMNS = ("request_id", "status", "key_id", "initiator", "created", "payload_type")
STATUSES = ("pending", "signing", "signed", "failed", "rejected", "cancelled", "expired", "all")
PSBT_MAGIC = b"psbt\xff"


def unix_time(text: str) -> float:
    """``--created-after``/``--created-before``: Unix seconds, or an ISO 8601 time."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither Unix seconds nor an ISO 8601 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def add_commands(sub) -> None:
    """``requests`` and ``reject`` on the ``appliance`` parser."""
    p = sub.add_parser("requests", help="sign requests: list (filters, pages), show, cancel")
    rs = p.add_subparsers(dest="requests_cmd", required=True)
    q = rs.add_parser("list", help="this node's sign requests, newest first (default: the open ones)")
    add_client_arguments(q)
    q.add_argument("--status", action="append", choices=STATUSES,
                   help="repeat for several; all: every status (default: pending and signing)")
    q.add_argument("--key-id")
    q.add_argument("--initiator")
    q.add_argument("--created-after", type=unix_time, metavar="TIME", help="Unix seconds or ISO 8601 (exclusive)")
    q.add_argument("--created-before", type=unix_time, metavar="TIME", help="Unix seconds or ISO 8601 (exclusive)")
    q.add_argument("--limit", type=int, help="at most this many (one page; its next_cursor with --json)")
    q.add_argument("--cursor", help="the next page (a page's next_cursor)")
    q.add_argument("--all", action="store_true", help="follow the cursors: every matching request")
    q.set_defaults(func=cmd_list)
    for name, what in (("show", "one sign request (what the node decoded; the signature once signed)"),
                       ("cancel", "the initiator withdraws their own pending request")):
        q = rs.add_parser(name, help=what)
        add_client_arguments(q)
        q.add_argument("request_id")
        q.set_defaults(func=cmd_show if name == "show" else cmd_cancel)

    p = sub.add_parser("reject", help="reject a pending sign request (an approver)")
    add_client_arguments(p)
    p.add_argument("request_id")
    p.add_argument("--reason", help="why: signed with the rejection (1-200 printable characters); the "
                   "initiator sees it in the request, the audit log keeps it")
    p.set_defaults(func=cmd_reject)


def add_sign_payload_arguments(p: argparse.ArgumentParser, what) -> None:
    """``sign``'s payload files, in ``what`` (the group of what to sign: one of them)."""
    what.add_argument("--psbt", type=Path, metavar="FILE", help="a PSBT to sign (base64 text or binary)")
    p.add_argument("--network", choices=BITCOIN_NETWORKS, help="the PSBT's Bitcoin network "
                   "(default: the key rule's)")
    what.add_argument("--eth-tx", type=Path, metavar="FILE", help="an unsigned Ethereum transaction (hex)")
    what.add_argument("--eip712", type=Path, metavar="FILE", help="EIP-712 typed data (JSON)")


def payload_of(args) -> tuple[Any, str] | None:
    """``(payload, payload_type)`` of ``sign --psbt/--eth-tx/--eip712`` (None: none given)."""
    given = [(flag, path) for flag, path in (("psbt", args.psbt), ("eth_tx", args.eth_tx),
                                             ("eip712", args.eip712)) if path is not None]
    if args.network is not None and args.psbt is None:
        raise UsageError("--network goes with --psbt")
    if not given:
        return None
    kind, path = given[0]
    raw = path.read_bytes()
    if kind == "psbt":
        if raw.startswith(PSBT_MAGIC):
            return base64.b64encode(raw).decode("ascii"), kind
        text = raw.decode("ascii", errors="replace").strip()
        try:
            if not base64.b64decode(text, validate=True).startswith(PSBT_MAGIC):
                raise ValueError
        except (binascii.Error, ValueError):
            raise UsageError(f"{path}: not a PSBT (base64 text or binary, starting with psbt\\xff)") from None
        return text, kind
    if kind == "eth_tx":
        text = raw.decode("ascii", errors="replace").strip().removeprefix("0x")
        try:
            bytes.fromhex(text)
        except ValueError:
            raise UsageError(f"{path}: not hex (an unsigned Ethereum transaction)") from None
        return text.lower(), kind
    try:
        return loads_json(raw), kind
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None


async def cmd_list(args) -> int:
    statuses = args.status or None
    if statuses and "all" in statuses:
        statuses = "all"
    filters = dict(status=statuses, key_id=args.key_id, initiator=args.initiator,
                   created_after=args.created_after, created_before=args.created_before)
    async with client_from_args(args) as c:
        if args.all:
            if args.cursor is not None:
                raise UsageError("give one of --cursor and --all")
            rows = await c.list_sign_requests(page_size=args.limit, **filters)
            emit(args, {"sign_requests": rows, "next_cursor": None} if args.json else rows, REQUEST_COLUMNS)
            return 0
        page = await c.sign_requests_page(limit=args.limit, cursor=args.cursor, **filters)
    if args.json or args.field:
        emit(args, page)
    else:
        emit(args, page["sign_requests"], REQUEST_COLUMNS)
        if page.get("next_cursor"):
            print(f"more: --cursor {page['next_cursor']}")
    return 0


async def cmd_show(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.get_sign_request(args.request_id))
    return 0


async def cmd_cancel(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.cancel(args.request_id))
    return 0


async def cmd_reject(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.reject(args.request_id, args.reason))
    return 0
