"""The approval console (issue 17): ``/ui/`` (static pages shipped in the package, api/ui/)
and its read-only JSON under ``/ui/api/``, authenticated by the session cookie a passkey
sign-in sets (appliance/ui_sessions.py). The one write, a decision, is authorised by the
WebAuthn assertion over its approval statement (checked by the signing service and by every
signer), never by the cookie: a forged cross-site request has no assertion, so CSRF is
impossible by construction. /v1 keeps its RFC 9421 authentication unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from aiohttp import web

from api import bodies
from api.errors import json_response, with_public_errors
from api.routes.common import B, Route, body_of, node_of
from appliance import paging
from appliance.errors import ServiceError
from appliance.policy import PolicyError
from appliance.ui_access import check_read, read_scope, rule_name
from appliance.ui_sessions import COOKIE, MAX_ATTESTATION, SESSION_TTL_S, UISessions
from appliance_client.statements import MAX_CREDENTIAL_ID, WebAuthnAssertion, from_b64url

STATIC = Path(__file__).resolve().parent.parent / "ui"
ASSETS = {"": ("index.html", "text/html"), "enrol": ("index.html", "text/html"),
          "app.js": ("app.js", "text/javascript"), "app.css": ("app.css", "text/css")}
SESSIONS_KEY = web.AppKey("ui_sessions", UISessions)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Strict-Transport-Security": "max-age=31536000",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
MAX_LABEL = 64


#: the most a console POST may carry: the challenge and sign-out take an empty body (or ``{}``); a sign-in,
#: a registration or a decision (a statement and one assertion or attestation) fit in 16 KB
MAX_UI_BODY = 16 << 10
EMPTY_BODY = 2  # nothing, or ``{}``


async def _ui_body(request: web.Request, body: type[B], limit: int = MAX_UI_BODY) -> B:
    """``body_of`` with the route's own cap, refused (413 ``body_too_large``) before more than
    ``limit`` bytes are read (the app's own bound is the peers' 16 MB)."""
    if request.content_length is not None and request.content_length > limit:
        raise ServiceError("body_too_large", f"a console request body is at most {limit} bytes")
    chunks, size = [], 0
    while chunk := await request.content.read(min(65536, limit + 1)):
        size += len(chunk)
        if size > limit:
            raise ServiceError("body_too_large", f"a console request body is at most {limit} bytes")
        chunks.append(chunk)
    request["raw_body"] = b"".join(chunks)
    return await body_of(request, body)


def ui_headers(response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)


def sessions_of(request: web.Request) -> UISessions:
    """The console's sessions; ``not_ready`` (503) until the node's store and HSM are open
    (a sign-in checks the passkey's counter in the store)."""
    node = node_of(request)
    if node.store is None or node.hsm is None:
        raise ServiceError("not_ready", f"{node.me.id} is not ready: {node.fault or 'starting'}")
    return request.app[SESSIONS_KEY]


def ui_user(request: web.Request):
    """The signed-in user of a /ui/api read (api.app's auth middleware checked the cookie)."""
    return request["user"]


def _asset(path: str, op: str):
    """The handler of one static file (its name is the OpenAPI operationId)."""
    name, ctype = ASSETS[path]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / name).read_bytes(), content_type=ctype, charset="utf-8")

    handler.__name__ = handler.__qualname__ = op
    return handler


async def ui_challenge(request: web.Request) -> web.Response:
    await _ui_body(request, bodies.Empty, EMPTY_BODY)
    policy = node_of(request).policy
    if policy.webauthn is None:
        raise ServiceError("ui_sign_in_refused", "the policy has no [webauthn] table: no passkeys")
    purpose = "register" if request.query.get("purpose") == "register" else "sign_in"
    return json_response({"challenge": sessions_of(request).challenge(purpose),
                          "rp_id": policy.webauthn.rp_id})


async def ui_sign_in(request: web.Request) -> web.Response:
    body = await _ui_body(request, bodies.UISignIn)
    try:
        assertion = WebAuthnAssertion.from_json(msgspec.to_builtins(body.webauthn))
    except PolicyError as exc:  # a field out of its bounds, or not canonical base64url
        raise ServiceError("bad_body", str(exc)[:300]) from None
    token, s = sessions_of(request).sign_in(node_of(request).policy, assertion, body.challenge)
    resp = json_response({"user": s.user, "expires_at": s.expires})
    resp.set_cookie(COOKIE, token, max_age=int(SESSION_TTL_S), path="/ui/", secure=True,
                    httponly=True, samesite="Strict")
    return resp


