"""Peer routes (``/v1/peer/``): only for another node of the cluster, over TLS with its client
certificate pinned in the cluster configuration (api.app's auth middleware maps the
certificate to the node's index)."""

from __future__ import annotations

from aiohttp import web

from api.errors import json_response, with_public_errors
from api import bodies
from api.routes.common import Route, body_json, hsm_health, node_of, peer_index_of, wait_param
from appliance.bounded import check_depth

async def peer_health(request: web.Request) -> web.Response:
    node = node_of(request)
    # a node whose HSM went away is not offered as a signer (it could not sign anyway)
    ready = node.ready and await hsm_health(node)
    return json_response({"node_id": node.me.id, "index": node.index, "ready": ready})


async def peer_open_job(request: web.Request) -> web.Response:
    spec = await body_json(request)
    await node_of(request).participant.accept(spec, peer_index_of(request))
    return json_response({"accepted": True}, 202)


async def peer_messages(request: web.Request) -> web.Response:
    body = await request.read()
    check_depth(body)  # TooDeep: 400 too_deep before anything parses the CBOR
    dropped = await node_of(request).frames.receive(request.match_info["job_id"], peer_index_of(request), body)
    return json_response({"dropped": dropped}, 202)


async def peer_report(request: web.Request) -> web.Response:
    body = await body_json(request)
    node_of(request).coordinator.take_report(request.match_info["job_id"], peer_index_of(request), body)
    return json_response({"ok": True})


async def peer_commit(request: web.Request) -> web.Response:
    body = await body_json(request)
    out = node_of(request).two_phase.commit_job(request.match_info["job_id"], peer_index_of(request), body)
    return json_response({"ok": True, **out})


async def peer_finalize(request: web.Request) -> web.Response:
    body = await body_json(request)
    out = node_of(request).two_phase.finalize_job(request.match_info["job_id"], peer_index_of(request), body)
    return json_response({"ok": True, **out})


async def peer_decision(request: web.Request) -> web.Response:
    return json_response(node_of(request).two_phase.decision(request.match_info["job_id"], peer_index_of(request)))


async def peer_key_state(request: web.Request) -> web.Response:
    return json_response(await node_of(request).keys.peer_key_state(request.match_info["key_id"]))


async def peer_policy(request: web.Request) -> web.Response:
    body = await body_json(request)
    return json_response(await node_of(request).policy_sync.update(None, body, from_peer=peer_index_of(request)))


async def peer_policy_chain(request: web.Request) -> web.Response:
    return json_response({"updates": node_of(request).policy_sync.chain()})


async def peer_tls_cert(request: web.Request) -> web.Response:
    body = await body_json(request)
    return json_response(await node_of(request).cert_rotation.update(None, body, from_peer=peer_index_of(request)))


async def peer_tls_certs_chain(request: web.Request) -> web.Response:
    return json_response({"updates": node_of(request).cert_rotation.chain()})


async def peer_sign_request(request: web.Request) -> web.Response:
    view = await node_of(request).signing.peer_get(request.match_info["request_id"], wait_param(request))
    return json_response(with_public_errors(view))


async def peer_sign_request_decision(request: web.Request) -> web.Response:
    body = await body_json(request)
    return json_response(await node_of(request).signing.peer_decide(request.match_info["request_id"], body,
                                                    peer_index_of(request)))


async def peer_reserve_request(request: web.Request) -> web.Response:
    body = await body_json(request)
    return json_response(await node_of(request).request_use.confirm(request.match_info["request_id"], body))


async def peer_claim_request(request: web.Request) -> web.Response:
    body = await body_json(request)
    node = node_of(request)
    claim = node.request_claims.confirm(request.match_info["request_id"], body, peer_index_of(request))
    # with this node's readiness, as GET /v1/peer/health gives it: the claimer need not ask again
    return json_response({**claim, "ready": node.ready and await hsm_health(node)})


async def peer_request_operation(request: web.Request) -> web.Response:
    return json_response(with_public_errors(node_of(request).keys.peer_operation_of(request.match_info["request_id"])))


async def peer_checkpoint(request: web.Request) -> web.Response:
    body = await body_json(request)
    return json_response(node_of(request).cosigning.witness(body, peer_index_of(request)))


