"""The node's HTTPS API (aiohttp): client routes, peer routes, OpenAPI.

One table, :data:`ROUTES`, registers every route *and* generates ``/openapi.json``, so the
document and what is served cannot drift apart.

* Open: ``/healthz``, ``/readyz``. ``/metrics``: the scraper's bearer token or pinned client
  certificate (``[metrics]``, :mod:`api.metrics_auth`) or a signed user request; open only
  with ``[metrics] auth = "none"``.
* Client routes: RFC 9421 signed requests (:mod:`api.auth`) by a configured user, and the
  role the route names.
* Peer routes (``/v1/peer/``): only over TLS with a client certificate pinned in the cluster
  configuration (the TLS handshake checks it against the pins, the route maps its SHA-256
  fingerprint to the node).

Errors are ``{"error": {"code", "message", "culprits"?, "missing_nodes"?}}`` with 400 (bad
input), 401 (not authenticated), 403 (forbidden), 404 (unknown), 409 (wrong state), 501 (not
yet implemented), 502 (protocol abort, ``culprits``), 503 (quorum unreachable,
``missing_nodes``). A refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from api.auth import SIGNATURE_REJECTED, RequestVerifier
from api.edge import BodyTimeout, GuardedSite, edge_middleware, runner_for
from api.errors import DOMAIN_ERRORS, error_response, refusal, with_public_errors
from api.errors import json_response as _json
from api.signed_request import Refusal, authenticate, node_verifier
from api.metrics_auth import MetricsAuth
from api.tls import fingerprint_der, fingerprint_pem
from appliance import __version__
from appliance.audit_anchor import anchor_document
from appliance.bounded import TooDeep, check_depth, loads_json
from appliance.errors import ServiceError
from appliance.fsmodes import tighten_tree
from appliance.ids import GRAMMARS, check_id
from appliance.node import Node

log = logging.getLogger("appliance.api")

MAX_BODY = 2 << 20  # a PSBT up to the decoder's limit (1 MB, base64) fits; larger ones get a 400
MAX_PEER_BODY = 16 << 20
NODE_KEY = web.AppKey("node", Node)
VERIFIER_KEY = web.AppKey("verifier", RequestVerifier)
PEERS_KEY = web.AppKey("peers", dict)
METRICS_AUTH_KEY = web.AppKey("metrics_auth", MetricsAuth)

ANY_ROLE: tuple[str, ...] = ()  # any user of the policy
POLICY_STATE_KEY = web.AppKey("policy_state", dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    auth: str  # "open" | "user" | "peer" | "metrics"
    roles: tuple[str, ...] = ()
    body: dict | None = None  # JSON schema of the request body
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    responses: tuple[int, ...] = (200,)
    content_type: str = "application/json"


# ---------------------------------------------------------------------------------------
# helpers


async def _body_json(request: web.Request) -> dict:
    raw = request.get("raw_body")
    if raw is None:
        raw = await request.read()
    if not raw:
        return {}
    try:
        data = loads_json(raw)  # depth-bounded before json recurses
    except TooDeep:
        raise  # errors_middleware: 400 too_deep
    except ValueError:
        raise ServiceError("bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ServiceError("bad_json", "the body must be a JSON object")
    return data


def _wait_param(request: web.Request) -> float:
    w = request.query.get("wait")
    if w is None:
        return 0.0
    try:
        v = float(w)
    except ValueError:
        raise ServiceError("bad_wait", "wait must be a number of seconds") from None
    if not 0 <= v <= 60:
        raise ServiceError("bad_wait", "wait must be between 0 and 60 seconds")
    return v


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _user(request: web.Request):
    return request["user"]


def _peer_index(request: web.Request) -> int:
    return request["peer_index"]


# ---------------------------------------------------------------------------------------
# open routes


async def healthz(request: web.Request) -> web.Response:
    node = _node(request)
    return _json({"status": "ok", "node_id": node.me.id, "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    node = _node(request)
    hsm_ok = node.hsm is not None and await _hsm_health(node)
    audit_ok = node.audit is not None and node.audit_ok
    ready = node.ready and hsm_ok and audit_ok
    body = {"ready": ready, "node_id": node.me.id, "hsm": hsm_ok, "audit": audit_ok,
            "primes": node.prime_counts() if node.store else {}}
    if not ready:
        body["reason"] = node.fault or ("the HSM is not answering" if not hsm_ok else "starting")
    return _json(body, 200 if ready else 503)


async def _hsm_health(node: Node) -> bool:
    import asyncio

    try:
        return await asyncio.get_running_loop().run_in_executor(None, node.hsm.health)
    except Exception:
        return False


async def metrics(request: web.Request) -> web.Response:
    from appliance.metrics import CONTENT_TYPE

    node = _node(request)
    if node.store is not None:
        try:  # the prime pool gauge, as of now
            pc = node.prime_counts()
            for kind in ("safe", "blum"):
                node.metrics.set_prime_pool(kind, node.config.paillier_bits // 2, int(pc.get(kind, 0)))
        except Exception:  # noqa: BLE001 - a gauge never fails the scrape
            pass
    return web.Response(body=node.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document(_node(request)))


# ---------------------------------------------------------------------------------------
# client routes


async def create_key(request: web.Request) -> web.Response:
    body = await _body_json(request)
    op = await _node(request).create_key(_user(request), body.get("threshold"), body.get("nodes"),
                                         body.get("paillier_bits"), request=body.get("request"))
    return _json(with_public_errors(op), 202)


async def list_keys(request: web.Request) -> web.Response:
    node = _node(request)
    return _json({"keys": [node.key_view(r) for r in node.store.list_keys("active")]})


async def get_key(request: web.Request) -> web.Response:
    node = _node(request)
    row = node.active_key(request.match_info["key_id"])
    view = node.key_view(row)
    view["presignatures"] = node.presign_counts(row["key_id"])
    return _json(view)


async def get_operation(request: web.Request) -> web.Response:
    op = await _node(request).get_operation(request.match_info["op_id"], _wait_param(request))
    return _json(with_public_errors(op))


async def create_sign_request(request: web.Request) -> web.Response:
    body = await _body_json(request)
    req = await _node(request).create_sign_request(
        _user(request), request.match_info["key_id"], body.get("digest"), body.get("derivation_path"),
        body.get("signers"), body.get("payload"), body.get("payload_type"),
        request=body.get("request"), network=body.get("network"))
    return _json(with_public_errors(req), 202)


async def list_sign_requests(request: web.Request) -> web.Response:
    return _json(with_public_errors({"sign_requests": _node(request).pending_sign_requests()}))


async def get_sign_request(request: web.Request) -> web.Response:
    req = await _node(request).get_sign_request(request.match_info["request_id"], _wait_param(request))
    return _json(with_public_errors(req))


async def approve(request: web.Request) -> web.Response:
    body = await _body_json(request)
    view = await _node(request).decide_sign_request(_user(request), request.match_info["request_id"], "approve", body)
    return _json(with_public_errors(view))


async def reject(request: web.Request) -> web.Response:
    body = await _body_json(request)
    view = await _node(request).decide_sign_request(_user(request), request.match_info["request_id"], "reject", body)
    return _json(with_public_errors(view))


async def cancel(request: web.Request) -> web.Response:
    body = await _body_json(request)
    view = await _node(request).decide_sign_request(_user(request), request.match_info["request_id"], "cancel", body)
    return _json(with_public_errors(view))


async def approve_operation(request: web.Request) -> web.Response:
    body = await _body_json(request)
    view = await _node(request).decide_operation(_user(request), request.match_info["op_id"], body)
    return _json(with_public_errors(view))


async def get_policy(request: web.Request) -> web.Response:
    return _json(_node(request).policy_view())


async def post_policy(request: web.Request) -> web.Response:
    body = await _body_json(request)
    return _json(await _node(request).update_policy(_user(request), body))


async def verify(request: web.Request) -> web.Response:
    return _json(_node(request).verify_signature(await _body_json(request)))


async def derive(request: web.Request) -> web.Response:
    return _json(_node(request).derive_key(request.match_info["key_id"], request.query.get("path")))


async def address(request: web.Request) -> web.Response:
    q = request.query
    return _json(_node(request).key_address(request.match_info["key_id"], q.get("kind"), q.get("path"),
                                            q.get("network")))


async def refresh(request: web.Request) -> web.Response:
    body = await _body_json(request)
    op = await _node(request).refresh_key(_user(request), request.match_info["key_id"],
                                          request=body.get("request"))
    return _json(with_public_errors(op), 202)


async def reshare(request: web.Request) -> web.Response:
    body = await _body_json(request)
    op = await _node(request).reshare_key(_user(request), request.match_info["key_id"], body.get("threshold"),
                                          body.get("nodes"), request=body.get("request"))
    return _json(with_public_errors(op), 202)


async def audit(request: web.Request) -> web.Response:
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        raise ServiceError("bad_since", "since must be an integer") from None
    if not 0 <= since < 1 << 63:  # SQLite integers are 64-bit (found by schemathesis)
        raise ServiceError("bad_since", "since must be between 0 and 2^63 - 1")
    import asyncio

    node = _node(request)
    if node.audit is None:
        raise ServiceError("audit_unavailable", "the audit log is not open")
    # JSON Lines: each entry's exact stored bytes and its hash, checkpoints after the entry they
    # cover (what `appliance audit verify FILE` checks)
    data = await asyncio.get_running_loop().run_in_executor(None, node.audit.export_bytes, since)
    return web.Response(body=data, headers={"Content-Type": "application/jsonl"})


async def audit_checkpoints(request: web.Request) -> web.Response:
    node = _node(request)
    if node.audit is None:
        raise ServiceError("audit_unavailable", "the audit log is not open")
    ids = [n.id for n in node.cluster.nodes]
    doc = await asyncio.get_running_loop().run_in_executor(None, anchor_document, node.audit, ids)
    return _json(doc)


async def list_quarantine(request: web.Request) -> web.Response:
    return _json(_node(request).quarantine_view())


async def clear_quarantine(request: web.Request) -> web.Response:
    await _body_json(request)
    return _json(_node(request).clear_quarantine(_user(request), request.match_info["node_id"]))


# ---------------------------------------------------------------------------------------
# peer routes


async def peer_health(request: web.Request) -> web.Response:
    node = _node(request)
    # a node whose HSM went away is not offered as a signer (it could not sign anyway)
    ready = node.ready and await _hsm_health(node)
    return _json({"node_id": node.me.id, "index": node.index, "ready": ready})


async def peer_open_job(request: web.Request) -> web.Response:
    spec = await _body_json(request)
    await _node(request).accept_job(spec, _peer_index(request))
    return _json({"accepted": True}, 202)


async def peer_messages(request: web.Request) -> web.Response:
    body = await request.read()
    check_depth(body)  # TooDeep: 400 too_deep before anything parses the CBOR
    dropped = await _node(request).receive_frames(request.match_info["job_id"], _peer_index(request), body)
    return _json({"dropped": dropped}, 202)


async def peer_report(request: web.Request) -> web.Response:
    body = await _body_json(request)
    _node(request).take_report(request.match_info["job_id"], _peer_index(request), body)
    return _json({"ok": True})


async def peer_commit(request: web.Request) -> web.Response:
    body = await _body_json(request)
    out = _node(request).commit_job(request.match_info["job_id"], _peer_index(request), body)
    return _json({"ok": True, **out})


async def peer_finalize(request: web.Request) -> web.Response:
    body = await _body_json(request)
    out = _node(request).finalize_job(request.match_info["job_id"], _peer_index(request), body)
    return _json({"ok": True, **out})


async def peer_decision(request: web.Request) -> web.Response:
    return _json(_node(request).job_decision(request.match_info["job_id"], _peer_index(request)))


async def import_key(request: web.Request) -> web.Response:
    body = await _body_json(request)
    op = await _node(request).import_key(_user(request), body, request=body.get("request"))
    return _json(with_public_errors(op), 202)


async def peer_key_state(request: web.Request) -> web.Response:
    return _json(await _node(request).peer_key_state(request.match_info["key_id"]))


async def peer_policy(request: web.Request) -> web.Response:
    body = await _body_json(request)
    return _json(await _node(request).update_policy(None, body, from_peer=_peer_index(request)))


async def peer_policy_chain(request: web.Request) -> web.Response:
    return _json({"updates": _node(request).policy_chain()})


async def peer_sign_request(request: web.Request) -> web.Response:
    view = await _node(request).peer_sign_request(request.match_info["request_id"], _wait_param(request))
    return _json(with_public_errors(view))


async def peer_sign_request_decision(request: web.Request) -> web.Response:
    body = await _body_json(request)
    return _json(await _node(request).peer_decision(request.match_info["request_id"], body,
                                                    _peer_index(request)))


async def peer_reserve_request(request: web.Request) -> web.Response:
    body = await _body_json(request)
    return _json(await _node(request).request_use.confirm(request.match_info["request_id"], body))


async def peer_checkpoint(request: web.Request) -> web.Response:
    body = await _body_json(request)
    return _json(_node(request).witness_checkpoint(body, _peer_index(request)))


async def peer_cancel(request: web.Request) -> web.Response:
    body = await _body_json(request)
    _node(request).cancel_job(request.match_info["job_id"], _peer_index(request), body)
    return _json({"ok": True})


# ---------------------------------------------------------------------------------------
# the route table

_DIGEST = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "32-byte digest, hex"}
_STATEMENT = {"type": "object", "required": ["statement", "signature"], "properties": {
    "statement": {"type": "object"}, "signature": {"type": "string"}}}
_REQUEST = dict(_STATEMENT, description="the initiator's signed request statement "
                "(appliance.policy.make_request; the client library makes it)")
_APPROVAL_BODY = {"type": "object", "required": ["approval"], "properties": {
    "approval": dict(_STATEMENT, description="the user's signed decision (appliance.policy."
                     "make_approval) on the request; its approver is the authenticated user")}}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, "Liveness: the process answers", "open"),
    Route("GET", "/readyz", readyz, "Readiness: HSM open, node started", "open", responses=(200, 503)),
    Route("GET", "/metrics", metrics, "Prometheus metrics (the scraper's bearer token or certificate, or a "
          "signed user request)", "metrics", responses=(200, 401), content_type="text/plain"),
    Route("GET", "/openapi.json", openapi, "This document", "user", ANY_ROLE),
    Route("POST", "/v1/keys", create_key, "Create a key (DKG); an operation, pending until the policy's "
          "admin quorum approved it", "user", ANY_ROLE,
          body={"type": "object", "required": ["threshold", "request"], "properties": {
              "threshold": {"type": "integer", "minimum": 1},
              "nodes": {"type": "array", "items": {"type": "string"}, "description": "node ids (default all)"},
              "paillier_bits": {"type": "integer", "enum": [2048, 3072]}, "request": _REQUEST}},
          responses=(202, 400, 401, 403, 503)),
    Route("GET", "/v1/keys", list_keys, "List keys", "user", ANY_ROLE),
    Route("POST", "/v1/keys/import", import_key,
          "Import a key from a dealer's bundle (appliance key import); an operation, pending until "
          "the policy's admin quorum approved it", "user",
          ANY_ROLE, body={"type": "object", "required": ["bundle", "request"], "properties": {
              "bundle": {"type": "object", "description": "made offline by `appliance key import`"},
              "paillier_bits": {"type": "integer", "enum": [2048, 3072]},
              "request": dict(_REQUEST, description="the initiator's signed import request: params "
                              "bundle_hash, public_key, threshold, nodes (the client library makes it)")}},
          responses=(202, 400, 401, 403, 409, 503)),
    Route("GET", "/v1/keys/{key_id}", get_key, "One key", "user", ANY_ROLE, responses=(200, 401, 404)),
    Route("GET", "/v1/operations/{op_id}", get_operation, "A key operation's status", "user", ANY_ROLE,
          query=(("wait", "number", "long-poll up to this many seconds for a final status"),),
          responses=(200, 401, 404)),
    Route("POST", "/v1/operations/{op_id}/approvals", approve_operation,
          "Approve a key operation waiting for the admin quorum", "user", ANY_ROLE, body=_APPROVAL_BODY,
          responses=(200, 400, 401, 403, 404, 409, 503)),
    Route("POST", "/v1/keys/{key_id}/sign-requests", create_sign_request,
          "Request a signature of a digest or a payload (psbt, eth_tx, eip712); pending until approved",
          "user", ANY_ROLE, body={"type": "object", "required": ["request"], "properties": {
              "digest": _DIGEST,
              "derivation_path": {"type": "string"},
              "signers": {"type": "array", "items": {"type": "string"}, "description": "node ids to sign"},
              "payload": {"description": "psbt: base64; eth_tx: hex of the unsigned transaction; "
                                         "eip712: the typed-data object"},
              "payload_type": {"type": "string", "enum": ["psbt", "eth_tx", "eip712"]},
              "network": {"type": "string", "enum": ["mainnet", "testnet", "signet", "regtest"],
                          "description": "Bitcoin network of a PSBT (default: the key rule's)"},
              "request": _REQUEST}},
          responses=(202, 400, 401, 403, 404, 503)),
    Route("GET", "/v1/sign-requests", list_sign_requests, "Pending sign requests", "user", ANY_ROLE),
    Route("POST", "/v1/sign-requests/{request_id}/approvals", approve, "Approve a sign request", "user",
          ANY_ROLE, body=_APPROVAL_BODY, responses=(200, 400, 401, 403, 404, 409, 503)),
    Route("POST", "/v1/sign-requests/{request_id}/rejections", reject, "Reject a sign request", "user",
          ANY_ROLE, body=_APPROVAL_BODY, responses=(200, 400, 401, 403, 404, 409, 503)),
    Route("POST", "/v1/sign-requests/{request_id}/cancel", cancel, "The initiator cancels a sign request",
          "user", ANY_ROLE, body=_APPROVAL_BODY, responses=(200, 400, 401, 403, 404, 409, 503)),
    Route("GET", "/v1/sign-requests/{request_id}", get_sign_request, "A sign request (signature once signed)",
          "user", ANY_ROLE, query=(("wait", "number", "long-poll up to this many seconds"),),
          responses=(200, 401, 404)),
    Route("POST", "/v1/verify", verify, "Verify an ECDSA signature", "user", ANY_ROLE,
          body={"type": "object", "required": ["digest", "signature"], "properties": {
              "public_key": {"type": "string"}, "key_id": {"type": "string"}, "digest": _DIGEST,
              "signature": {}}}, responses=(200, 400, 401, 404)),
    Route("GET", "/v1/keys/{key_id}/derive", derive, "BIP32 child public key and xpub (non-hardened path)",
          "user", ANY_ROLE, query=(("path", "string", "e.g. m/0/1"),), responses=(200, 400, 401, 404)),
    Route("GET", "/v1/keys/{key_id}/address", address, "Address of a (derived) key", "user", ANY_ROLE,
          query=(("kind", "string", "p2wpkh or eth"), ("path", "string", "e.g. m/0/1"),
                 ("network", "string", "Bitcoin network (default: the key rule's)")),
          responses=(200, 400, 401, 404)),
    Route("POST", "/v1/keys/{key_id}/refresh", refresh, "Refresh the shares (same public key)", "user",
          ANY_ROLE, body={"type": "object", "required": ["request"], "properties": {"request": _REQUEST}},
          responses=(202, 400, 401, 403, 404, 503)),
    Route("POST", "/v1/keys/{key_id}/reshare", reshare, "Re-share to new nodes / threshold", "user",
          ANY_ROLE, body={"type": "object", "required": ["threshold", "nodes", "request"], "properties": {
              "threshold": {"type": "integer"}, "nodes": {"type": "array", "items": {"type": "string"}},
              "request": _REQUEST}},
          responses=(202, 400, 401, 403, 404, 503)),
    Route("GET", "/v1/audit", audit, "The audit log as JSON Lines (entries' exact bytes, signed and "
          "co-signed checkpoints)", "user", ("auditor",),
          query=(("since", "integer", "entries after this sequence number"),), responses=(200, 400, 401, 403),
          content_type="application/jsonl"),
    Route("GET", "/v1/audit/checkpoints", audit_checkpoints, "The newest audit checkpoint this "
          "node witnessed (co-signed) for each peer, and its own newest co-signed one: the anchor "
          "`appliance audit verify` checks an export against", "user", ("auditor",),
          responses=(200, 401, 403, 503)),
    Route("GET", "/v1/policy", get_policy, "The policy in force (canonical form, hash, version)", "user",
          ANY_ROLE),
    Route("POST", "/v1/policy", post_policy, "Replace the policy (signed by the current policy's "
          "policy_change quorum); forwarded to every node", "user", ANY_ROLE,
          body={"type": "object", "required": ["policy", "previous_policy_hash", "signatures"]},
          responses=(200, 400, 401, 403, 503)),
    Route("GET", "/v1/quarantine", list_quarantine, "Nodes quarantined here (named by an identifiable abort; "
          "left out of quorums until an admin clears them)", "user", ANY_ROLE),
    Route("DELETE", "/v1/quarantine/{node_id}", clear_quarantine, "Clear a node's quarantine", "user", ("admin",),
          responses=(200, 401, 403, 404)),
    Route("GET", "/v1/peer/health", peer_health, "Peer: liveness", "peer"),
    Route("POST", "/v1/peer/jobs", peer_open_job, "Peer: join a protocol job", "peer",
          body={"type": "object"}, responses=(202, 400, 403, 404, 409)),
    Route("POST", "/v1/peer/jobs/{job_id}/messages", peer_messages, "Peer: protocol messages (CBOR)", "peer",
          responses=(202, 400, 403), content_type="application/cbor"),
    Route("POST", "/v1/peer/jobs/{job_id}/report", peer_report, "Peer: a party's outcome", "peer",
          body={"type": "object"}),
    Route("POST", "/v1/peer/jobs/{job_id}/commit", peer_commit, "Peer: commit a key change (new epoch in use)",
          "peer", body={"type": "object"}, responses=(200, 403, 404, 409)),
    Route("POST", "/v1/peer/jobs/{job_id}/finalize", peer_finalize,
          "Peer: every party confirmed the new epoch; destroy the old shares and presignatures", "peer",
          body={"type": "object"}, responses=(200, 400, 403, 409)),
    Route("GET", "/v1/peer/jobs/{job_id}/decision", peer_decision,
          "Peer: the coordinator's decision on a key change (commit, running, abort)", "peer"),
    Route("GET", "/v1/peer/keys/{key_id}", peer_key_state,
          "Peer: whether this node holds a key, its epoch and public-state hash", "peer"),
    Route("POST", "/v1/peer/jobs/{job_id}/cancel", peer_cancel, "Peer: cancel a job", "peer",
          body={"type": "object"}),
    Route("POST", "/v1/peer/policy", peer_policy, "Peer: a policy update (verified here too)", "peer",
          body={"type": "object"}, responses=(200, 400, 403)),
    Route("GET", "/v1/peer/policy", peer_policy_chain, "Peer: the policy updates this node applied", "peer"),
    Route("GET", "/v1/peer/sign-requests/{request_id}", peer_sign_request,
          "Peer: a sign request this node keeps (another node answers a client for it)", "peer",
          query=(("wait", "number", "long-poll up to this many seconds"),), responses=(200, 403, 404)),
    Route("POST", "/v1/peer/sign-requests/{request_id}/decisions", peer_sign_request_decision,
          "Peer: a user's signed decision on a sign request this node keeps, received by another "
          "node", "peer", body={"type": "object"}, responses=(200, 400, 403, 404, 409)),
    Route("POST", "/v1/peer/sign-requests/{request_id}/use", peer_reserve_request,
          "Peer: reserve a sign request for one signer set (every holder of the key; the first "
          "set wins) and confirm it with this node's identity signature", "peer",
          body={"type": "object"}, responses=(200, 400, 403, 404, 409)),
    Route("POST", "/v1/peer/audit/checkpoints", peer_checkpoint,
          "Peer: co-sign another node's audit checkpoint", "peer", body={"type": "object"},
          responses=(200, 400, 403, 409)),
)


def route_for(request: web.Request) -> Route | None:
    info = request.match_info.route
    return getattr(info, "_appliance_route", None) if info is not None else None


# ---------------------------------------------------------------------------------------
# middleware


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DOMAIN_ERRORS as exc:  # TooDeep: a JSON or CBOR body past the nesting bound, unparsed
        resp = error_response(exc)
        if resp.status >= 500:
            log.info("%s %s -> %s %s", request.method, request.path, resp.status, exc.code)
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "no_route", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        return refusal(code, exc.reason, exc.status)
    except BodyTimeout as exc:  # the edge's body clock ran out (the connection then closes)
        return refusal("body_timeout", str(exc))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return refusal("internal", "internal error")


@web.middleware
async def ids_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Every id in a route's path is checked against its exact grammar once the caller is
    authenticated, before any handler sees it (a malformed one is a 400 ``bad_id``)."""
    for name, value in request.match_info.items():
        if name in GRAMMARS:
            check_id(name, value)
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    route = route_for(request)
    if route is None:
        return await handler(request)
    node = _node(request)
    if route.auth == "open":
        return await handler(request)
    if route.auth == "metrics":
        scraper = request.app[METRICS_AUTH_KEY]
        if scraper.allows(request.headers.get("Authorization"), _peer_fingerprint(request)):
            return await handler(request)
        if "Signature-Input" not in request.headers:  # else: a user's signed request
            resp = refusal("unauthenticated", "metrics need the scraper's credentials")
            resp.headers.update(scraper.challenge())
            return resp
    if node.store is None or node.hsm is None:
        return refusal("not_ready", f"{node.me.id} is not ready: {node.fault or 'starting'}")
    if route.auth == "peer":
        fp = _peer_fingerprint(request)
        index = request.app[PEERS_KEY].get(fp) if fp else None
        if index is None:
            return refusal("peer_not_pinned", "peer routes need a pinned node certificate")
        request["peer_index"] = index
        return await handler(request)
    verifier = request.app[VERIFIER_KEY]
    state = request.app[POLICY_STATE_KEY]
    if state.get("hash") != node.policy.hash:  # the users of the policy in force
        verifier.users = {u.id: u.key.public_key() for u in node.policy.users}
        state["hash"] = node.policy.hash
    try:
        user_id, request["raw_body"] = await authenticate(request, verifier, MAX_BODY)
    except Refusal as r:
        resp = refusal(r.code, r.message)
        if r.unread and request.body_exists:
            resp.force_close()  # the rest of an unread body is not drained
        return resp
    user = node.policy.user(user_id)
    if user is None:
        return refusal("unauthenticated", SIGNATURE_REJECTED)
    # routes the policy rules on (requests, approvals, key changes) let it decide, with its
    # reason codes; the others name their roles here
    if route.roles and not any(user.has(r) for r in route.roles):
        return refusal("forbidden", f"needs one of the roles: {', '.join(route.roles)}")
    request["user"] = user
    return await handler(request)


