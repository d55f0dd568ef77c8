"""``appliance audit verify FILE``: check an audit export, by default against the newest
checkpoints the node's peers witnessed (so that entries cut off the end are caught).

    appliance audit verify audit.jsonl --cluster cluster.toml --anchor anchor-node-2.json
    appliance audit verify audit.jsonl --cluster cluster.toml \\
        --anchor-url https://node-2:8443 --anchor-url https://node-3:8443 --user aud --key aud.pem

``--anchor FILE``: what ``GET /v1/audit/checkpoints`` (auditor) served, or JSON Lines of
checkpoints; ``--anchor-url URL``: fetch that document from a node now, as ``--user`` with
``--key`` (the node's certificate pinned from cluster.toml, or ``--server-cert``). Take the
anchors before the export (or fetch them when the export is fresh): a checkpoint made after
the export was taken looks like a cut. ``--no-require-checkpoint`` skips the check (loudly).

Exit codes: 0 verified, 7 verification failed (the first line names it: an entry missing,
altered or out of order, or ``truncated_before_checkpoint``, ``checkpoint_missing``,
``checkpoint_conflict``, ``no_checkpoint``, ``anchor_forged``), 2 cannot run (no node keys,
no anchor while one is required, an unreadable file, a node that does not answer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from api.client import ApplianceAPIError, ApplianceClient
from appliance.audit.anchor import (
    MAX_ANCHOR_BYTES,
    Anchor,
    AnchorError,
    parse_anchor_bytes,
    verify_with_anchors,
)
from appliance.audit.verify import node_keys_from_cluster
from appliance.config import load_toml
from appliance.errors import ApplianceError
from appliance.exit_codes import EXIT_VERIFICATION_FAILED

NO_ANCHOR = ("error: anchor_required: give --anchor FILE (GET /v1/audit/checkpoints from a "
             "peer) or --anchor-url URL, or --no-require-checkpoint")
UNCHECKED_WARNING = (
    "WARNING: --no-require-checkpoint: NOT checking the export against the checkpoints the "
    "peers witnessed. Entries cut off the end of the log (with their checkpoints) will NOT be "
    "detected; an OK below does not mean the log is complete.")


def load_anchor_files(paths: Iterable[str | Path]) -> list[Anchor]:
    out: list[Anchor] = []
    for p in paths:
        path = Path(p)
        if path.stat().st_size > MAX_ANCHOR_BYTES:
            raise AnchorError(f"{path}: larger than {MAX_ANCHOR_BYTES} bytes")
        out.extend(parse_anchor_bytes(path.read_bytes(), source=str(path)))
    return out


def _pins(cluster: Any) -> dict[str, str]:
    """node URL -> its pinned certificate PEM, from cluster.toml (or a node.toml naming it)."""
    if cluster is None:
        return {}
    path = Path(cluster)
    m = load_toml(path)
    if "nodes" not in m and isinstance(m.get("cluster"), str):
        m = load_toml(path.parent / m["cluster"])
    return {str(n["url"]).rstrip("/"): str(n["tls_cert"]) for n in m.get("nodes", [])
            if isinstance(n, dict) and "url" in n and "tls_cert" in n}


async def fetch_anchors(urls: Iterable[str], user: str, private_key: Any, *,
                        pins: Mapping[str, str] | None = None,
                        server_cert: str | None = None) -> list[Anchor]:
    """``GET /v1/audit/checkpoints`` from each node (all must answer)."""
    out: list[Anchor] = []
    for url in urls:
        url = url.rstrip("/")
        cert = (pins or {}).get(url, server_cert)
        async with ApplianceClient(url, user, private_key, server_cert=cert) as c:
            raw = await c.audit_checkpoints(raw=True)
        out.extend(parse_anchor_bytes(raw, source=url))
    return out


def verify_command(file: str | Path, *, cluster: Any = None,
                   node_keys: Mapping[str, bytes | str] | None = None,
                   node_id: str | None = None, min_cosignatures: int = 0,
                   require_checkpoint: bool = True, require_final_checkpoint: bool = False,
                   anchors: Iterable[Anchor] | None = None, out: IO[str] | None = None,
                   err: IO[str] | None = None) -> int:
    """Print the verdict on ``out``; exit code 0, 7 or 2 (see the module). ``anchors``:
    None when none was given (refused while ``require_checkpoint``); given but without a
    checkpoint of the node, the export fails with ``no_checkpoint``."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        keys = dict(node_keys or {})
        if cluster is not None:
            keys.update(node_keys_from_cluster(cluster))
        if not keys:
            print("error: no node keys (give --cluster cluster.toml or --node-key ID=HEX)",
                  file=out)
            return 2
        if require_checkpoint and anchors is None:
            print(NO_ANCHOR, file=out)
            return 2
        if not require_checkpoint:
            print(UNCHECKED_WARNING, file=err)
        with open(file, "rb") as f:
            lines = f.read().split(b"\n")
        report = verify_with_anchors(lines, keys, anchors or (), node_id=node_id,
                                     require=require_checkpoint,
                                     min_cosignatures=min_cosignatures,
                                     require_checkpoint=require_final_checkpoint)
    except (OSError, ValueError, KeyError, ApplianceError) as exc:
        print(f"error: {exc}", file=out)
        return 2
    print(report.summary(), file=out)
    return 0 if report.ok else EXIT_VERIFICATION_FAILED


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="JSON Lines export (GET /v1/audit)")
    p.add_argument("--cluster", help="cluster.toml (or node.toml) with the nodes' identity keys "
                   "(and the certificates pinned for --anchor-url)")
    p.add_argument("--node-key", action="append", default=[], metavar="ID=HEX",
                   help="a node's identity key (compressed secp256k1, hex); repeatable")
    p.add_argument("--node", help="the node whose log this must be")
    p.add_argument("--min-cosignatures", type=int, default=0)
    p.add_argument("--require-checkpoint", action=argparse.BooleanOptionalAction, default=True,
                   help="the export must reach the newest checkpoint the peers witnessed "
                   "(default; --no-require-checkpoint skips it, with a warning)")
    p.add_argument("--require-final-checkpoint", action="store_true",
                   help="also: the last entry must be covered by a signed checkpoint (an "
                   "export taken after the node stopped)")
    p.add_argument("--anchor", "--anchors", dest="anchor", action="append", default=[],
                   metavar="FILE", help="what GET /v1/audit/checkpoints served (or JSON Lines "
                   "of checkpoints witnessed by peers); repeatable")
    p.add_argument("--anchor-url", action="append", default=[], metavar="URL",
                   help="fetch GET /v1/audit/checkpoints from this node now; repeatable")
    p.add_argument("--user", help="auditor user for --anchor-url (or APPLIANCE_USER)")
    p.add_argument("--key", help="that user's private key PEM (or APPLIANCE_KEY)")
    p.add_argument("--server-cert", help="certificate PEM to pin for --anchor-url when "
                   "cluster.toml does not list the URL (or APPLIANCE_SERVER_CERT)")


