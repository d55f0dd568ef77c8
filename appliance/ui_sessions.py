"""The approval console's sign-in (issue 17): a passkey assertion over a server challenge
(single use, short TTL) opens a short-lived session; the store is in memory, with the clock
injected. Sessions only read: every decision is a WebAuthn assertion over its approval
statement, checked by the signing service and by every signer, never by this store. A
sign-in assertion's signature counter is held to the approvals' rule
(:func:`appliance.passkey_counters.check_counter`, in the node's replay store): a non-zero
counter must increase, so a cloned authenticator is refused (``webauthn_counter_replay``,
audited) at sign-in as it is at approval.

Registration (the enrol page) is parsed here too, with py_webauthn: the page shows the policy
entry of a new credential for the admins; nothing is stored (a credential enters the policy
only through an admin-quorum policy update)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers import decode_credential_public_key
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    RegistrationCredential,
)

from appliance.errors import PolicyDenied, ServiceError
from appliance.passkey_counters import check_counter
from appliance.ports import Clock, Late, ReplayStore
from appliance.recorder import Recorder
from appliance_client.statements import WebAuthnAssertion, b64url, from_b64url

CHALLENGE_TTL_S = 120.0
SESSION_TTL_S = 900.0
MAX_CHALLENGES = 1024   # outstanding sign-in / registration challenges (oldest dropped)
MAX_SESSIONS = 1024
MAX_SESSIONS_PER_USER = 8  # a user's next sign-in ends their own oldest session, nobody else's
MAX_ATTESTATION = 4096
COOKIE = "appliance_ui"


@dataclass(frozen=True)
class Session:
    user: str
    credential: str
    expires: float


class UISessions:
    """Challenges and sessions of one node's console (lost on restart: sign in again)."""

    def __init__(self, clock: Clock, replay: Late[ReplayStore], recorder: Recorder, *,
                 challenge_ttl_s: float = CHALLENGE_TTL_S, session_ttl_s: float = SESSION_TTL_S) -> None:
        self.clock = clock
        self.replay = replay        # the passkeys' sign counters, shared with the approvals' check
        self.recorder = recorder    # audits a refused counter
        self.challenge_ttl_s = challenge_ttl_s
        self.session_ttl_s = session_ttl_s
        self._challenges: dict[str, tuple[str, float]] = {}   # b64url challenge -> (purpose, expiry)
        self._sessions: dict[str, Session] = {}

    def _prune(self) -> None:
        now = self.clock.now()
        for k in [k for k, (_, exp) in self._challenges.items() if exp <= now]:
            del self._challenges[k]
        for k in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[k]

    def challenge(self, purpose: str) -> str:
        """A fresh challenge (base64url of 32 random bytes) for ``sign_in`` or ``register``."""
        self._prune()
        while len(self._challenges) >= MAX_CHALLENGES:
            del self._challenges[next(iter(self._challenges))]
        c = b64url(secrets.token_bytes(32))
        self._challenges[c] = (purpose, self.clock.now() + self.challenge_ttl_s)
        return c

    def _take(self, challenge: str, purpose: str) -> None:
        """Spend a challenge: once only, before its expiry, for the purpose it was made for."""
        self._prune()
        got = self._challenges.pop(challenge, None)
        if got is None or got[0] != purpose:
            raise ServiceError("ui_bad_challenge", "the challenge is unknown, spent or expired: "
                               "ask for a new one")

    def sign_in(self, policy, assertion: WebAuthnAssertion, challenge: str) -> tuple[str, Session]:
        """Check a sign-in assertion (the credential is a passkey of a user in ``policy``,
        clientData is a ``webauthn.get`` over ``challenge`` from one of the policy's origins,
        UV set, the signature verifies, a non-zero sign counter above every one this node
        accepted for the passkey); returns the new session's token and the session."""
        self._take(challenge, "sign_in")
        settings = policy.webauthn
        owner = next(((u, p) for u in policy.users for p in u.passkeys if p.id == assertion.credential), None)
        if owner is None or settings is None:
            raise ServiceError("ui_sign_in_refused", "this passkey is not in the policy")
        user, key = owner
        try:
            verify_authentication_response(
                credential=AuthenticationCredential(
                    id=key.id, raw_id=assertion.credential_id,
                    response=AuthenticatorAssertionResponse(
                        client_data_json=assertion.client_data_json,
                        authenticator_data=assertion.authenticator_data,
                        signature=assertion.signature)),
                expected_challenge=from_b64url(challenge, "challenge", 64),
                expected_rp_id=settings.rp_id, expected_origin=list(settings.origins),
                credential_public_key=key.public_key, credential_current_sign_count=0,
                require_user_verification=True)
        except InvalidAuthenticationResponse as exc:
            raise ServiceError("ui_sign_in_refused", f"the sign-in assertion is refused: {exc}"[:300]) from None
        try:
            check_counter(self.replay, user.id, key, assertion)
        except PolicyDenied as exc:
            raise self.recorder.refuse(exc, actor=user.id, action="ui_sign_in",
                                       note=f"{user.id} by {key.name}") from None
        mine = [k for k, x in self._sessions.items() if x.user == user.id]  # oldest first
        for k in mine[:max(0, len(mine) - MAX_SESSIONS_PER_USER + 1)]:
            del self._sessions[k]
        if len(self._sessions) >= MAX_SESSIONS:  # never another person's session
            raise ServiceError("ui_sessions_full", "this node holds as many console sessions as it keeps: "
                               "try again when one ends")
        token = secrets.token_urlsafe(32)
        s = Session(user.id, key.id, self.clock.now() + self.session_ttl_s)
        self._sessions[token] = s
        return token, s

    def session(self, token: str | None) -> Session:
        """The live session of a cookie's token (else ``ui_session_required``)."""
        self._prune()
        s = self._sessions.get(token or "")
        if s is None:
            raise ServiceError("ui_session_required", "sign in with your passkey (no session, "
                               "or it expired)")
        return s

    def sign_out(self, token: str | None) -> None:
        self._sessions.pop(token or "", None)

    def registration(self, policy, challenge: str, credential_id: bytes, client_data_json: bytes,
                     attestation_object: bytes, label: str) -> dict:
        """The policy entry of a newly created credential (``navigator.credentials.create``
        over ``challenge``), for the admins to add through a policy update."""
        self._take(challenge, "register")
        settings = policy.webauthn
        if settings is None:
            raise ServiceError("ui_registration_refused", "the policy has no [webauthn] table")
        try:
            got = verify_registration_response(
                credential=RegistrationCredential(
                    id=b64url(credential_id), raw_id=credential_id,
                    response=AuthenticatorAttestationResponse(client_data_json=client_data_json,
                                                              attestation_object=attestation_object)),
                expected_challenge=from_b64url(challenge, "challenge", 64),
                expected_rp_id=settings.rp_id, expected_origin=list(settings.origins),
                require_user_verification=True)
        except InvalidRegistrationResponse as exc:
            raise ServiceError("ui_registration_refused", f"the registration is refused: {exc}"[:300]) from None
        alg = int(decode_credential_public_key(got.credential_public_key).alg)
        return {"id": b64url(got.credential_id), "public_key": b64url(got.credential_public_key),
                "alg": alg, "label": label}

