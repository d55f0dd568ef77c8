"""Passkey (WebAuthn) approvals: a user's :class:`Passkey` credentials and the cluster's
:class:`WebAuthnSettings` (``[webauthn]``: ``rp_id`` and the exact ``origins``), parsed from the
policy; :func:`assertion_problem`, the check every node makes of an approval signed with a
passkey (py_webauthn parses clientDataJSON, authenticatorData and the COSE key and verifies the
signature). The sign counter needs the node's store: :func:`counter_problem` is called by the
node with what it recorded (appliance/signing/passkey_counters.py).

A passkey in the policy: ``{id = "<credential id, base64url>", public_key = "<COSE_Key,
base64url>", alg = -7 | -8, label = "..."}``. ``-7`` is ES256 (an EC2 P-256 key), ``-8``
EdDSA (an OKP Ed25519 key); the COSE key's own ``alg`` and curve must agree."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webauthn import verify_authentication_response
from webauthn.helpers import (
    decode_credential_public_key,
    parse_authenticator_data,
    parse_client_data_json,
)
from webauthn.helpers.cose import COSECRV, COSEKTY
from webauthn.helpers.exceptions import InvalidAuthenticationResponse
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorAssertionResponse,
    ClientDataType,
)

from appliance.policy.grammar import PolicyError, want
from appliance_client.statements import (
    MAX_CREDENTIAL_ID,
    Approval,
    WebAuthnAssertion,
    b64url,
    from_b64url,
)

ES256, EDDSA = -7, -8
PASSKEY_ALGS = {ES256: (COSEKTY.EC2, COSECRV.P256), EDDSA: (COSEKTY.OKP, COSECRV.ED25519)}
MAX_COSE_KEY = 512
MAX_LABEL = 64
MAX_ORIGINS = 64
MAX_PASSKEYS = 16  # per user

@dataclass(frozen=True)
class Passkey:
    id: str            # the credential id, base64url (as navigator.credentials returns it)
    public_key: bytes  # the COSE_Key
    alg: int           # -7 ES256, -8 EdDSA
    label: str

    @classmethod
    def parse(cls, m: Any, where: str) -> Passkey:
        want(isinstance(m, Mapping) and set(m) <= {"id", "public_key", "alg", "label"},
             f"{where}: a passkey is {{id, public_key, alg, label}}")
        for k in ("id", "public_key", "alg"):
            want(k in m, f"{where}: passkey {k} is missing")
        from_b64url(m["id"], f"{where}: passkey id", MAX_CREDENTIAL_ID)
        cose = from_b64url(m["public_key"], f"{where}: passkey public_key", MAX_COSE_KEY)
        alg = m["alg"]
        want(type(alg) is int and alg in PASSKEY_ALGS,
             f"{where}: passkey alg is -7 (ES256, P-256) or -8 (EdDSA, Ed25519)")
        try:
            key = decode_credential_public_key(cose)
        except Exception:  # noqa: BLE001  (the library raises several kinds on bad CBOR)
            raise PolicyError(f"{where}: passkey public_key is not a COSE_Key") from None
        kty, crv = PASSKEY_ALGS[alg]
        want(getattr(key, "kty", None) == kty and getattr(key, "crv", None) == crv
             and int(key.alg) == alg,
             f"{where}: passkey public_key is not a {'P-256 ES256' if alg == ES256 else 'Ed25519 EdDSA'} "
             "COSE_Key (its kty, crv and alg must match alg)")
        label = m.get("label", "")
        want(isinstance(label, str) and len(label) <= MAX_LABEL and label.isprintable(),
             f"{where}: passkey label is printable text of at most {MAX_LABEL} characters")
        return cls(m["id"], cose, alg, label)

    def to_json(self) -> dict:
        return {"id": self.id, "public_key": b64url(self.public_key), "alg": self.alg,
                "label": self.label}

    @property
    def name(self) -> str:
        """How audit entries name it: the label and the id's first 8 characters."""
        return f"passkey {self.label or '-'} ({self.id[:8]})"


