"""Client routes: open ones (health, readiness, metrics, this OpenAPI document) and the
routes users call with RFC 9421 signed requests (api/auth.py), under the roles each names."""

from __future__ import annotations

import asyncio

from aiohttp import web

from msgspec import UNSET, to_builtins

from api import bodies
from api.errors import json_response, with_public_errors
from api.routes.common import (
    ANY_ROLE,
    OPENAPI_KEY,
    Route,
    body_of,
    hsm_health,
    node_of,
    user_of,
    wait_param,
)
from appliance import __version__, paging
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
    await node.gauges.refresh()  # peers, HSM, audit, open requests, pools, certificates: as of now
    return web.Response(body=node.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# client routes


async def create_key(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.CreateKey)
    op = await node_of(request).keys.create(user_of(request), body.threshold, body.nodes, body.paillier_bits,
                                            request=to_builtins(body.request), scheme=body.scheme)
    return json_response(with_public_errors(op.view), 202 if op.new else 200)


def _lifecycle(action: str):
    async def handler(request: web.Request) -> web.Response:
        body = await body_of(request, bodies.KeyLifecycle)
        op = await node_of(request).keys.lifecycle(user_of(request), action, request.match_info["key_id"],
                                                   request=to_builtins(body.request))
        return json_response(with_public_errors(op.view), 202 if op.new else 200)
    handler.__name__ = f"{action}_key"
    return handler


async def key_versions(request: web.Request) -> web.Response:
    return json_response(node_of(request).keys.versions(request.match_info["key_id"]))


async def list_keys(request: web.Request) -> web.Response:
    q = request.query
    query = paging.page_query("keys", q.get("limit"), q.get("cursor"))
    return json_response(node_of(request).keys.list_keys(query))


async def get_key(request: web.Request) -> web.Response:
    node = node_of(request)
    row = node.shares.known_key(request.match_info["key_id"])
    view = node.shares.key_view(row)
    view["presignatures"] = node.pools.counts(row["key_id"])
    return json_response(view)


async def get_operation(request: web.Request) -> web.Response:
    op = await node_of(request).keys.get_operation(request.match_info["op_id"], wait_param(request))
    return json_response(with_public_errors(op))


async def create_sign_request(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.CreateSignRequest)
    req = await node_of(request).signing.create(
        user_of(request), request.match_info["key_id"], body.digest, body.derivation_path,
        body.signers, body.payload, body.payload_type, request=body.request, network=body.network)
    # 202: created; 200: the same request sent again (same initiator and nonce): the first one
    return json_response(with_public_errors(req.view), 202 if req.new else 200)


async def list_sign_requests(request: web.Request) -> web.Response:
    q = request.query
    query = paging.page_query("sign_requests", q.get("limit"), q.get("cursor"))
    where = paging.sign_request_filter(
        status=q.getall("status", []), key_id=q.get("key_id"), initiator=q.get("initiator"),
        created_after=q.get("created_after"), created_before=q.get("created_before"))
    return json_response(with_public_errors(node_of(request).signing.list_page(where, query)))


async def get_sign_request(request: web.Request) -> web.Response:
    req = await node_of(request).signing.get(request.match_info["request_id"], wait_param(request))
    return json_response(with_public_errors(req))


async def approval_statement(request: web.Request) -> web.Response:
    out = await node_of(request).approval_statements.statement(
        user_of(request), request.match_info["request_id"], request.query.get("decision"),
        request.query.get("reason", ""))
    return json_response(out)


async def decision_of(request: web.Request) -> dict:
    """A decision body: the signed decision, handed on as signed."""
    return {"approval": to_builtins((await body_of(request, bodies.Decide)).approval)}


def _decision_route(decision: str):
    """The handler of one kind of signed decision on a sign request (its name is the OpenAPI
    operationId)."""

    async def handler(request: web.Request) -> web.Response:
        body = await decision_of(request)
        view = await node_of(request).signing.decide(user_of(request), request.match_info["request_id"],
                                                     decision, body)
        return json_response(with_public_errors(view))

    handler.__name__ = handler.__qualname__ = decision
    return handler


approve, reject, cancel = (_decision_route(d) for d in ("approve", "reject", "cancel"))


async def approve_operation(request: web.Request) -> web.Response:
    body = await decision_of(request)
    view = await node_of(request).keys.decide_operation(user_of(request), request.match_info["op_id"], body)
    return json_response(with_public_errors(view))


async def get_policy(request: web.Request) -> web.Response:
    return json_response(node_of(request).policy_sync.view())


async def post_policy(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.PolicyUpdate)
    return json_response(await node_of(request).policy_sync.update(user_of(request), to_builtins(body)))


async def get_tls_certs(request: web.Request) -> web.Response:
    return json_response(node_of(request).cert_rotation.view())


async def post_tls_cert(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.CertUpdate)
    return json_response(await node_of(request).cert_rotation.update(user_of(request), to_builtins(body)))


async def verify(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.Verify)
    return json_response(node_of(request).signing.verify(to_builtins(body)))


async def derive(request: web.Request) -> web.Response:
    return json_response(node_of(request).keys.derive(request.match_info["key_id"], request.query.get("path")))


async def address(request: web.Request) -> web.Response:
    q = request.query
    return json_response(node_of(request).keys.address(request.match_info["key_id"], q.get("kind"), q.get("path"),
                                            q.get("network")))


async def refresh(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.Refresh)
    op = await node_of(request).keys.refresh(user_of(request), request.match_info["key_id"],
                                             request=to_builtins(body.request))
    return json_response(with_public_errors(op.view), 202 if op.new else 200)


async def reshare(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.Reshare)
    op = await node_of(request).keys.reshare(user_of(request), request.match_info["key_id"], body.threshold,
                                             body.nodes, request=to_builtins(body.request))
    return json_response(with_public_errors(op.view), 202 if op.new else 200)


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
    await body_of(request, bodies.Empty)
    return json_response(node_of(request).quarantine.clear(user_of(request), request.match_info["node_id"]))


async def import_key(request: web.Request) -> web.Response:
    body = await body_of(request, bodies.ImportKey)
    spec = {"bundle": body.bundle, **({} if body.paillier_bits is UNSET else {"paillier_bits": body.paillier_bits})}
    op = await node_of(request).keys.import_key(user_of(request), spec, request=to_builtins(body.request))
    return json_response(with_public_errors(op.view), 202 if op.new else 200)


# ---------------------------------------------------------------------------------------
# the route table

# an example statement (the client library makes and signs the real one)
_STATEMENT = {"type": "appliance/request/v1", "cluster_id": "cluster-1", "policy_hash": "ab" * 32,
              "action": "sign", "key_id": "key_" + "0" * 24, "initiator": "initiator",
              "nonce": "n-1", "created_at": 1765000000, "expires_at": 1765086400,
              "derivation_path": "m/0/1", "digest": "11" * 32, "payload_type": None, "payload_hash": None,
              "params": None, "network": None}
_SIGNED = {"statement": _STATEMENT, "signature": "30" * 64}


def _signed(**fields) -> dict:
    return {"statement": {**_STATEMENT, **fields}, "signature": _SIGNED["signature"]}


_DECISION = {"approval": {"statement": {"type": "appliance/approval/v1", "decision": "approve",
                                        "approver": "approver"}, "signature": "30" * 64}}
_KEYGEN = {"action": "keygen", "key_id": None, "derivation_path": None, "digest": None,
           "params": {"threshold": 2}}

_PAGE = (("limit", "integer", f"items per page, 1 to {paging.LIMIT_MAX} (default {paging.LIMIT_DEFAULT})"),
         ("cursor", "string", "the previous page's next_cursor, as it came"))

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, "Liveness: the process answers", "open", response=bodies.Health),
    Route("GET", "/readyz", readyz, "Readiness: HSM open, node started", "open", response=bodies.Readiness,
          responses=(200, 503), failure_is_response=True),
    Route("GET", "/metrics", metrics, "Prometheus metrics (the scraper's bearer token or certificate, or a "
          "signed user request)", "metrics", responses=(200, 401), content_type="text/plain"),
    Route("GET", "/openapi.json", openapi, "This document (open: what a client generator reads)", "open",
          response=bodies.OpenAPIDocument),
    Route("POST", "/v1/keys", create_key, "Create a key (DKG); an operation, pending until the policy's "
          "admin quorum approved it (the nonce is the idempotency key: 200 the first operation, sent again; 409 nonce_reused)", "user", ANY_ROLE,
          body=bodies.CreateKey, response=bodies.Operation,
          example={"threshold": 2, "request": _signed(**_KEYGEN)},
          responses=(200, 202, 400, 401, 403, 409, 503)),
    Route("GET", "/v1/keys", list_keys, "Active keys, oldest first, a page at a time (cursor pagination)",
          "user", ANY_ROLE, response=bodies.KeyList, query=_PAGE, responses=(200, 400, 401)),
    Route("POST", "/v1/keys/import", import_key,
          "Import a key from a dealer's bundle (appliance key import); an operation, pending until "
          "the policy's admin quorum approved it (the nonce is the idempotency key: 200 the first operation, sent again; 409 nonce_reused)", "user",
          ANY_ROLE, body=bodies.ImportKey, response=bodies.Operation,
          example={"bundle": {}, "request": _signed(**{**_KEYGEN, "action": "import"})},
          responses=(200, 202, 400, 401, 403, 409, 422, 503)),
    Route("GET", "/v1/keys/{key_id}", get_key, "One key", "user", ANY_ROLE, response=bodies.Key, responses=(200, 401, 404)),
    Route("GET", "/v1/operations/{op_id}", get_operation, "A key operation's status", "user", ANY_ROLE,
          response=bodies.Operation,
          query=(("wait", "number", "long-poll up to this many seconds for a final status"),),
          responses=(200, 401, 404)),
    Route("POST", "/v1/operations/{op_id}/approvals", approve_operation,
          "Approve a key operation waiting for the admin quorum", "user", ANY_ROLE, body=bodies.Decide,
          response=bodies.Operation, example=_DECISION, responses=(200, 400, 401, 403, 404, 409, 422, 503)),
    Route("POST", "/v1/keys/{key_id}/sign-requests", create_sign_request,
          "Request a signature of a digest or a payload (psbt, eth_tx, eip712); pending until approved. "
          "The statement's nonce is the idempotency key: 202 a new request; 200 the same request sent "
          "again under the initiator's nonce (to any node, signed again or not): the first request, as "
          "it is now; 409 nonce_reused: a different request under that nonce",
          "user", ANY_ROLE, body=bodies.CreateSignRequest, response=bodies.SignRequest,
          example={"digest": "11" * 32, "derivation_path": "m/0/1", "request": _SIGNED},
          responses=(200, 202, 400, 401, 403, 404, 409, 410, 503)),
    Route("GET", "/v1/sign-requests", list_sign_requests, "This node's sign requests, newest first, a page "
          "at a time: the open ones (pending, signing) unless status says otherwise (status=all: every "
          "status; finished requests are kept); filters combine (AND)", "user", ANY_ROLE,
          response=bodies.SignRequestList, query=(
              ("status", "string", "all, a status, or a comma list (repeatable): "
               + ", ".join(paging.REQUEST_STATUSES) + " (default: pending,signing)"),
              ("key_id", "string", "only this key's requests"),
              ("initiator", "string", "only requests by this user"),
              ("created_after", "number", "created strictly after this time (Unix seconds)"),
              ("created_before", "number", "created strictly before this time (Unix seconds)"),
              *_PAGE), responses=(200, 400, 401)),
    Route("POST", "/v1/sign-requests/{request_id}/approvals", approve, "Approve a sign request", "user",
          ANY_ROLE, body=bodies.Decide, response=bodies.SignRequest, example=_DECISION, responses=(200, 400, 401, 403, 404, 409, 503)),
    Route("POST", "/v1/sign-requests/{request_id}/rejections", reject, "Reject a sign request", "user",
          ANY_ROLE, body=bodies.Decide, response=bodies.SignRequest,
          example={"approval": {**_DECISION["approval"], "statement": {**_DECISION["approval"]["statement"],
                                                                      "decision": "reject"}}}, responses=(200, 400, 401, 403, 404, 409, 503)),
    Route("POST", "/v1/sign-requests/{request_id}/cancel", cancel, "The initiator cancels a sign request",
          "user", ANY_ROLE, body=bodies.Decide, response=bodies.SignRequest,
          example={"approval": {**_DECISION["approval"], "statement": {**_DECISION["approval"]["statement"],
                                                                      "decision": "cancel",
                                                                      "approver": "initiator"}}},
          responses=(200, 400, 401, 403, 404, 409, 503)),
    Route("GET", "/v1/sign-requests/{request_id}/approval-statement", approval_statement,
          "The approval statement the caller signs with a passkey for this decision, and its WebAuthn "
          "challenge (base64url SHA-256 of the statement's canonical JSON); post it back as "
          "{approval: {statement, webauthn}} to the approvals (or rejections) route", "user", ANY_ROLE,
          response=bodies.ApprovalStatement,
          query=(("decision", "string", "approve or reject"),
                 ("reason", "string", "a rejection's reason (signed with it; 1-200 printable characters)")),
          responses=(200, 400, 401, 404, 409)),
    Route("GET", "/v1/sign-requests/{request_id}", get_sign_request, "A sign request (signature once signed)",
          "user", ANY_ROLE, response=bodies.SignRequest, query=(("wait", "number", "long-poll up to this many seconds"),),
          responses=(200, 401, 404)),
    Route("POST", "/v1/verify", verify, "Verify an ECDSA signature, or a BIP340 / Ed25519 {sig} (the key's "
          "scheme, or scheme with a 32-byte public_key; 409 scheme_mismatch)", "user", ANY_ROLE,
          body=bodies.Verify,
          response=bodies.VerifyResult, example={"public_key": "02" + "11" * 32, "digest": "11" * 32,
                                                 "signature": {"r": "22" * 32, "s": "33" * 32}},
          responses=(200, 400, 401, 404, 409)),
    Route("GET", "/v1/keys/{key_id}/derive", derive, "BIP32 child public key and xpub (non-hardened path; "
          "an ECDSA or schnorr-bip340 key's; 409 not_supported_for_scheme for an ed25519 key)",
          "user", ANY_ROLE, response=bodies.Derived, query=(("path", "string", "e.g. m/0/1"),),
          responses=(200, 400, 401, 404, 409)),
    Route("GET", "/v1/keys/{key_id}/address", address, "Address of a (derived) key: p2wpkh or eth for an "
          "ECDSA key, p2tr (key path) for a schnorr-bip340 key; 409 not_supported_for_scheme for ed25519",
          "user", ANY_ROLE, response=bodies.Address,
          query=(("kind", "string", "p2wpkh or eth (ECDSA), p2tr (schnorr-bip340), sol (ed25519: the Solana account address)"), ("path", "string", "e.g. m/0/1"),
                 ("network", "string", "Bitcoin network (default: the key rule's)")),
          responses=(200, 400, 401, 404, 409)),
    Route("POST", "/v1/keys/{key_id}/refresh", refresh, "Refresh the shares (same public key) (the nonce is the idempotency key: 200 the first operation, sent again; 409 nonce_reused)", "user",
          ANY_ROLE, body=bodies.Refresh, response=bodies.Operation,
          example={"request": _signed(action="refresh", derivation_path=None, digest=None, params={})},
          responses=(200, 202, 400, 401, 403, 404, 409, 410, 503)),
    Route("POST", "/v1/keys/{key_id}/reshare", reshare, "Re-share to new nodes / threshold (the nonce is the idempotency key: 200 the first operation, sent again; 409 nonce_reused)", "user",
          ANY_ROLE, body=bodies.Reshare, response=bodies.Operation,
          example={"threshold": 2, "nodes": ["node-0", "node-1", "node-2"],
                   "request": _signed(action="reshare", derivation_path=None, digest=None,
                                      params={"threshold": 2, "nodes": ["node-0", "node-1", "node-2"]})},
          responses=(200, 202, 400, 401, 403, 404, 409, 410, 503)),
    *(Route("POST", path, _lifecycle(action), what + " (a key change under the "
            "key-change quorum, run on every holder; the nonce is the idempotency key: 200 the first operation, "
            "sent again; 409 nonce_reused)", "user", ANY_ROLE, body=bodies.KeyLifecycle, response=bodies.Operation,
            example={"request": _signed(action=action, derivation_path=None, digest=None, params={})},
            responses=(200, 202, 400, 401, 403, 404, 409, 410, 503))
      for action, path, what in (("disable", "/v1/keys/{key_id}/disable", "Disable the key: every holder refuses sign requests and sign jobs "
                            "(409 key_disabled) and stops its presignature pool"),
                           ("enable", "/v1/keys/{key_id}/enable", "Enable a disabled key again"),
                           ("delete", "/v1/keys/{key_id}/delete", "Delete the key: two phases on every holder (deleting, then every "
                            "sealed share and presignature destroyed); the key stays listed as deleted"))),
    Route("GET", "/v1/keys/{key_id}/versions", key_versions, "The key's epochs with their dates (this node's "
          "record; kept after a delete)", "user", ANY_ROLE, response=bodies.KeyVersions, responses=(200, 401, 404)),
    Route("GET", "/v1/audit", audit, "The audit log as JSON Lines (entries' exact bytes, signed and "
          "co-signed checkpoints)", "user", ("auditor",),
          query=(("since", "integer", "entries after this sequence number"),), responses=(200, 400, 401, 403),
          content_type="application/jsonl"),
    Route("GET", "/v1/audit/checkpoints", audit_checkpoints, "The newest audit checkpoint this "
          "node witnessed (co-signed) for each peer, and its own newest co-signed one: the anchor "
          "`appliance audit verify` checks an export against", "user", ("auditor",), response=bodies.AuditAnchor,
          responses=(200, 401, 403, 503)),
    Route("GET", "/v1/policy", get_policy, "The policy in force (canonical form, hash, version)", "user",
          ANY_ROLE, response=bodies.PolicyView),
    Route("POST", "/v1/policy", post_policy, "Replace the policy (signed by the current policy's "
          "policy_change quorum); forwarded to every node", "user", ANY_ROLE,
          body=bodies.PolicyUpdate, response=bodies.PolicyApplied,
          example={"policy": {"cluster_id": "cluster-1", "version": 2, "users": []},
                   "previous_policy_hash": "ab" * 32, "signatures": [{"user": "admin", "signature": "30" * 64}]},
          responses=(200, 400, 401, 403, 503)),
    Route("GET", "/v1/cluster/tls-certs", get_tls_certs, "The pinned node certificates in force and the "
          "number of certificate updates applied", "user", ANY_ROLE, response=bodies.ClusterCerts),
    Route("POST", "/v1/cluster/tls-certs", post_tls_cert, "Rotate a node's TLS certificate: an update "
          "signed by the policy_change quorum, applied by the rotated node first (it must have the key "
          "staged), then here and on every node", "user", ANY_ROLE,
          body=bodies.CertUpdate, response=bodies.CertApplied,
          example={"cluster_id": "cluster-1", "policy_hash": "ab" * 32, "version": 1, "node_id": "node-2",
                   "previous_cert_sha256": "cd" * 32, "tls_cert": "-----BEGIN CERTIFICATE-----\n...",
                   "signatures": [{"user": "admin", "signature": "30" * 64}]},
          responses=(200, 400, 401, 403, 409, 503)),
    Route("GET", "/v1/quarantine", list_quarantine, "Nodes quarantined here (named by an identifiable abort; "
          "left out of quorums until an admin clears them)", "user", ANY_ROLE, response=bodies.QuarantineList),
    Route("DELETE", "/v1/quarantine/{node_id}", clear_quarantine, "Clear a node's quarantine", "user", ("admin",),
          body=bodies.Empty, response=bodies.QuarantineCleared, example={},
          responses=(200, 401, 403, 404)),
)
