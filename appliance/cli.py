"""The ``appliance`` command.

Setting up a cluster by hand (each node on its own machine)::

    appliance init --dir /var/lib/appliance --node-id node-1 --listen 0.0.0.0:8443 \\
                   --url https://node-1.example:8443 \\
                   --pkcs11-module /usr/lib/x.so --token-label node-1 --pin-env NODE_PIN
        # (or --pin-file F; --softhsm DIR makes a SoftHSM2 token instead: tests, demo)
        # HSM identity + transport keys on the token, TLS certificate, node.toml,
        # metrics.token (the Prometheus scraper's bearer token) and node-info.json (the
        # public part to pin in the cluster configuration)
    appliance user-key --out alice.pem                  # a user's Ed25519 key (+ alice.pub.pem)
    appliance cluster-config --out cluster.toml --node-info n1/node-info.json n2/... n3/... \\
                   --user alice:initiator:alice.pub.pem --user bob:admin:bob.pub.pem
        # then copy cluster.toml next to every node.toml
    appliance serve --config /var/lib/appliance/node.toml

Using it (client commands take --url, --user, --key, --server-cert or --ca-file, or
APPLIANCE_URL, APPLIANCE_USER, APPLIANCE_KEY, APPLIANCE_SERVER_CERT, APPLIANCE_CA_FILE)::

    appliance key create --threshold 2
    appliance key list
    appliance sign --key-id KEY --message "hello"        # or --digest HEX; waits for approval
        # the nodes sign SHA-256("hello"); --message-format eip191: personal_sign
    appliance approve REQUEST_ID                         # as an approver (--reject, --show)
    appliance verify --public-key HEX --digest HEX --signature DERHEX  # or --message FILE, --rsv HEX
    appliance verify --scheme schnorr-bip340 --public-key XONLY --digest HEX --signature SIG64HEX
    appliance tls stage --config node.toml               # on node-2: its next certificate
    appliance cluster rotate-cert --node-id node-2 --cert STAGED.crt --sign admin:admin.pem
    appliance audit verify audit.jsonl --cluster cluster.toml --anchor anchor.json
        # an export of GET /v1/audit, against GET /v1/audit/checkpoints of a peer

More client commands (appliance/cli_admin.py, cli_requests.py, cli_client.py)::

    appliance key refresh KEY | reshare KEY --threshold T --nodes a,b,c   # [--no-wait]
    appliance key derive KEY m/0/1 | address KEY --kind p2wpkh|eth [--path m/0/1]
    appliance key disable|enable|delete KEY | versions KEY
    appliance sign --key-id KEY --psbt FILE [--network N] | --eth-tx FILE | --eip712 FILE
    appliance requests list [--status S ...] [--key-id K] [--initiator U] [--created-after T]
                            [--created-before T] [--limit N] [--cursor C | --all]
    appliance requests show ID | cancel ID;  appliance reject ID [--reason TEXT]
    appliance operation show|approve|wait OP;  appliance signature ID
    appliance policy show | update FILE --sign USER:KEY_PEM ...
    appliance quarantine list | clear NODE;  appliance health | ready

The cluster policy (who requests, who approves, limits) is read from cluster.toml or from
the file node.toml names (``policy = "policy.toml"``); see appliance/policy/.

    appliance demo [--nodes 3] [--threshold 2] [--json] [--keep DIR]

Output: JSON (lists as a table); --json: one line of JSON (scripts); --field NAME: one field.
Errors: one line on stderr, ``error: CODE: MESSAGE`` (with --json also
{"error": {"code", "message"}} on stdout; --debug adds the traceback). Exit codes: 0 ok,
1 failed (HSM, backup, a failed operation, unexpected), 2 usage (arguments, configuration,
policy, missing or unreadable input file, bad hex/JSON, a node's 400/413/422), 3 refused by the policy or
authentication, or the node's TLS certificate rejected (server_certificate_rejected),
4 not found, 5 timeout (a node's 408/504 too), 6 unreachable, 7 verification failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import tomllib
from pathlib import Path

from appliance import cli_admin, cli_client, cli_demo, cli_errors, cli_requests, cli_verify, init_hsm
from appliance.cli_client import add_client_arguments, add_json_argument, client_from_args, emit
from appliance.cli_errors import UsageError
from appliance.cli_progress import progress_on_stderr
from appliance.config import ROLE_NAME, ROLES, ConfigError, dumps_toml, load_toml, write_toml
from appliance.logs import configure as configure_logs
from appliance.fsmodes import make_private_dir, private_umask, set_private_umask, write_private_file
from appliance.policy import DEFAULT_SCHEME, SCHEMES, Policy, PolicyError
from appliance.tls import write_private
from appliance.tls_setup import (OperatorTLS, add_tls_arguments, node_tls_material, operator_tls_of,
                                 stage_certificate)


# ---------------------------------------------------------------------------------------
# init


def init_node(directory: Path, node_id: str, *, hsm: init_hsm.HsmSetup, listen: str = "127.0.0.1:8443",
              url: str | None = None, hosts: list[str] | None = None, paillier_bits: int = 3072,
              extra: dict | None = None, tls: OperatorTLS | None = None) -> dict:
    """Create a node's state in ``directory``: the node's keys on its token (``hsm``: an
    existing token of any PKCS#11 module, or a new SoftHSM2 token, :mod:`appliance.init_hsm`),
    TLS certificate, ``node.toml`` and ``node-info.json``; returns the node info (public).
    ``tls``: the operator's certificate, key and chain instead of a self-signed certificate
    (checked first: a certificate the node cannot use changes nothing).
    Everything it creates is the node user's only (directories 0700, files 0600), whatever
    the caller's umask."""
    with private_umask():
        return _init_node(directory, node_id, hsm=hsm, listen=listen, url=url, hosts=hosts,
                          paillier_bits=paillier_bits, extra=extra, tls=tls)


def _init_node(directory: Path, node_id: str, *, hsm: init_hsm.HsmSetup, listen: str, url: str | None,
               hosts: list[str] | None, paillier_bits: int, extra: dict | None,
               tls: OperatorTLS | None = None) -> dict:
    directory = make_private_dir(Path(directory).resolve())
    if (directory / "node.toml").exists():
        raise ConfigError(f"{directory}/node.toml exists already; refusing to overwrite a node")
    host, _, port = listen.rpartition(":")
    if url is None:
        url = f"https://{host if host not in ('', '0.0.0.0') else '127.0.0.1'}:{port}"
    cert_pem, key_pem, served_pem = node_tls_material(node_id, url, hosts, tls)  # checked before anything is made
    token = init_hsm.prepare(hsm, directory, node_id)
    identity, transport = token.identity, token.transport
    make_private_dir(directory / "tls")
    write_private_file(directory / "tls" / "node.crt", served_pem)
    write_private(directory / "tls" / "node.key", key_pem)
    node_toml: dict = {
        "cluster": "cluster.toml",
        "node": {"id": node_id, "listen": listen, "db": "node.db", "paillier_bits": paillier_bits,
                 "round_timeout_s": 30.0, "job_timeout_s": 300.0, "workers": 2, "presign_pool": 2},
        "metrics": {"auth": "bearer", "bearer_token_file": "metrics.token"},
        "tls": {"cert": "tls/node.crt", "key": "tls/node.key"},
        "hsm": token.section,
        "primes": {"pool_target": 2},
    }
    for section, values in (extra or {}).items():
        node_toml.setdefault(section, {}).update(values)
    write_private_file(directory / "metrics.token", secrets.token_urlsafe(32) + "\n")  # the scraper's
    write_toml(directory / "node.toml", node_toml)
    info = {"id": node_id, "url": url, "tls_cert": cert_pem.decode(), "identity_key": identity.hex(),
            "transport_key": transport.hex()}
    write_private_file(directory / "node-info.json", json.dumps(info, indent=2) + "\n")
    return dict(info, sealing=token.sealing)


def cluster_mapping(cluster_id: str, infos: list[dict], users: list[dict]) -> dict:
    return {
        "cluster": {"id": cluster_id},
        "nodes": [dict(info, index=i) for i, info in enumerate(infos)],
        "users": users,
    }


POLICY_TABLES = ("policy", "signing", "key_changes", "policy_change")


def cluster_toml_text(cluster: dict, policy_file: Path | None) -> str:
    """cluster.toml: the cluster, its nodes and users, then the policy file's rules verbatim
    (comments kept; only POLICY_TABLES), checked as the nodes will read them."""
    text = dumps_toml(cluster)
    if policy_file is None:
        return text
    tables = load_toml(policy_file)
    extra = sorted(set(tables) - set(POLICY_TABLES))
    if extra:
        raise ConfigError(f"{policy_file}: only {', '.join(POLICY_TABLES)} tables belong in a policy "
                          f"file (users come from --user), not {', '.join(extra)}")
    text += f"\n# the policy's rules, from {policy_file.name}\n" + policy_file.read_text()
    try:
        Policy.from_mapping(tomllib.loads(text))
    except PolicyError as exc:
        raise ConfigError(f"{policy_file}: {exc}") from None
    return text


# ---------------------------------------------------------------------------------------
# client helpers


async def _cmd_cluster(args) -> int:
    """``cluster tls-certs`` (the pins in force) and ``cluster rotate-cert`` (a signed update)."""
    from appliance.policy import load_private_key

    async with client_from_args(args) as c:
        if args.cluster_cmd == "tls-certs":
            emit(args, await c.tls_certs())
            return 0
        update = await c.cert_update(args.node_id, args.cert.read_text())
        for spec in args.sign:
            uid, _, path = spec.partition(":")
            if not (uid and path):
                raise UsageError("--sign takes USER:PRIVATE_KEY_PEM_FILE")
            update = update.signed_by(uid, load_private_key(Path(path).read_bytes()))
        emit(args, await c.rotate_tls_cert(update.to_json()))
    return 0


def _cmd_key_import(args) -> int:
    """Offline: split a private key and encrypt each share to its node's transport key."""
    from appliance.config import ClusterConfig, load_toml
    from appliance.key_import import ECDSA, ImportBundleError, build_bundle, parse_frost_secret, parse_private_key

    d: int | bytes = 0
    try:
        text = args.private_key.read_text()
        d = parse_private_key(text) if args.scheme == ECDSA else parse_frost_secret(args.scheme, text)
        del text
        cluster = ClusterConfig.from_mapping(load_toml(args.cluster))
        nodes = args.nodes.split(",") if args.nodes else None
        try:
            chain = bytes.fromhex(args.chain_code) if args.chain_code else None
        except ValueError:
            raise ImportBundleError("--chain-code must be hex") from None
        bundle = build_bundle(d, cluster, args.threshold, nodes, chain_code=chain, scheme=args.scheme)
    finally:
        d = 0  # noqa: F841 - drop our reference to the key
    if args.out.exists():
        raise UsageError(f"{args.out} exists")
    args.out.write_text(json.dumps(bundle.to_json(), indent=1) + "\n")
    shown = {} if not bundle.is_frost else \
        {"scheme": bundle.scheme, "shown_public_key": bundle.shown_public_key.hex()}
    print(json.dumps({"bundle": str(args.out), "public_key": bundle.public_key.hex(), **shown,
                      "threshold": bundle.threshold, "nodes": bundle.node_ids,
                      "next": "appliance key submit-import --bundle FILE --refresh (a refresh right after "
                              "import is recommended: this machine saw the whole key)"}))
    return 0


def _cmd_recovery_key(args) -> int:
    from appliance.backup import create_recovery_key

    pw = os.environ.get(args.passphrase_env, "").encode() if args.passphrase_env else None
    pub = create_recovery_key(args.out, passphrase=pw or None)
    print(json.dumps({"private_key": str(args.out), "public_key": str(pub)}))
    return 0


def _cmd_backup(args) -> int:
    from appliance.backup import export_backup, restore_backup

    if args.backup_cmd == "export":
        header = export_backup(args.config, args.recovery_pub.read_bytes(), args.out)
        print(json.dumps({"backup": str(args.out), **header}))
    else:
        pw = os.environ.get(args.passphrase_env, "").encode() if args.passphrase_env else None
        print(json.dumps(restore_backup(args.config, args.recovery_key.read_bytes(), args.in_file,
                                        passphrase=pw or None)))
    return 0


async def _cmd_key(args) -> int:
    if args.key_cmd == "import":
        return _cmd_key_import(args)
    async with client_from_args(args) as c:
        if args.key_cmd == "submit-import":
            bundle = json.loads(args.bundle.read_text())
            emit(args, await c.import_key(bundle, refresh=args.refresh))
            return 0
        if args.key_cmd == "create":
            nodes = args.nodes.split(",") if args.nodes else None
            if args.no_wait:
                emit(args, await c.start_key_creation(args.threshold, nodes, scheme=args.scheme,
                                                      paillier_bits=args.paillier_bits))
            else:
                with progress_on_stderr() as show:
                    key = await c.create_key(args.threshold, nodes, scheme=args.scheme,
                                             paillier_bits=args.paillier_bits, on_progress=show)
                emit(args, key)
        elif args.key_cmd == "list":
            emit(args, await c.list_keys(), cli_admin.KEY_COLUMNS)
        elif args.key_cmd in ("disable", "enable", "delete"):
            if args.no_wait:
                emit(args, await c.request_lifecycle(args.key_cmd, args.key_id))
            else:
                with progress_on_stderr() as show:
                    done = await c._lifecycle(args.key_cmd, args.key_id, args.timeout, on_progress=show)
                emit(args, done)
        elif args.key_cmd == "versions":
            emit(args, await c.key_versions(args.key_id))
        else:
            emit(args, await c.get_key(args.key_id))
    return 0


#: ``appliance sign --message-format`` -> the payload type the node hashes the text for
MESSAGE_FORMATS = {"sha256": "message", "eip191": "eip191"}


async def _cmd_sign(args) -> int:
    payload = cli_requests.payload_of(args)  # --psbt, --eth-tx, --eip712
    text = args.message
    if args.message_file is not None:
        try:  # the file's exact bytes (no newline translation), which must be UTF-8 text
            text = args.message_file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"--message-file {args.message_file}: not UTF-8 text ({exc.reason})") from None
    if payload is not None:
        what = {"payload": payload[0], "payload_type": payload[1], "network": args.network}
    elif text is not None:  # the node reads the text (approvers see it) and hashes it itself
        what = {"payload": text, "payload_type": MESSAGE_FORMATS[args.message_format]}
    else:
        what = {"digest": bytes.fromhex(args.digest)}
    async with client_from_args(args) as c:
        signers = args.signers.split(",") if args.signers else None
        req = await c.request_signature(args.key_id, signers=signers,
                                        derivation_path=args.derivation_path, **what)
        if req["status"] == "pending":
            print(f"request {req['request_id']} waits for approval "
                  f"(appliance approve {req['request_id']} as an approver)", file=sys.stderr)
        if args.no_wait:
            emit(args, req)
            return 0
        emit(args, await c.wait_signature(req["request_id"], timeout=args.timeout))
    return 0


