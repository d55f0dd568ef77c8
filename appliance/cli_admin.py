"""The ``appliance`` commands of the key and cluster administration routes:

    appliance key refresh KEY [--no-wait]                      # new shares, same public key
    appliance key reshare KEY --threshold T --nodes a,b,c      # new holders / threshold
    appliance key derive KEY m/0/1                             # BIP32 child public key, xpub
    appliance key address KEY --kind p2wpkh|eth|p2tr|sol [--path m/0/1]
    appliance policy show                                      # the policy in force
    appliance policy update FILE --sign admin:admin.pem --sign admin2:admin2.pem
        # FILE: the new policy (TOML as policy.toml, or JSON as `policy show --field policy`),
        # its version above the current one; signed here by each --sign (the policy_change quorum)
    appliance quarantine list | clear NODE
    appliance health | ready                                   # the open routes: no user needed

Each command's handler is ``args.func`` (run by appliance.cli); errors: appliance/cli_errors.py.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from appliance.bounded import loads_json
from appliance.cli_client import add_client_arguments, client_from_args, emit
from appliance.cli_errors import UsageError
from appliance.cli_progress import progress_on_stderr
from appliance.policy import Policy, PolicyUpdate, load_private_key

KEY_COLUMNS = ("key_id", "threshold", "nodes", "status", "public_key")
QUARANTINE_COLUMNS = ("node_id", "reason", "since")


def _wait_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--no-wait", action="store_true",
                   help="print the operation and return (it may wait for the admin quorum: "
                        "appliance operation approve / wait)")
    q.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the operation")


def node_list(text: str) -> list[str]:
    nodes = [n for n in text.split(",") if n]
    if not nodes:
        raise UsageError("--nodes takes comma-separated node ids")
    return nodes


def add_key_commands(ks) -> None:
    """``key refresh``, ``key reshare``, ``key derive``, ``key address`` on the ``key`` parser."""
    q = ks.add_parser("refresh", help="new shares of the key on its holders, the same public key "
                      "(a key change under the key-change quorum)")
    add_client_arguments(q)
    q.add_argument("key_id")
    _wait_options(q)
    q.set_defaults(func=cmd_refresh)
    q = ks.add_parser("reshare", help="move the key to other holders or another threshold (a key change)")
    add_client_arguments(q)
    q.add_argument("key_id")
    q.add_argument("--threshold", type=int, required=True)
    q.add_argument("--nodes", required=True, type=node_list, help="comma-separated node ids: the new holders")
    _wait_options(q)
    q.set_defaults(func=cmd_reshare)
    q = ks.add_parser("derive", help="a BIP32 child public key and xpub (non-hardened path)")
    add_client_arguments(q)
    q.add_argument("key_id")
    q.add_argument("path", help="e.g. m/0/1")
    q.set_defaults(func=cmd_derive)
    q = ks.add_parser("address", help="the address of the key (or of a derived key: --path)")
    add_client_arguments(q)
    q.add_argument("key_id")
    q.add_argument("--kind", required=True, choices=("p2wpkh", "eth", "p2tr", "sol"))
    q.add_argument("--path", help="BIP32 non-hardened path, e.g. m/0/1")
    q.set_defaults(func=cmd_address)


def add_commands(sub) -> None:
    """``policy``, ``quarantine``, ``health`` and ``ready`` on the ``appliance`` parser."""
    p = sub.add_parser("policy", help="the cluster policy: show, update (signed by the policy_change quorum)")
    ps = p.add_subparsers(dest="policy_cmd", required=True)
    q = ps.add_parser("show", help="the policy in force: cluster_id, policy_hash, version, policy")
    add_client_arguments(q)
    q.set_defaults(func=cmd_policy_show)
    q = ps.add_parser("update", help="replace the policy: FILE (TOML or JSON) signed by each --sign")
    add_client_arguments(q)
    q.add_argument("file", type=Path, help="the new policy: TOML (as policy.toml) or JSON (as `policy show "
                   "--field policy`); its version must be above the current one")
    q.add_argument("--sign", action="append", default=[], metavar="USER:KEY_PEM",
                   help="an admin's signature (repeat up to the policy_change quorum)")
    q.set_defaults(func=cmd_policy_update)

    p = sub.add_parser("quarantine", help="nodes left out of quorums after an identifiable abort named them")
    qs = p.add_subparsers(dest="quarantine_cmd", required=True)
    q = qs.add_parser("list", help="the nodes quarantined on the node at --url")
    add_client_arguments(q)
    q.set_defaults(func=cmd_quarantine_list)
    q = qs.add_parser("clear", help="admin: let NODE sign again (on the node at --url)")
    add_client_arguments(q)
    q.add_argument("node_id")
    q.set_defaults(func=cmd_quarantine_clear)

    for name, what in (("health", "GET /healthz: the node answers (no user needed)"),
                       ("ready", "GET /readyz: HSM open, audit log writable, node started (exit 1 if not)")):
        q = sub.add_parser(name, help=what)
        add_client_arguments(q)
        q.set_defaults(func=cmd_open_route)


async def _operation(args, start) -> int:
    """Start a key operation; print it (``--no-wait``) or its result, its progress on stderr."""
    async with client_from_args(args) as c:
        op = await start(c)
        if args.no_wait:
            emit(args, op)
            return 0
        with progress_on_stderr() as show:
            done = await c.wait_operation(op["operation_id"], args.timeout, on_progress=show)
        emit(args, done)
    return 0


async def cmd_refresh(args) -> int:
    return await _operation(args, lambda c: c.start_refresh(args.key_id))


async def cmd_reshare(args) -> int:
    return await _operation(args, lambda c: c.start_reshare(args.key_id, args.threshold, args.nodes))


async def cmd_derive(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.derive(args.key_id, args.path))
    return 0


async def cmd_address(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.address(args.key_id, args.kind, args.path))
    return 0


async def cmd_policy_show(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.policy(refresh=True))
    return 0


def policy_of_file(path: Path) -> Policy:
    """The policy in ``path``: TOML (``.toml``) or JSON (anything else)."""
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else loads_json(text.encode())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not TOML: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    return Policy.from_mapping(data)


def signer_of(spec: str) -> tuple[str, object]:
    uid, _, path = spec.partition(":")
    if not (uid and path):
        raise UsageError("--sign takes USER:PRIVATE_KEY_PEM_FILE")
    return uid, load_private_key(Path(path).read_bytes())


async def cmd_policy_update(args) -> int:
    new = policy_of_file(args.file)
    signers = [signer_of(spec) for spec in args.sign]
    if not signers:
        raise UsageError("policy update needs at least one --sign USER:KEY_PEM (the policy_change quorum)")
    async with client_from_args(args) as c:
        current = await c.policy(refresh=True)
        update = PolicyUpdate(new, current["policy_hash"])
        for uid, key in signers:
            update = update.signed_by(uid, key)
        emit(args, await c.update_policy(update.to_json()))
    return 0


async def cmd_quarantine_list(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.quarantined(), QUARANTINE_COLUMNS)
    return 0


async def cmd_quarantine_clear(args) -> int:
    async with client_from_args(args) as c:
        emit(args, await c.clear_quarantine(args.node_id))
    return 0


async def cmd_open_route(args) -> int:
    async with client_from_args(args, auth=False) as c:
        if args.cmd == "health":
            emit(args, await c.healthz())
            return 0
        body = await c.readyz()
    emit(args, body)
    return 0 if body.get("ready") else 1