def _peer_fingerprint(request: web.Request) -> str | None:
    ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_obj is None:
        return None
    der = ssl_obj.getpeercert(binary_form=True)
    return fingerprint_der(der) if der else None


def make_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[edge_middleware(node.config.http), errors_middleware, auth_middleware,
                                       ids_middleware], client_max_size=MAX_PEER_BODY)
    app[NODE_KEY] = node
    app[VERIFIER_KEY] = node_verifier(node)
    app[POLICY_STATE_KEY] = {"hash": node.policy.hash}
    app[PEERS_KEY] = {fingerprint_pem(n.tls_cert): n.index for n in node.cluster.nodes}
    app[METRICS_AUTH_KEY] = MetricsAuth.from_config(node.config.metrics)
    for r in ROUTES:
        res = app.router.add_route(r.method, r.path, r.handler)
        res._appliance_route = r  # type: ignore[attr-defined]
    return app


# ---------------------------------------------------------------------------------------
# OpenAPI


def openapi_document(node: Node | None = None) -> dict:
    paths: dict[str, dict] = {}
    err_schema = {"$ref": "#/components/schemas/Error"}
    for r in ROUTES:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler.__name__}
        params = [{"name": name, "in": "path", "required": True, "schema": _id_schema(name)}
                  for name in _path_params(r.path)]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
                   for n, t, d in r.query]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": r.method == "POST" and bool(r.body.get("required")),
                                 "content": {"application/json": {"schema": r.body}}}
        elif r.content_type == "application/cbor":
            op["requestBody"] = {"required": True, "content": {"application/cbor": {"schema": {
                "type": "string", "format": "binary"}}}}
        responses: dict[str, Any] = {}
        statuses = (*r.responses, 400) if any(n in GRAMMARS for n in _path_params(r.path)) else r.responses
        for status in sorted(set(statuses)):
            if status < 400:
                ctype = r.content_type if r.method == "GET" else "application/json"
                if ctype == "application/cbor":
                    ctype = "application/json"
                responses[str(status)] = {"description": "OK" if status == 200 else "Accepted",
                                          "content": {ctype: {"schema": {"type": "object"} if ctype == "application/json"
                                                              else {"type": "string"}}}}
            else:
                responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Error"),
                                          "content": {"application/json": {"schema": err_schema}}}
        if r.auth == "user":
            op["security"] = [{"httpMessageSignature": []}]
            op["x-roles"] = list(r.roles)
            responses.setdefault("401", {"description": _STATUS_TEXT[401],
                                         "content": {"application/json": {"schema": err_schema}}})
        elif r.auth == "peer":
            op["security"] = [{"pinnedMutualTLS": []}]
            op["tags"] = ["peer"]
        elif r.auth == "metrics":
            op["security"] = [{"metricsBearer": []}, {"metricsMutualTLS": []}, {"httpMessageSignature": []}]
            op["x-open"] = 'only with [metrics] auth = "none"'
        op["responses"] = responses
        paths.setdefault(r.path, {})[r.method.lower()] = op
    servers = [{"url": node.me.url}] if node is not None else []
    return {
        "openapi": "3.1.0",
        "info": {"title": "Threshold-signing appliance node", "version": __version__,
                 "description": "Client requests are signed with RFC 9421 HTTP Message Signatures "
                                "(label sig1, covering @method @authority @path @query content-digest; "
                                "created, keyid = user id, nonce). Peer routes need a pinned client certificate."},
        "servers": servers,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "httpMessageSignature": {"type": "apiKey", "in": "header", "name": "Signature",
                                         "description": "RFC 9421 signature (with Signature-Input "
                                                        "and Content-Digest)"},
                "pinnedMutualTLS": {"type": "mutualTLS",
                                    "description": "client certificate pinned in the cluster configuration"},
                "metricsBearer": {"type": "http", "scheme": "bearer",
                                  "description": "the scraper's token ([metrics] bearer_token_file)"},
                "metricsMutualTLS": {"type": "mutualTLS",
                                     "description": "the scraper's certificate ([metrics] client_certs)"},
            },
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "culprits": {"type": "array", "items": {"type": "string"}},
                    "missing_nodes": {"type": "array", "items": {"type": "string"}}}}}}},
        },
    }