async def _cmd_approve(args) -> int:
    async with client_from_args(args) as c:
        if args.show:
            emit(args, await c.get_sign_request(args.request_id))
            return 0
        if args.reject:
            emit(args, await c.reject(args.request_id))
        else:
            emit(args, await c.approve(args.request_id))
    return 0


# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="appliance", description="Threshold-signing appliance node",
                                 epilog=__doc__.split("\n", 2)[2].replace("::", ":").replace("``", "`"),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="log at INFO; an error's traceback too")
    ap.add_argument("--debug", action="store_true", help="an error's traceback after its one line")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("init", help="set up a node: HSM token and keys, TLS certificate, node.toml")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--node-id", required=True)
    p.add_argument("--listen", default="127.0.0.1:8443")
    p.add_argument("--url", help="URL the peers and clients use (default from --listen)")
    p.add_argument("--host", action="append", default=[], help="extra certificate host name/IP")
    p.add_argument("--paillier-bits", type=int, default=3072, choices=(2048, 3072))
    add_tls_arguments(p)
    init_hsm.add_arguments(p)

    p = sub.add_parser("user-key", help="generate a user key pair (Ed25519 or P-256)")
    p.add_argument("--out", required=True, type=Path, help="private key PEM (public key: *.pub.pem)")
    p.add_argument("--kind", default="ed25519", choices=("ed25519", "p256"))

    p = sub.add_parser("cluster-config", help="write cluster.toml from node-info.json files and users")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--id", default="appliance")
    p.add_argument("--node-info", nargs="+", required=True, type=Path)
    p.add_argument("--user", action="append", default=[], help="ID:ROLE[,ROLE]:PUBLIC_KEY_PEM_FILE")
    p.add_argument("--policy", type=Path, help="a TOML file with the policy's rules ([signing], "
                   "[key_changes], [policy_change], [policy]), checked and written into cluster.toml")

    p = sub.add_parser("serve", help="run a node")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--ready-file", help=argparse.SUPPRESS)

    p = sub.add_parser("demo", help="a local cluster: DKG, a signature, verification (progress on stderr)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--threshold", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", metavar="DIR")
    p.add_argument("--paillier-bits", type=int, default=3072, choices=(2048, 3072))

    client_args = add_client_arguments

    p = sub.add_parser("key", help="keys: create, list, show, disable, enable, delete, versions")
    ks = p.add_subparsers(dest="key_cmd", required=True)
    q = ks.add_parser("create", help="a new key (DKG); waits for it, showing its progress on stderr (a bar on "
                      "a terminal, plain lines otherwise: primes 2/4, aux round 1/3, ...)")
    client_args(q)
    q.add_argument("--threshold", type=int, required=True)
    q.add_argument("--nodes", help="comma-separated node ids (default all)")
    q.add_argument("--paillier-bits", type=int, choices=(2048, 3072))
    q.add_argument("--scheme", choices=SCHEMES, default=DEFAULT_SCHEME,
                   help="ecdsa-secp256k1 (CGGMP, default), schnorr-bip340 (Taproot) or ed25519 (FROST)")
    q.add_argument("--no-wait", action="store_true",
                   help="print the operation and return (it may wait for the admin quorum: "
                        "appliance operation approve / wait)")
    q = ks.add_parser("list")
    client_args(q)
    q = ks.add_parser("show")
    client_args(q)
    q.add_argument("key_id")
    for action, what in (("disable", "every holder refuses to sign with the key (409 key_disabled) until enabled"),
                         ("enable", "a disabled key signs again"),
                         ("delete", "every holder destroys the key's sealed shares and presignatures "
                          "(two phases); the key stays listed as deleted")):
        q = ks.add_parser(action, help=f"{what} (a key change under the key-change quorum)")
        client_args(q)
        q.add_argument("key_id")
        q.add_argument("--no-wait", action="store_true",
                       help="print the operation and return (it may wait for the admin quorum: "
                            "appliance operation approve / wait)")
        q.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the operation")
    q = ks.add_parser("versions", help="the key's epochs with their dates (created, committed, superseded, "
                      "destroyed)")
    client_args(q)
    q.add_argument("key_id")
    q = ks.add_parser("import", help="OFFLINE: split a private key into encrypted shares (a bundle)")
    q.add_argument("--private-key", required=True, type=Path,
                   help="file with the private key, hex (schnorr-bip340: the BIP340 secret key; "
                        "ed25519: the RFC 8032 32-byte seed)")
    q.add_argument("--scheme", default="ecdsa-secp256k1", choices=("ecdsa-secp256k1", "schnorr-bip340", "ed25519"),
                   help="the key's scheme (default ecdsa-secp256k1)")
    q.add_argument("--cluster", required=True, type=Path, help="cluster.toml (the nodes' transport keys)")
    q.add_argument("--threshold", type=int, required=True)
    q.add_argument("--nodes", help="comma-separated node ids (default all)")
    q.add_argument("--chain-code", help="BIP32 chain code, hex (default random; none for ed25519)")
    q.add_argument("--out", required=True, type=Path)
    q = ks.add_parser("submit-import", help="hand an import bundle to the nodes (admin)")
    client_args(q)
    q.add_argument("--bundle", required=True, type=Path)
    q.add_argument("--refresh", action="store_true", help="refresh right after (recommended)")
    cli_admin.add_key_commands(ks)

    p = sub.add_parser("recovery-key", help="a node's disaster-recovery key pair (make it off the node)")
    rs = p.add_subparsers(dest="recovery_cmd", required=True)
    q = rs.add_parser("create")
    q.add_argument("--out", required=True, type=Path, help="private key PEM (public key: *.pub.pem)")
    q.add_argument("--passphrase-env", help="environment variable with a passphrase for the PEM")

    p = sub.add_parser("backup", help="a node's secret state, encrypted to its recovery key")
    bs = p.add_subparsers(dest="backup_cmd", required=True)
    q = bs.add_parser("export")
    q.add_argument("--config", required=True, type=Path)
    q.add_argument("--recovery-pub", required=True, type=Path)
    q.add_argument("--out", required=True, type=Path)
    q = bs.add_parser("restore", help="onto this node's (fresh) token; the node must be stopped")
    q.add_argument("--config", required=True, type=Path)
    q.add_argument("--recovery-key", required=True, type=Path)
    q.add_argument("--in", dest="in_file", required=True, type=Path)
    q.add_argument("--passphrase-env", help="environment variable with the recovery key's passphrase")

    p = sub.add_parser("sign", help="request a signature and wait for it")
    client_args(p)
    p.add_argument("--key-id", required=True)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--digest", help="32-byte digest, hex (blind: the policy must allow raw digests)")
    what.add_argument("--message", help="a text (1 to 4096 bytes of UTF-8; no control characters but tab "
                      "and line breaks) that the nodes hash themselves and show to approvers; the "
                      "policy's payload_types must name the format's type (message or eip191)")
    what.add_argument("--message-file", type=Path, help="the same, read from a file: its exact bytes, "
                      "which must be UTF-8 text (binary data: sign its digest)")
    p.add_argument("--message-format", choices=sorted(MESSAGE_FORMATS), default="sha256",
                   help="sha256: an ECDSA signature of SHA-256(text) (payload type message); eip191: "
                   "Ethereum personal_sign, 65-byte r||s||v and the address (payload type eip191)")
    p.add_argument("--signers", help="comma-separated node ids")
    p.add_argument("--derivation-path", help="BIP32 non-hardened path, e.g. m/0/1")
    cli_requests.add_sign_payload_arguments(p, what)
    p.add_argument("--no-wait", action="store_true", help="print the request and return")
    p.add_argument("--timeout", type=float, default=300)

    p = sub.add_parser("approve", help="approve (or --reject) a pending sign request")
    client_args(p)
    p.add_argument("request_id")
    p.add_argument("--reject", action="store_true")
    p.add_argument("--show", action="store_true", help="only show the request (what the node decoded)")

    p = sub.add_parser("cluster", help="the cluster's pinned TLS certificates: show, rotate")
    cs = p.add_subparsers(dest="cluster_cmd", required=True)
    q = cs.add_parser("tls-certs", help="the pinned certificate of every node, and the update version")
    client_args(q)
    q = cs.add_parser("rotate-cert", help="replace a node's pinned certificate (staged on that node first "
                      "with `appliance tls stage`): an update signed by the policy_change quorum")
    client_args(q)
    q.add_argument("--node-id", required=True)
    q.add_argument("--cert", required=True, type=Path, help="the new certificate (what `tls stage` printed)")
    q.add_argument("--sign", action="append", default=[], metavar="USER:KEY_PEM",
                   help="an admin's signature (repeat up to the policy_change quorum)")

    p = sub.add_parser("tls", help="the node's TLS certificate")
    ts = p.add_subparsers(dest="tls_cmd", required=True)
    q = ts.add_parser("stage", help="on the node: make (or bring, --tls-cert/--tls-key) its next certificate "
                      "and keep it until a signed rotation installs it")
    q.add_argument("--config", required=True, type=Path)
    q.add_argument("--host", action="append", default=[], help="extra certificate host name/IP")
    add_tls_arguments(q)

    p = sub.add_parser("verify", help="verify a signature locally (libsecp256k1 and OpenSSL; for Schnorr "
                       "schemes libsecp256k1 and our BIP340 verifier, or OpenSSL and libsodium)")
    p.add_argument("--scheme", choices=("ecdsa-secp256k1", "schnorr-bip340", "ed25519"), default="ecdsa-secp256k1")
    p.add_argument("--public-key", required=True, help="SEC1 hex (compressed or not); 32 bytes hex for a "
                   "Schnorr scheme (x-only for schnorr-bip340)")
    p.add_argument("--digest", help="32 bytes hex (or --message)")
    p.add_argument("--message", type=Path, help="a file whose SHA-256 is the digest (or --digest); for "
                   "ed25519 its bytes are the message")
    p.add_argument("--signature", help="DER, hex (or --rsv); 64 bytes hex for a Schnorr scheme")
    p.add_argument("--rsv", help="65 bytes hex: r || s || v, as a signature's rsv (or --signature)")

    p = sub.add_parser("audit", help="audit log tools")
    a = p.add_subparsers(dest="audit_cmd", required=True)
    from appliance.audit.command import add_verify_arguments

    add_verify_arguments(a.add_parser(
        "verify", help="check an export (GET /v1/audit): the hash chain, checkpoint signatures and "
        "co-signatures, and that it reaches the newest checkpoint the peers witnessed (--anchor "
        "FILE or --anchor-url URL); names the first entry missing, altered or out of order, or "
        "the cut"))
    cli_client.add_commands(sub, a)
    cli_admin.add_commands(sub)
    cli_requests.add_commands(sub)
    _json_everywhere(ap)
    return ap


def _json_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--json`` on every command that lacks it (its output is one line of JSON already; the
    flag also prints an error as JSON on stdout)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                if child._subparsers is None and "--json" not in child._option_string_actions:
                    add_json_argument(child)
                _json_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a failure is one line on stderr and an exit code (appliance/cli_errors.py)."""
    set_private_umask()  # node state, keys, configs and logs: for this user only
    args = build_parser().parse_args(argv)  # a usage error: argparse's message, exit 2
    level = logging.INFO if args.verbose else logging.WARNING
    if args.cmd == "serve":  # a node: JSON lines (appliance/logs.py)
        configure_logs(level=level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # a message some library gave as its exit: one line too
        if isinstance(exc.code, str):
            return cli_errors.report(UsageError(exc.code.removeprefix("error: ")), args)
        raise
    except Exception as exc:
        return cli_errors.report(exc, args)


def _run(args) -> int:
    if getattr(args, "func", None) is not None:  # the commands of cli_admin and cli_requests
        return asyncio.run(args.func(args))
    if args.cmd == "init":
        setup = init_hsm.setup_from_args(args)
        info = init_node(args.dir, args.node_id, hsm=setup, listen=args.listen, url=args.url,
                         hosts=args.host, paillier_bits=args.paillier_bits, tls=operator_tls_of(args))
        print(json.dumps({"node_id": info["id"], "url": info["url"], "dir": str(args.dir.resolve()),
                          "node_info": str((args.dir / "node-info.json").resolve()),
                          "sealing": info["sealing"]}))
        return 0
    if args.cmd == "user-key":
        from api.auth import generate_user_key

        priv, pub = generate_user_key(args.kind)
        write_private(args.out, priv)
        pub_path = args.out.with_name(args.out.name.removesuffix(".pem") + ".pub.pem")
        pub_path.write_bytes(pub)
        print(json.dumps({"private_key": str(args.out), "public_key": str(pub_path)}))
        return 0
    if args.cmd == "cluster-config":
        infos = [json.loads(p.read_text()) for p in args.node_info]
        users = []
        for spec in args.user:
            uid, roles, path = spec.split(":", 2)
            rl = [r for r in roles.split(",") if r]
            if any(ROLE_NAME.match(r) is None for r in rl):
                raise UsageError(f"role names are [a-z][a-z0-9_-]* (built in: {', '.join(ROLES)})")
            users.append({"id": uid, "roles": rl, "public_key": Path(path).read_text()})
        text = cluster_toml_text(cluster_mapping(args.id, infos, users), args.policy)
        write_private_file(args.out, text)
        print(json.dumps({"cluster": str(args.out), "nodes": [i["id"] for i in infos]}))
        return 0
    if args.cmd == "serve":
        from api.app import serve

        try:
            from appliance.hardening import disable_core_dumps

            disable_core_dumps()
        except Exception as exc:  # pragma: no cover
            print(f"warning: could not disable core dumps: {exc}", file=sys.stderr)
        asyncio.run(serve(str(args.config), ready_file=args.ready_file))
        return 0
    if args.cmd == "demo":
        return asyncio.run(cli_demo.run_demo(args))
    if args.cmd == "key":
        return asyncio.run(_cmd_key(args))
    if args.cmd == "recovery-key":
        return _cmd_recovery_key(args)
    if args.cmd == "backup":
        return _cmd_backup(args)
    if args.cmd == "sign":
        return asyncio.run(_cmd_sign(args))
    if args.cmd == "verify":
        return cli_verify.cmd_verify(args)
    if args.cmd == "cluster":
        return asyncio.run(_cmd_cluster(args))
    if args.cmd == "tls":
        from appliance.config import load_node_config

        print(json.dumps(stage_certificate(load_node_config(args.config), operator_tls_of(args), args.host)))
        return 0
    if args.cmd == "approve":
        return asyncio.run(_cmd_approve(args))
    if args.cmd in ("operation", "signature") or (args.cmd == "audit" and args.audit_cmd != "verify"):
        return asyncio.run(cli_client.run(args))
    if args.cmd == "audit":
        from appliance.audit.command import run_verify_args

        return run_verify_args(args)
    raise UsageError(f"no command {args.cmd!r}")


if __name__ == "__main__":
    sys.exit(main())
