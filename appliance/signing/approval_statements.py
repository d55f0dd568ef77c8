"""The approval statement a passkey signs: ``GET /v1/sign-requests/{id}/approval-statement``.

A page cannot sign a statement with a key file; it asks the node for the exact statement of
the caller's decision on a request (bound to the request as the node shows it, dated now, valid
for the rule's approval TTL), has the authenticator sign ``challenge`` = SHA-256 of its
canonical bytes (``navigator.credentials.get({publicKey: {challenge, rpId,
allowCredentials}})``), and posts ``{approval: {statement, webauthn}}`` to the approvals (or
rejections) route. Nothing is stored here: the node that receives the decision, and every
signer, checks it as any other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from appliance.errors import ServiceError
from appliance.policy import SIGN, Approval, PolicyError, SignedRequest, summary_hash
from appliance.policy.passkeys import WebAuthnSettings
from appliance.runtime import Runtime
from appliance.signing import states
from appliance_client.statements import b64url, check_reason

#: the decisions a page makes with a passkey
PASSKEY_DECISIONS = ("approve", "reject")


class ApprovalStatements:
    def __init__(self, rt: Runtime, read: Callable[[str], Awaitable[dict]]) -> None:
        self.rt = rt
        self.read = read  # SignRequests.get: the request as its node shows it (forwarded if elsewhere)

    async def statement(self, user, request_id: str, decision: str | None, reason: str = "") -> dict:
        """``statement`` (the approval statement object; a rejection's ``reason`` in it),
        ``challenge`` (base64url SHA-256 of its canonical bytes), ``credential_ids`` (the
        user's passkeys) and ``rp_id``."""
        if decision not in PASSKEY_DECISIONS:
            raise ServiceError("bad_decision", "decision is approve or reject")
        try:
            check_reason(reason, decision)
        except PolicyError as exc:
            raise ServiceError("bad_reason", str(exc)) from None
        view = await self.read(request_id)
        if view.get("status") != states.PENDING or "request" not in view:
            raise ServiceError("not_pending", f"the request is {view.get('status')}; it does not "
                               "wait for a decision")
        try:
            sr = SignedRequest.from_json(view["request"])
        except PolicyError:  # pragma: no cover - the node stored it checked
            raise ServiceError("not_found", "unknown sign request") from None
        policy = self.rt.policy
        now = int(self.rt.clock.now())
        ttl = (policy.rule_for(sr.request.key_id).approval_ttl_s if sr.request.action == SIGN
               else policy.key_changes.approval_ttl_s)
        # what the approver is shown: the decoded summary and network of the view, this node's
        # own decode (a request held elsewhere is decoded here: appliance/signing/forwarded.py)
        shown = ((summary_hash(view.get("decoded")), view.get("network")) if sr.request.action == SIGN
                 else (None, None))
        a = Approval(sr.request.binding(*shown), user.id, decision, now, now + ttl, reason=reason)
        passkeys = policy.user(user.id).passkeys if policy.user(user.id) is not None else ()
        settings: WebAuthnSettings | None = policy.webauthn
        return {"statement": a.statement(), "challenge": b64url(a.challenge()),
                "credential_ids": [p.id for p in passkeys],
                "rp_id": settings.rp_id if settings is not None else None}