def run_verify_args(args: argparse.Namespace, out: IO[str] | None = None,
                    err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    keys = {}
    for spec in args.node_key:
        nid, _, hexkey = spec.partition("=")
        keys[nid] = hexkey
    try:
        anchors = load_anchor_files(args.anchor)
        if args.anchor_url:
            user = args.user or os.environ.get("APPLIANCE_USER")
            key = args.key or os.environ.get("APPLIANCE_KEY")
            cert = args.server_cert or os.environ.get("APPLIANCE_SERVER_CERT")
            if not (user and key):
                print("error: --anchor-url needs --user and --key (or APPLIANCE_USER/KEY)",
                      file=out)
                return 2
            anchors += asyncio.run(fetch_anchors(
                args.anchor_url, user, Path(key).read_bytes(), pins=_pins(args.cluster),
                server_cert=Path(cert).read_text() if cert else None))
    except ApplianceAPIError as exc:
        print(f"error: cannot fetch the anchors: {exc}", file=out)
        return 2
    except (OSError, ValueError, ApplianceError) as exc:
        print(f"error: {exc}", file=out)
        return 2
    return verify_command(args.file, cluster=args.cluster, node_keys=keys, node_id=args.node,
                          min_cosignatures=args.min_cosignatures,
                          require_checkpoint=args.require_checkpoint,
                          require_final_checkpoint=args.require_final_checkpoint,
                          anchors=anchors if args.anchor or args.anchor_url else None,
                          out=out, err=err)


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.audit.command verify FILE ...`` (as ``appliance audit verify``)."""
    parser = argparse.ArgumentParser(prog="appliance audit")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_verify_arguments(sub.add_parser("verify", help="verify an audit export"))
    return run_verify_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
