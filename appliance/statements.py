"""A user's signed statements in a client body: the initiator's signed request and an
approver's signed decision, each made by the HTTP-authenticated user (else refused, audited)."""

from __future__ import annotations

from typing import Any

from appliance.canonical import CanonicalError
from appliance.errors import PolicyDenied, ServiceError
from appliance.policy import Approval, PolicyError, SignedRequest
from appliance.recorder import Recorder

DECISION_ROUTES = {"approve": "approval", "reject": "rejection", "cancel": "cancel"}


def signed_request(recorder: Recorder, body: Any, user) -> SignedRequest:
    """The signed request statement of a client body, made by the authenticated user."""
    if body is None:
        raise ServiceError("missing_request", "the body carries the initiator's signed request "
                           "statement (request: {statement, signature}); the client library "
                           "makes it")
    try:
        sr = SignedRequest.from_json(body)
    except (PolicyError, CanonicalError) as exc:
        raise ServiceError("bad_request_statement", str(exc)[:300]) from None
    if sr.request.initiator != user.id:
        raise recorder.refuse(PolicyDenied("initiator_mismatch", "the request is signed for another "
                              "initiator than the authenticated user"), actor=user.id,
                              action="request_refused", key_id=sr.request.key_id, subject=sr.request_id)
    return sr


def parse_approval(recorder: Recorder, body: Any, decision: str, user, *, passkeys: bool = True) -> Approval:
    """The signed decision of a client body (``decision``: the route's kind). ``passkeys``:
    whether a passkey (WebAuthn) decision is taken here (a sign request's; a key operation is
    approved with the admin's key file)."""
    if not isinstance(body, dict) or body.get("approval") is None:
        raise ServiceError("missing_approval", "the body carries the signed decision "
                           "(approval: {statement, signature}); the client library makes it")
    try:
        a = Approval.from_json(body["approval"])
    except (PolicyError, CanonicalError) as exc:
        raise ServiceError("bad_approval", str(exc)[:300]) from None
    if a.webauthn is not None and not passkeys:
        raise ServiceError("bad_approval", "a key operation is approved with the admin's key file "
                           "(passkeys approve sign requests)")
    if a.decision != decision:
        raise ServiceError("decision_mismatch", f"this route takes a {decision!r} decision, "
                           f"the statement says {a.decision!r}")
    if a.approver != user.id:
        raise recorder.refuse(PolicyDenied("approver_mismatch", "the decision is signed for another user "
                              "than the authenticated one"), actor=user.id,
                              action=DECISION_ROUTES[decision], subject=a.request_id)
    return a