@dataclass(frozen=True)
class WebAuthnSettings:
    rp_id: str
    origins: tuple[str, ...]

    @classmethod
    def parse(cls, m: Any) -> WebAuthnSettings:
        want(isinstance(m, Mapping) and set(m) <= {"rp_id", "origins"},
             "[webauthn] has rp_id and origins")
        rp = m.get("rp_id")
        want(isinstance(rp, str) and 0 < len(rp) <= 253 and rp.isascii() and rp == rp.lower()
             and all(c.isalnum() or c in ".-" for c in rp),
             "[webauthn].rp_id is a lower-case host name")
        origins = m.get("origins")
        want(isinstance(origins, list) and 0 < len(origins) <= MAX_ORIGINS
             and all(isinstance(o, str) and o.startswith("https://") and len(o) <= 300
                     and o.isascii() and o.isprintable() and "/" not in o[len("https://"):]
                     for o in origins),
             "[webauthn].origins is a list of exact origins (https://host[:port], no path)")
        return cls(rp, tuple(sorted(set(origins))))

    def to_json(self) -> dict:
        return {"rp_id": self.rp_id, "origins": list(self.origins)}


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def assertion_problem(settings: WebAuthnSettings | None, passkeys: tuple[Passkey, ...],
                      approval: Approval) -> tuple[Passkey | None, Refusal | None]:
    """Check a passkey approval's assertion (all but the sign counter): the credential is
    one of the approver's, clientData is a ``webauthn.get`` whose challenge is SHA-256 of the
    statement and whose origin is one of ``[webauthn].origins``, rpIdHash is SHA-256(rp_id),
    UP and UV are set, and the signature verifies under the policy's key. Returns the
    passkey (when known) and the refusal, or None when sound."""
    wa = approval.webauthn
    assert wa is not None
    key = next((p for p in passkeys if p.id == wa.credential), None)
    if key is None or settings is None:
        return None, Refusal("webauthn_unknown_credential",
                             f"{approval.approver} has no passkey {wa.credential[:8]} in the policy")
    try:
        client = parse_client_data_json(wa.client_data_json)
    except Exception:  # noqa: BLE001
        return key, Refusal("webauthn_bad_challenge", "clientDataJSON does not parse")
    if client.type != ClientDataType.WEBAUTHN_GET or client.challenge != approval.challenge():
        return key, Refusal("webauthn_bad_challenge", "the assertion's challenge is not SHA-256 "
                            "of this approval statement (or its type is not webauthn.get)")
    if client.origin not in settings.origins:
        return key, Refusal("webauthn_bad_origin", f"origin {client.origin[:100]!r} is not one "
                            "of [webauthn].origins")
    try:
        auth = parse_authenticator_data(wa.authenticator_data)
    except Exception:  # noqa: BLE001
        return key, Refusal("webauthn_bad_rp", "authenticatorData does not parse")
    if auth.rp_id_hash != hashlib.sha256(settings.rp_id.encode()).digest():
        return key, Refusal("webauthn_bad_rp", "rpIdHash is not SHA-256 of [webauthn].rp_id")
    if not (auth.flags.up and auth.flags.uv):
        return key, Refusal("webauthn_user_not_verified", "the authenticator did not verify "
                            "the user (UP and UV flags must be set)")
    try:
        verify_authentication_response(
            credential=_credential(wa), expected_challenge=approval.challenge(),
            expected_rp_id=settings.rp_id, expected_origin=list(settings.origins),
            credential_public_key=key.public_key, credential_current_sign_count=0,
            require_user_verification=True)
    except (InvalidAuthenticationResponse, ValueError, TypeError):
        return key, Refusal("webauthn_bad_signature", f"the assertion is not signed by "
                            f"{approval.approver}'s {key.name}")
    return key, None


def sign_count(wa: WebAuthnAssertion) -> int:
    """The authenticator's signature counter (0: it keeps none)."""
    return parse_authenticator_data(wa.authenticator_data).sign_count


def _credential(wa: WebAuthnAssertion) -> AuthenticationCredential:
    return AuthenticationCredential(
        id=wa.credential, raw_id=wa.credential_id,
        response=AuthenticatorAssertionResponse(
            client_data_json=wa.client_data_json, authenticator_data=wa.authenticator_data,
            signature=wa.signature))
