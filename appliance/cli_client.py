"""The client side of the ``appliance`` command: the connection options every client command
takes, printing an answer (or one field of it), the exit codes of a refused call, and the
commands of the by-hand flow that the first CLI lacked (docs/deploy.md uses each):

    appliance key create --threshold 2 --no-wait --field operation_id   # admin: a DKG request
    appliance operation approve OPERATION_ID                              # another admin
    appliance operation wait OPERATION_ID --field key_id                  # the key, once made
    appliance sign --key-id KEY --message hello --no-wait --field request_id
    appliance approve REQUEST_ID                                          # an approver
    appliance signature REQUEST_ID --field signature.der                  # waits for it
    appliance audit anchor --out anchor.json --node node-1 --wait 60      # auditor, at a peer
    appliance audit export --out audit.jsonl                              # auditor

Exit codes (DESIGN.md): 0 ok, 2 usage, 3 refused by policy or authentication, 4 not found,
5 timeout, 6 unreachable, 7 verification failed; an error is one line on stderr (``--json``:
the error body on stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from api.client import ApplianceClient
from appliance.cli_errors import CommandTimeout, UsageError
from appliance.cli_progress import progress_on_stderr
from appliance.fsmodes import write_private_file


def add_client_arguments(p: argparse.ArgumentParser) -> None:
    """Where and as whom a client command talks, and what it prints."""
    p.add_argument("--url")
    p.add_argument("--user")
    p.add_argument("--key", help="the user's private key PEM file")
    p.add_argument("--server-cert", help="the node's certificate PEM to pin")
    p.add_argument("--ca-file", help="CA certificates (PEM) to trust for the node's certificate, "
                   "host name checked (a node with a certificate from your CA)")
    p.add_argument("--field", help="print only this field of the answer (dotted: signature.der)")
    add_json_argument(p)


def add_json_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the answer as one line of JSON (for scripts); an error as "
                        '{"error": {"code", "message"}} on stdout too')


def client_from_args(args, *, auth: bool = True) -> ApplianceClient:
    """The client the connection options name; ``auth=False``: no user needed (open routes)."""
    url = args.url or os.environ.get("APPLIANCE_URL")
    user = args.user or os.environ.get("APPLIANCE_USER")
    key = args.key or os.environ.get("APPLIANCE_KEY")
    cert = args.server_cert or os.environ.get("APPLIANCE_SERVER_CERT")
    ca_file = args.ca_file or os.environ.get("APPLIANCE_CA_FILE")
    if not url:
        raise UsageError("--url (or APPLIANCE_URL) is required")
    if auth and not (user and key):
        raise UsageError("--url, --user and --key (or APPLIANCE_URL/USER/KEY) are required")
    if cert and ca_file:
        raise UsageError("give one of --server-cert (pin the node's certificate) and --ca-file "
                         "(trust a CA, check the host name)")
    pem = Path(cert).read_text() if cert else None
    if not auth:
        return ApplianceClient(url, user or "", None, server_cert=pem, ca_file=ca_file)
    return ApplianceClient(url, user, Path(key).read_bytes(), server_cert=pem, ca_file=ca_file)


def field_of(obj: Any, path: str) -> Any:
    """``obj``'s field at the dotted ``path``; UsageError naming the missing part."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise UsageError(f"the answer has no field {path!r}")
        obj = obj[part]
    return obj


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """``rows`` as a compact text table of ``columns`` (times as UTC ISO 8601)."""
    cells = [list(columns)] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def emit(args, obj: Any, columns: tuple[str, ...] | None = None) -> None:
    """Print the answer: with ``--field`` only that field (a string bare); with ``--json`` one
    line of JSON; else a table of ``columns`` when the answer is a list and they are given, or
    indented JSON."""
    name = getattr(args, "field", None)
    if name:
        value = field_of(obj, name)
        print(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
        return
    if getattr(args, "json", False):
        print(json.dumps(obj, sort_keys=True, separators=(",", ":")))
    elif columns is not None and isinstance(obj, list):
        print(table(obj, columns) if obj else "(none)")
    else:
        print(json.dumps(obj, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------------------
# key operations (keygen, refresh, reshare, import) waiting for the admin quorum


async def cmd_operation(args) -> int:
    async with client_from_args(args) as c:
        if args.operation_cmd == "show":
            emit(args, await c.operation(args.operation_id))
        elif args.operation_cmd == "approve":
            emit(args, await c.approve_operation(args.operation_id))
        else:
            with progress_on_stderr() as show:
                op = await c.wait_operation(args.operation_id, timeout=args.timeout, on_progress=show)
            emit(args, op)
    return 0


async def cmd_signature(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.wait_signature(args.request_id, timeout=args.timeout))
    return 0


# ---------------------------------------------------------------------------------------
# audit: the export and a peer's anchor, for `appliance audit verify`


async def cmd_audit_export(args) -> int:
    async with client_from_args(args) as c:
        data = await c.audit_export(args.since)
    write_private_file(args.out, data)
    print(json.dumps({"export": str(args.out), "lines": data.count(b"\n")}))
    return 0


def _witnessed(doc: dict, node: str | None) -> int:
    return max((w["checkpoint"]["seq"] for w in doc.get("witnessed", [])
                if node is None or w["checkpoint"]["node"] == node), default=0)


async def cmd_audit_anchor(args) -> int:
    """``GET /v1/audit/checkpoints`` of the node at --url, saved as served; with ``--node``
    and ``--wait S``, once that node holds a checkpoint of ``--node`` (up to S seconds)."""
    deadline = time.monotonic() + args.wait
    async with client_from_args(args) as c:
        while True:
            raw = await c.audit_checkpoints(raw=True)
            seq = _witnessed(json.loads(raw), args.node)
            if seq > 0 or args.node is None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)  # peers co-sign checkpoints every 2 s
    if args.node is not None and seq == 0:
        raise CommandTimeout("no_checkpoint", f"{args.url or 'the node'} holds no checkpoint of {args.node} "
                             "(yet: a node makes one every [audit] checkpoint_every entries)")
    write_private_file(args.out, raw)
    print(json.dumps({"anchor": str(args.out), "witnessed_seq": seq}))
    return 0


def add_commands(sub, audit_sub) -> None:
    """The subcommands above, on the ``appliance`` parser (``sub``) and its ``audit`` one."""
    p = sub.add_parser("operation", help="key operations waiting for the admin quorum")
    ops = p.add_subparsers(dest="operation_cmd", required=True)
    for name, what in (("show", "the operation now"), ("approve", "approve it (an admin)"),
                       ("wait", "wait until it is done; its result")):
        q = ops.add_parser(name, help=what)
        add_client_arguments(q)
        q.add_argument("operation_id")
        if name == "wait":
            q.add_argument("--timeout", type=float, default=600)

    p = sub.add_parser("signature", help="wait for a sign request's signature and print it")
    add_client_arguments(p)
    p.add_argument("request_id")
    p.add_argument("--timeout", type=float, default=300)

    q = audit_sub.add_parser("export", help="GET /v1/audit (auditor) into a file for `audit verify`")
    add_client_arguments(q)
    q.add_argument("--out", required=True, type=Path)
    q.add_argument("--since", type=int, default=0)
    q = audit_sub.add_parser("anchor", help="GET /v1/audit/checkpoints of a peer (auditor): an anchor")
    add_client_arguments(q)
    q.add_argument("--out", required=True, type=Path)
    q.add_argument("--node", help="wait until the anchor holds a checkpoint of this node")
    q.add_argument("--wait", type=float, default=0, help="seconds to wait for it")


async def run(args) -> int:
    if args.cmd == "operation":
        return await cmd_operation(args)
    if args.cmd == "signature":
        return await cmd_signature(args)
    if args.audit_cmd == "export":
        return await cmd_audit_export(args)
    return await cmd_audit_anchor(args)