_STATUS_TEXT = {400: "Bad input", 401: "Not authenticated", 403: "Forbidden", 404: "Unknown",
                409: "Wrong state", 413: "Too large", 501: "Not implemented yet",
                502: "Protocol abort (culprits)", 503: "Quorum unreachable (missing_nodes)"}


def _id_schema(name: str) -> dict:
    if name in GRAMMARS:
        return {"type": "string", "pattern": f"^{GRAMMARS[name].pattern}$"}
    return {"type": "string"}


def _path_params(path: str) -> list[str]:
    import re

    return re.findall(r"{([^}]+)}", path)


# ---------------------------------------------------------------------------------------
# running a node


async def serve(config_path: str, *, ready_file: str | None = None) -> None:
    """Start the node and its HTTPS server; run until SIGTERM or SIGINT, then stop cleanly."""
    import asyncio
    import signal

    from api.tls import server_context
    from appliance.config import load_node_config

    cfg = load_node_config(config_path)
    for path in tighten_tree(cfg.data_dir):  # state left by a release before umask 077
        log.warning("%s was readable by others: now 0700/0600", path)
    node = Node(cfg)
    await node.start()
    app = make_app(node)
    scraper = app[METRICS_AUTH_KEY]
    if scraper.problem or cfg.metrics.legacy_open:
        log.warning("/metrics needs authentication (see [metrics] in node.toml)%s",
                    f": {scraper.problem}" if scraper.problem else "; [node] metrics_open is ignored")
    runner = runner_for(app, cfg.http)
    await runner.setup()
    ctx = server_context(cfg.tls_cert, cfg.tls_key, [n.tls_cert for n in cfg.cluster.nodes] + list(scraper.cert_pems))
    site = GuardedSite(runner, cfg.listen_host, cfg.listen_port, ssl_context=ctx, limits=cfg.http,
                       peer_fingerprints=frozenset(app[PEERS_KEY]))
    await site.start()
    log.info("node %s listening on %s:%s", cfg.node_id, cfg.listen_host, cfg.listen_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write("ready\n")
    try:
        await stop.wait()
    finally:
        log.info("node %s stopping", cfg.node_id)
        await runner.cleanup()
        await node.stop()