async def ui_sign_out(request: web.Request) -> web.Response:
    await _ui_body(request, bodies.Empty, EMPTY_BODY)
    request.app[SESSIONS_KEY].sign_out(request.cookies.get(COOKIE))  # needs no store
    resp = json_response({"signed_out": True})
    resp.del_cookie(COOKIE, path="/ui/")
    return resp


def _b64(v: str, what: str, limit: int) -> bytes:
    """A base64url field of a console body (else 400 ``bad_body`` naming it)."""
    try:
        return from_b64url(v, what, limit)
    except PolicyError as exc:
        raise ServiceError("bad_body", str(exc)) from None


async def ui_registration(request: web.Request) -> web.Response:
    body = await _ui_body(request, bodies.UIRegistration)
    if not (len(body.label) <= MAX_LABEL and body.label.isprintable()):
        raise ServiceError("bad_body", f"label is printable text of at most {MAX_LABEL} characters")
    entry = sessions_of(request).registration(
        node_of(request).policy, body.challenge, _b64(body.credential_id, "credential_id", MAX_CREDENTIAL_ID),
        _b64(body.client_data_json, "client_data_json", MAX_ATTESTATION),
        _b64(body.attestation_object, "attestation_object", MAX_ATTESTATION), body.label)
    return json_response({"passkey": entry})


async def ui_me(request: web.Request) -> web.Response:
    user = ui_user(request)
    return json_response({"user": user.id, "roles": list(user.roles)})


async def ui_sign_requests(request: web.Request) -> web.Response:
    """Pending requests (``view=pending``) or decided ones (``view=history``), newest first."""
    view = request.query.get("view", "pending")
    if view not in ("pending", "history"):
        raise ServiceError("bad_status", "view is pending or history")
    statuses = ["pending"] if view == "pending" else ["signed", "rejected", "failed", "expired", "cancelled"]
    query = paging.page_query("sign_requests", request.query.get("limit"), request.query.get("cursor"))
    where = paging.sign_request_filter(status=[",".join(statuses)], key_id=None, initiator=None,
                                       created_after=None, created_before=None)
    # pending: what this person may approve; history: what they may read; filtered in the
    # query, so a page and its cursor are made of readable rows only
    scope = read_scope(node_of(request).policy, ui_user(request).id, view)
    got = node_of(request).signing.list_page(where, query, scope)
    return json_response(with_public_errors(got))


async def _readable(request: web.Request) -> dict:
    """The request of the URL, as its node shows it, if the signed-in person may read it."""
    node = node_of(request)
    req = await node.signing.get(request.match_info["request_id"])
    check_read(node.policy, ui_user(request).id, req)
    return req


async def ui_sign_request(request: web.Request) -> web.Response:
    """One request, with the policy rule it falls under (``rule``)."""
    req = await _readable(request)
    return json_response(with_public_errors({**req, "rule": rule_name(node_of(request).policy, req["key_id"])}))


async def ui_approval_statement(request: web.Request) -> web.Response:
    await _readable(request)
    out = await node_of(request).approval_statements.statement(
        ui_user(request), request.match_info["request_id"], request.query.get("decision"),
        request.query.get("reason", ""))
    return json_response(out)


async def ui_decide(request: web.Request) -> web.Response:
    """A decision: the body's WebAuthn assertion over the statement is what authorises it
    (a key-file signature is refused here: the console posts passkey decisions only)."""
    body = msgspec.to_builtins((await _ui_body(request, bodies.Decide)).approval)
    if not isinstance(body, dict) or "webauthn" not in body:
        raise ServiceError("bad_approval", "the console takes passkey decisions: {statement, webauthn}")
    decision = body.get("statement", {}).get("decision") if isinstance(body.get("statement"), dict) else None
    if decision not in ("approve", "reject"):
        raise ServiceError("bad_decision", "decision is approve or reject")
    await _readable(request)  # before the statement is compared: no field-by-field answer to a non-reader
    view = await node_of(request).signing.decide(ui_user(request), request.match_info["request_id"],
                                                 decision, {"approval": body})
    return json_response(with_public_errors(view))


