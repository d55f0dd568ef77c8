"""Client routes: open ones (health, readiness, metrics, this OpenAPI document) and the
routes users call with RFC 9421 signed requests (api/auth.py), under the roles each names."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.errors import json_response, with_public_errors
from api.routes.common import (
    ANY_ROLE,
    OPENAPI_KEY,
    Route,
    body_json,
    hsm_health,
    node_of,
    user_of,
    wait_param,
)
from appliance import __version__
from appliance.audit import anchor_document
from appliance.errors import ServiceError
from appliance.metrics import CONTENT_TYPE

# ---------------------------------------------------------------------------------------
# open routes


async def healthz(request: web.Request) -> web.Response:
    node = node_of(request)
    return json_response({"status": "ok", "node_id": node.me.id, "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    node = node_of(request)
    hsm_ok = node.hsm is not None and await hsm_health(node)
    audit_ok = node.audit is not None and node.audit_ok
    ready = node.ready and hsm_ok and audit_ok
    body = {"ready": ready, "node_id": node.me.id, "hsm": hsm_ok, "audit": audit_ok,
            "primes": node.primes.counts() if node.store else {}}
    if not ready:
        body["reason"] = node.fault or ("the HSM is not answering" if not hsm_ok else "starting")
    return json_response(body, 200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    node = node_of(request)
    if node.store is not None:
        try:  # the prime pool gauge, as of now
            pc = node.primes.counts()
            for kind in ("safe", "blum"):
                node.metrics.set_prime_pool(kind, node.config.paillier_bits // 2, int(pc.get(kind, 0)))
        except Exception:  # noqa: BLE001 - a gauge never fails the scrape
            pass
    return web.Response(body=node.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# client routes


async def create_key(request: web.Request) -> web.Response:
    body = await body_json(request)
    op = await node_of(request).keys.create(user_of(request), body.get("threshold"), body.get("nodes"),
                                         body.get("paillier_bits"), request=body.get("request"))
    return json_response(with_public_errors(op), 202)


async def list_keys(request: web.Request) -> web.Response:
    node = node_of(request)
    return json_response({"keys": node.keys.list_keys()})


async def get_key(request: web.Request) -> web.Response:
    node = node_of(request)
    row = node.shares.active_key(request.match_info["key_id"])
    view = node.shares.key_view(row)
    view["presignatures"] = node.pools.counts(row["key_id"])
    return json_response(view)


async def get_operation(request: web.Request) -> web.Response:
    op = await node_of(request).keys.get_operation(request.match_info["op_id"], wait_param(request))
    return json_response(with_public_errors(op))


async def create_sign_request(request: web.Request) -> web.Response:
    body = await body_json(request)
    req = await node_of(request).signing.create(
        user_of(request), request.match_info["key_id"], body.get("digest"), body.get("derivation_path"),
        body.get("signers"), body.get("payload"), body.get("payload_type"),
        request=body.get("request"), network=body.get("network"))
    return json_response(with_public_errors(req), 202)


async def list_sign_requests(request: web.Request) -> web.Response:
    return json_response(with_public_errors({"sign_requests": node_of(request).signing.pending()}))


async def get_sign_request(request: web.Request) -> web.Response:
    req = await node_of(request).signing.get(request.match_info["request_id"], wait_param(request))
    return json_response(with_public_errors(req))


async def approve(request: web.Request) -> web.Response:
    body = await body_json(request)
    view = await node_of(request).signing.decide(user_of(request), request.match_info["request_id"], "approve", body)
    return json_response(with_public_errors(view))


async def reject(request: web.Request) -> web.Response:
    body = await body_json(request)
    view = await node_of(request).signing.decide(user_of(request), request.match_info["request_id"], "reject", body)
    return json_response(with_public_errors(view))


async def cancel(request: web.Request) -> web.Response:
    body = await body_json(request)
    view = await node_of(request).signing.decide(user_of(request), request.match_info["request_id"], "cancel", body)
    return json_response(with_public_errors(view))


async def approve_operation(request: web.Request) -> web.Response:
    body = await body_json(request)
    view = await node_of(request).keys.decide_operation(user_of(request), request.match_info["op_id"], body)
    return json_response(with_public_errors(view))


async def get_policy(request: web.Request) -> web.Response:
    return json_response(node_of(request).policy_sync.view())


async def post_policy(request: web.Request) -> web.Response:
    body = await body_json(request)
    return json_response(await node_of(request).policy_sync.update(user_of(request), body))


async def verify(request: web.Request) -> web.Response:
    return json_response(node_of(request).signing.verify(await body_json(request)))


async def derive(request: web.Request) -> web.Response:
    return json_response(node_of(request).keys.derive(request.match_info["key_id"], request.query.get("path")))


async def address(request: web.Request) -> web.Response:
    q = request.query
    return json_response(node_of(request).keys.address(request.match_info["key_id"], q.get("kind"), q.get("path"),
                                            q.get("network")))


async def refresh(request: web.Request) -> web.Response:
    body = await body_json(request)
    op = await node_of(request).keys.refresh(user_of(request), request.match_info["key_id"],
                                          request=body.get("request"))
    return json_response(with_public_errors(op), 202)


async def reshare(request: web.Request) -> web.Response:
    body = await body_json(request)
    op = await node_of(request).keys.reshare(user_of(request), request.match_info["key_id"], body.get("threshold"),
                                          body.get("nodes"), request=body.get("request"))
    return json_response(with_public_errors(op), 202)


async def audit(request: web.Request) -> web.Response:
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        raise ServiceError("bad_since", "since must be an integer") from None
    if not 0 <= since < 1 << 63:  # SQLite integers are 64-bit (found by schemathesis)
        raise ServiceError("bad_since", "since must be between 0 and 2^63 - 1")
    node = node_of(request)
    if node.audit is None:
        raise ServiceError("audit_unavailable", "the audit log is not open")
    # JSON Lines: each entry's exact stored bytes and its hash, checkpoints after the entry they
    # cover (what `appliance audit verify FILE` checks)
    data = await asyncio.get_running_loop().run_in_executor(None, node.audit.export_bytes, since)
    return web.Response(body=data, headers={"Content-Type": "application/jsonl"})


async def audit_checkpoints(request: web.Request) -> web.Response:
    node = node_of(request)
    if node.audit is None:
        raise ServiceError("audit_unavailable", "the audit log is not open")
    ids = [n.id for n in node.cluster.nodes]
    doc = await asyncio.get_running_loop().run_in_executor(None, anchor_document, node.audit, ids)
    return json_response(doc)


async def list_quarantine(request: web.Request) -> web.Response:
    return json_response(node_of(request).quarantine.view())


async def clear_quarantine(request: web.Request) -> web.Response:
    await body_json(request)
    return json_response(node_of(request).quarantine.clear(user_of(request), request.match_info["node_id"]))


async def import_key(request: web.Request) -> web.Response:
    body = await body_json(request)
    op = await node_of(request).keys.import_key(user_of(request), body, request=body.get("request"))
    return json_response(with_public_errors(op), 202)


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
    Route("GET", "/openapi.json", openapi, "This document (open: what a client generator reads)", "open"),
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
)