async def peer_cancel(request: web.Request) -> web.Response:
    body = await body_json(request)
    node_of(request).participant.cancel(request.match_info["job_id"], peer_index_of(request), body)
    return json_response({"ok": True})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/peer/health", peer_health, "Peer: liveness", "peer"),
    Route("POST", "/v1/peer/jobs", peer_open_job, "Peer: join a protocol job", "peer",
          body=bodies.PeerObject, responses=(202, 400, 403, 404, 409)),
    Route("POST", "/v1/peer/jobs/{job_id}/messages", peer_messages, "Peer: protocol messages (CBOR)", "peer",
          responses=(202, 400, 403), content_type="application/cbor"),
    Route("POST", "/v1/peer/jobs/{job_id}/report", peer_report, "Peer: a party's outcome", "peer",
          body=bodies.PeerObject),
    Route("POST", "/v1/peer/jobs/{job_id}/commit", peer_commit, "Peer: commit a key change (new epoch in use)",
          "peer", body=bodies.PeerObject, responses=(200, 403, 404, 409)),
    Route("POST", "/v1/peer/jobs/{job_id}/finalize", peer_finalize,
          "Peer: every party confirmed the new epoch; destroy the old shares and presignatures", "peer",
          body=bodies.PeerObject, responses=(200, 400, 403, 409)),
    Route("GET", "/v1/peer/jobs/{job_id}/decision", peer_decision,
          "Peer: the coordinator's decision on a key change (commit, running, abort)", "peer"),
    Route("GET", "/v1/peer/keys/{key_id}", peer_key_state,
          "Peer: whether this node holds a key, its epoch and public-state hash", "peer"),
    Route("POST", "/v1/peer/jobs/{job_id}/cancel", peer_cancel, "Peer: cancel a job", "peer",
          body=bodies.PeerObject),
    Route("POST", "/v1/peer/policy", peer_policy, "Peer: a policy update (verified here too)", "peer",
          body=bodies.PeerObject, responses=(200, 400, 403)),
    Route("GET", "/v1/peer/policy", peer_policy_chain, "Peer: the policy updates this node applied", "peer"),
    Route("POST", "/v1/peer/tls-certs", peer_tls_cert, "Peer: a TLS certificate update (verified here too)",
          "peer", body=bodies.PeerObject, responses=(200, 400, 403, 409)),
    Route("GET", "/v1/peer/tls-certs", peer_tls_certs_chain, "Peer: the certificate updates this node applied",
          "peer"),
    Route("GET", "/v1/peer/sign-requests/{request_id}", peer_sign_request,
          "Peer: a sign request this node keeps (another node answers a client for it)", "peer",
          query=(("wait", "number", "long-poll up to this many seconds"),), responses=(200, 403, 404)),
    Route("POST", "/v1/peer/sign-requests/{request_id}/decisions", peer_sign_request_decision,
          "Peer: a user's signed decision on a sign request this node keeps, received by another "
          "node", "peer", body=bodies.PeerObject, responses=(200, 400, 403, 404, 409)),
    Route("POST", "/v1/peer/sign-requests/{request_id}/use", peer_reserve_request,
          "Peer: reserve a sign request for one signer set (every holder of the key; the first "
          "set wins) and confirm it with this node's identity signature", "peer",
          body=bodies.PeerObject, responses=(200, 400, 403, 404, 409)),
    Route("POST", "/v1/peer/requests/{request_id}/claim", peer_claim_request,
          "Peer: claim a request id (one per initiator and nonce) for a request kept by the calling "
          "node; the first claim wins and is answered", "peer", body=bodies.PeerObject,
          responses=(200, 400, 403)),
    Route("GET", "/v1/peer/requests/{request_id}", peer_request_operation,
          "Peer: the key operation of a request this node keeps (another node answers a retry with it)",
          "peer", responses=(200, 403, 404)),
    Route("POST", "/v1/peer/audit/checkpoints", peer_checkpoint,
          "Peer: co-sign another node's audit checkpoint", "peer", body=bodies.PeerObject,
          responses=(200, 400, 403, 409)),
)