async def ui_request_audit(request: web.Request) -> web.Response:
    """This node's audit entries about one request."""
    node = node_of(request)
    await _readable(request)
    if node.audit is None:
        raise ServiceError("audit_unavailable", "the audit log is not open")
    got = await asyncio.get_running_loop().run_in_executor(None, node.audit.about, request.match_info["request_id"])
    return json_response({"entries": [{k: e.get(k) for k in ("seq", "time", "actor", "action", "decision", "reason")}
                                      for e in got]})


_CHALLENGE = "Xk9Ok0uFQJ1wGm1tYxAA6aS4m8R3hIV0Bx3lR1cGZx8"
_ASSERTION = {"credential_id": "3q2-7wAAAAAAAAAAAAAAAA", "authenticator_data": "SZYN5YgOjGh0NBcP",
              "client_data_json": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0", "signature": "MEUCIQ"}
_ID = (("view", "string", "pending (default) or history"),)
ROUTES: tuple[Route, ...] = (
    *(Route("GET", "/ui/" + p, _asset(p, op), what, "open", content_type=ctype)
      for p, (_, ctype), op, what in zip(ASSETS, ASSETS.values(), ("ui_page", "ui_enrol", "ui_script", "ui_style"), (
          "The approval console (static, CSP-locked, no inline script)",
          "The enrol page: makes a passkey and shows its policy entry", "The console's script",
          "The console's style"))),
    Route("POST", "/ui/api/challenge", ui_challenge, "A single-use passkey challenge (120 s) for "
          "sign-in, or ?purpose=register for the enrol page", "open", body=bodies.Empty,
          response=bodies.UIChallenge, example={}, responses=(200, 400, 403)),
    Route("POST", "/ui/api/sign-in", ui_sign_in, "Sign in with a passkey assertion over a challenge: sets "
          "the session cookie (HttpOnly, Secure, SameSite=Strict, path /ui/)", "open",
          body=bodies.UISignIn, response=bodies.UISession, responses=(200, 400, 403),
          example={"challenge": _CHALLENGE, "webauthn": _ASSERTION}),
    Route("POST", "/ui/api/sign-out", ui_sign_out, "End the session", "open", body=bodies.Empty, example={},
          response=bodies.UISignedOut),
    Route("POST", "/ui/api/registrations", ui_registration, "Parse a new credential (the enrol page): its "
          "policy entry, for an admin-quorum policy update; nothing is stored", "open",
          body=bodies.UIRegistration, response=bodies.UIPasskeyEntry, responses=(200, 400, 403),
          example={"challenge": _CHALLENGE, "credential_id": "3q2-7wAAAAAAAAAAAAAAAA",
                   "client_data_json": "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0",
                   "attestation_object": "o2NmbXRkbm9uZQ", "label": "laptop"}),
    Route("GET", "/ui/api/me", ui_me, "The signed-in user", "ui", response=bodies.UIMe, responses=(200, 401)),
    Route("GET", "/ui/api/sign-requests", ui_sign_requests, "Pending or decided sign requests of this node",
          "ui", response=bodies.SignRequestList, query=_ID, responses=(200, 400, 401)),
    Route("GET", "/ui/api/sign-requests/{request_id}", ui_sign_request, "One sign request, decoded", "ui",
          response=bodies.UISignRequest, responses=(200, 401, 403, 404)),
    Route("GET", "/ui/api/sign-requests/{request_id}/approval-statement", ui_approval_statement,
          "The statement the signed-in approver's passkey signs", "ui", response=bodies.ApprovalStatement,
          query=(("decision", "string", "approve or reject"),
                 ("reason", "string", "a rejection's reason (signed with it)")),
          responses=(200, 400, 401, 403, 404, 409)),
    Route("POST", "/ui/api/sign-requests/{request_id}/decisions", ui_decide, "Approve or reject with a "
          "passkey assertion over the statement (the assertion authorises it, not the cookie)", "ui",
          body=bodies.Decide, response=bodies.SignRequest, responses=(200, 400, 401, 403, 404, 409),
          example={"approval": {"statement": {"type": "appliance/approval/v1", "decision": "approve",
                                              "approver": "approver"}, "webauthn": _ASSERTION}}),
    Route("GET", "/ui/api/sign-requests/{request_id}/audit", ui_request_audit, "This node's audit "
          "entries about the request", "ui", response=bodies.UIAudit, responses=(200, 401, 403, 404, 503)),
)
