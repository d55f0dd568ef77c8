"""Signed statements: :class:`Request` (an initiator's), :class:`Approval` (a decision on
one), :class:`CertUpdate` (a pinned TLS certificate's replacement), and the client-side
helpers that make them. The node (:mod:`appliance.policy`) reads and checks statements with
these same classes: one format for who signs and who checks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from appliance_client.canonical import CanonicalError, canonical_hash, canonical_json
from appliance_client.grammar import (
    ACTIONS,
    APPROVAL_TYPE,
    BITCOIN_NETWORKS,
    CERT_UPDATE_TYPE,
    DECISIONS,
    DEFAULT_SCHEME,
    ED25519,
    HEX32,
    NONCE,
    PAYLOAD_TYPES,
    REQUEST_TYPE,
    SCHEMES,
    SIGN,
    PolicyError,
    canonical_ok,
    check_id,
    check_int,
    check_time,
    normalize_path,
    only_fields,
    parse_path,
    parse_statement_json,
    sig_hex,
    sign_message,
    want,
)
from appliance_client.ids import is_id
from appliance_client.tls import fingerprint_pem


_REQUEST_ID_CONTEXT = b"threshold-appliance/request-id/v2\x00"
_CONTENT_CONTEXT = b"threshold-appliance/request-content/v1\x00"


def _check_params(action: str, params: Any) -> dict | None:
    if action == SIGN:
        if params is not None:
            raise PolicyError("a sign request has no params")
        return None
    if not isinstance(params, dict):
        raise PolicyError(f"a {action} request has params (an object)")
    canonical_ok(params, "params")
    if action == "keygen":  # scheme: absent for ecdsa-secp256k1 (the default); signed when given
        only_fields(params, ("threshold", "nodes", "scheme"), "keygen params")
        want(params.get("scheme", DEFAULT_SCHEME) in SCHEMES,
             f"params.scheme must be one of {', '.join(SCHEMES)}")
    if action in ("keygen", "reshare"):
        if action == "reshare":
            only_fields(params, ("threshold", "nodes"), f"{action} params")
        check_int(params.get("threshold"), "params.threshold", 1, 1000)
        nodes = params.get("nodes")
        if nodes is not None:
            want(isinstance(nodes, list) and all(isinstance(n, str) for n in nodes),
                 "params.nodes must be a list of node ids")
    elif action == "import":
        # scheme: absent for an ECDSA key (a v1 bundle), named for a FROST key (a v2 bundle)
        only_fields(params, ("bundle_hash", "public_key", "threshold", "nodes", "scheme"), "import params")
        scheme = params.get("scheme", DEFAULT_SCHEME)
        want("scheme" not in params or scheme in SCHEMES[1:],
             f"params.scheme of an import must be one of {', '.join(SCHEMES[1:])} (absent for {DEFAULT_SCHEME})")
        want(isinstance(params.get("bundle_hash"), str) and HEX32.match(params["bundle_hash"]) is not None,
             "params.bundle_hash must be 64 lowercase hex characters")
        want(isinstance(params.get("public_key"), str) and len(params["public_key"]) == (64 if scheme == ED25519 else 66),
             "params.public_key must be a compressed public key in hex (an ed25519 key's 32 bytes)")
        check_int(params.get("threshold"), "params.threshold", 1, 1000)
        nodes = params.get("nodes")
        want(isinstance(nodes, list) and all(isinstance(n, str) for n in nodes),
             "params.nodes must be a list of node ids")
    else:
        only_fields(params, (), f"{action} params")
    return params


@dataclass(frozen=True)
class Request:
    """What an initiator asks for. Sign: ``digest`` (hex, 32 bytes) xor ``payload_type`` +
    ``payload_hash`` (hex SHA-256 of the payload bytes), and ``derivation_path`` (canonical,
    ``m`` for the key itself). Key changes: ``params`` (keygen/reshare: ``threshold``,
    ``nodes``; refresh: ``{}``), ``key_id`` None for a keygen."""

    cluster_id: str
    policy_hash: str
    action: str
    key_id: str | None
    initiator: str
    nonce: str
    created_at: int
    expires_at: int
    derivation_path: str | None = None
    digest: str | None = None
    payload_type: str | None = None
    payload_hash: str | None = None
    params: dict | None = None
    #: the Bitcoin network a PSBT is read for (a PSBT does not say); None: the key rule's
    network: str | None = None

    def __post_init__(self) -> None:
        check_id(self.cluster_id, "cluster_id")
        want(isinstance(self.policy_hash, str) and HEX32.match(self.policy_hash) is not None,
             "policy_hash must be 64 lowercase hex characters")
        want(self.action in ACTIONS, f"action must be one of {', '.join(ACTIONS)}")
        check_id(self.initiator, "initiator")
        want(isinstance(self.nonce, str) and NONCE.match(self.nonce) is not None,
             "nonce must be 1-128 characters of [A-Za-z0-9._:+/=-]")
        check_time(self.created_at, "created_at")
        check_time(self.expires_at, "expires_at")
        want(self.expires_at > self.created_at, "expires_at must be after created_at")
        _check_params(self.action, self.params)
        want(self.network is None or (self.action == SIGN and self.network in BITCOIN_NETWORKS),
             f"network is one of {', '.join(BITCOIN_NETWORKS)} (sign requests only)")
        if self.action == SIGN:
            check_id(self.key_id, "key_id")
            want(isinstance(self.derivation_path, str), "a sign request has a derivation_path")
            parse_path(self.derivation_path)
            has_digest = self.digest is not None
            has_payload = self.payload_type is not None or self.payload_hash is not None
            want(has_digest != has_payload, "a sign request has a digest or a payload, not both")
            if has_digest:
                want(isinstance(self.digest, str) and HEX32.match(self.digest) is not None,
                     "digest must be 64 lowercase hex characters (32 bytes)")
            else:
                want(self.payload_type in PAYLOAD_TYPES,
                     f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}")
                want(isinstance(self.payload_hash, str)
                     and HEX32.match(self.payload_hash) is not None,
                     "payload_hash must be 64 lowercase hex characters")
        else:
            if self.action in ("keygen", "import"):
                want(self.key_id is None, f"a {self.action} request has no key_id")
            else:
                check_id(self.key_id, "key_id")
            want(self.derivation_path is None and self.digest is None
                 and self.payload_type is None and self.payload_hash is None,
                 f"a {self.action} request has no path, digest or payload")

    def statement(self) -> dict:
        return {
            "type": REQUEST_TYPE, "cluster_id": self.cluster_id, "policy_hash": self.policy_hash,
            "action": self.action, "key_id": self.key_id, "initiator": self.initiator,
            "nonce": self.nonce, "created_at": self.created_at, "expires_at": self.expires_at,
            "derivation_path": self.derivation_path, "digest": self.digest,
            "payload_type": self.payload_type, "payload_hash": self.payload_hash,
            "params": self.params, "network": self.network,
        }

    def message(self) -> bytes:
        """The bytes the initiator signs (RFC 8785 JSON of :meth:`statement`)."""
        return canonical_json(self.statement())

    @property
    def request_id(self) -> str:
        """``req_`` + 32 hex characters of SHA-256 over (cluster, initiator, nonce): the
        idempotency key. A retry with the same nonce (signed again, with a fresh
        ``created_at``, by a new process) has the same id on every node, so every node's
        once-per-request records (reservations, "took part") hold it to one request; what the
        request asks for is compared separately (:meth:`content_hash`)."""
        key = canonical_json({"cluster_id": self.cluster_id, "initiator": self.initiator, "nonce": self.nonce})
        return "req_" + hashlib.sha256(_REQUEST_ID_CONTEXT + key).hexdigest()[:32]

    def content_hash(self) -> str:
        """SHA-256 (hex) of what defines "the same request": the statement without
        ``created_at``, ``expires_at`` (a retry signs again, later) and ``policy_hash`` (a retry
        after a policy update names the new one). Action, key, digest or payload hash,
        derivation path, params and network are all in it."""
        s = self.statement()
        for k in ("created_at", "expires_at", "policy_hash"):
            del s[k]
        return hashlib.sha256(_CONTENT_CONTEXT + canonical_json(s)).hexdigest()

    @classmethod
    def from_statement(cls, s: Any) -> Request:
        if not isinstance(s, Mapping):
            raise PolicyError("a request statement is an object")
        fields = set(cls.__dataclass_fields__) | {"type"}
        want(set(s) == fields, "a request statement has exactly the fields "
             + ", ".join(sorted(fields)))
        want(s["type"] == REQUEST_TYPE, f"statement type must be {REQUEST_TYPE}")
        try:
            return cls(**{k: s[k] for k in cls.__dataclass_fields__})
        except TypeError:  # pragma: no cover - fields checked above
            raise PolicyError("bad request statement") from None

    def binding(self, summary: str | None = None, network: str | None = None) -> dict:
        """The fields an approval repeats: the request's, and (a sign request) what the
        approver was shown of it: ``summary`` (:func:`summary_hash` of the decoded summary)
        and the ``network`` it was decoded for (None for a key operation)."""
        return {"cluster_id": self.cluster_id, "policy_hash": self.policy_hash,
                "request_id": self.request_id, "action": self.action, "key_id": self.key_id,
                "derivation_path": self.derivation_path, "digest": self.digest,
                "payload_type": self.payload_type, "payload_hash": self.payload_hash,
                "params": self.params, "initiator": self.initiator,
                "request_expires_at": self.expires_at, "network": network, "summary_hash": summary}



@dataclass(frozen=True)
class SignedRequest:
    request: Request
    signature: bytes

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def verify(self, policy: Any) -> bool:
        """Signed by its initiator as ``policy`` (:class:`appliance.policy.Policy`) knows them."""
        user = policy.user(self.request.initiator)
        return user is not None and user.key.verify(self.request.message(), self.signature)

    def to_json(self) -> dict:
        return {"statement": self.request.statement(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: Any) -> SignedRequest:
        if isinstance(data, (bytes, str)):
            data = parse_statement_json(data)
        want(isinstance(data, Mapping) and set(data) == {"statement", "signature"},
             "a signed request is {statement, signature}")
        return cls(Request.from_statement(data["statement"]), sig_hex(data["signature"]))


APPROVAL_BINDING = ("cluster_id", "policy_hash", "request_id", "action", "key_id",
                     "derivation_path", "digest", "payload_type", "payload_hash", "params",
                     "initiator", "request_expires_at", "network", "summary_hash")
#: what an approval binds of what its approver was shown (every signer recomputes both from
#: its own decode of the payload)
SHOWN_FIELDS = ("summary_hash", "network")  # the order of Request.binding's arguments


def summary_hash(decoded: Any) -> str | None:
    """SHA-256 (hex) of the RFC 8785 JSON of a request's decoded summary (the ``decoded``
    object a node shows: what the approver saw); None when there is none (a key operation).
    A summary outside the canonical subset (an integer beyond 2**53) hashes its sorted compact
    JSON instead, as :func:`payload_hash` does for typed data."""
    if decoded is None:
        return None
    plain = json.loads(json.dumps(decoded))  # tuples as lists: the stored form
    try:
        data = canonical_json(plain)
    except CanonicalError:
        data = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Approval:
    """One person's signed decision (``approve``, ``reject``, or the initiator's
    ``cancel``) on one request: the request's binding fields, who, what, when, until when.
    Signed with the person's key file (``signature``) or with a passkey (``webauthn``: a
    WebAuthn assertion whose challenge is :meth:`challenge`)."""

    binding: dict
    approver: str
    decision: str
    signed_at: int
    expires_at: int
    signature: bytes = b""
    webauthn: WebAuthnAssertion | None = None
    #: a rejection's reason, part of what the approver signs ("" : none, and the statement
    #: has no ``reason`` field, as before reasons existed)
    reason: str = ""

    def __post_init__(self) -> None:
        want(isinstance(self.binding, dict) and set(self.binding) == set(APPROVAL_BINDING),
             "approval binding fields are " + ", ".join(APPROVAL_BINDING))
        check_id(self.approver, "approver")
        check_id(self.binding["request_id"], "request_id")
        want(self.decision in DECISIONS, f"decision must be one of {', '.join(DECISIONS)}")
        check_time(self.signed_at, "signed_at")
        check_time(self.expires_at, "expires_at")
        want(self.expires_at > self.signed_at, "expires_at must be after signed_at")
        check_reason(self.reason, self.decision)
        canonical_ok(self.statement(), "approval")

    @property
    def request_id(self) -> str:
        return self.binding["request_id"]

    def statement(self) -> dict:
        out = {"type": APPROVAL_TYPE, **self.binding, "approver": self.approver,
               "decision": self.decision, "signed_at": self.signed_at,
               "expires_at": self.expires_at}
        if self.reason:
            out["reason"] = self.reason
        return out

    def message(self) -> bytes:
        """The bytes the approver signs (RFC 8785 JSON of :meth:`statement`)."""
        return canonical_json(self.statement())

    def challenge(self) -> bytes:
        """A passkey's challenge: SHA-256 of :meth:`message` (the page passes it to
        ``navigator.credentials.get``; the assertion's clientDataJSON carries it base64url)."""
        return hashlib.sha256(self.message()).digest()

    def to_json(self) -> dict:
        if self.webauthn is not None:
            return {"statement": self.statement(), "webauthn": self.webauthn.to_json()}
        return {"statement": self.statement(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: Any) -> Approval:
        if isinstance(data, (bytes, str)):
            data = parse_statement_json(data)
        want(isinstance(data, Mapping) and set(data) in ({"statement", "signature"},
                                                         {"statement", "webauthn"}),
             "an approval is {statement, signature} or {statement, webauthn}")
        a = cls.from_statement(data["statement"])
        if "webauthn" in data:
            return replace(a, webauthn=WebAuthnAssertion.from_json(data["webauthn"]))
        return replace(a, signature=sig_hex(data["signature"]))

    @classmethod
    def from_statement(cls, s: Any) -> Approval:
        """The unsigned decision of a statement object (what
        ``GET /v1/sign-requests/{id}/approval-statement`` returns under ``statement``); a
        rejection's statement may also carry ``reason``."""
        fields = set(APPROVAL_BINDING) | {"type", "approver", "decision", "signed_at",
                                         "expires_at"}
        want(isinstance(s, Mapping) and set(s) in (fields, fields | {"reason"}),
             "an approval statement has exactly the fields " + ", ".join(sorted(fields))
             + " (and reason, for a rejection)")
        want(s["type"] == APPROVAL_TYPE, f"statement type must be {APPROVAL_TYPE}")
        want("reason" not in s or (isinstance(s["reason"], str) and s["reason"] != ""),
             "reason is text of 1 to 200 characters")
        return cls({k: s[k] for k in APPROVAL_BINDING}, s["approver"], s["decision"],
                   s["signed_at"], s["expires_at"], reason=s.get("reason", ""))


MAX_REASON = 200  # characters of a rejection's reason


def check_reason(reason: Any, decision: str) -> None:
    """A rejection's reason: "" (none), or 1 to 200 printable characters (letters of any
    script, digits, punctuation, spaces; no control or format characters, no line breaks) that
    neither start nor end with a space. Only a rejection carries one."""
    want(isinstance(reason, str), "reason is text")
    if reason == "":
        return
    want(decision == "reject", "only a rejection carries a reason")
    want(len(reason) <= MAX_REASON and reason.isprintable() and reason == reason.strip(),
         f"reason is 1 to {MAX_REASON} printable characters, no line breaks, not starting "
         "or ending with a space")


#: bounds of a passkey assertion's fields (bytes, decoded)
MAX_CREDENTIAL_ID = 1023  # WebAuthn: a credential id is at most 1023 bytes
MAX_AUTHENTICATOR_DATA = 1024  # rpIdHash, flags, counter (37 bytes) and small extensions
MAX_CLIENT_DATA_JSON = 4096
MAX_ASSERTION_SIGNATURE = 256  # an ES256 DER signature is at most 72 bytes, Ed25519 64


def b64url(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn writes binary fields."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(v: Any, what: str, limit: int) -> bytes:
    """Unpadded base64url text of at most ``limit`` bytes; PolicyError naming ``what``."""
    want(isinstance(v, str) and 0 < len(v) <= (limit * 4 + 2) // 3
         and all(c.isascii() and (c.isalnum() or c in "-_") for c in v),
         f"{what} is unpadded base64url (at most {limit} bytes)")
    try:
        raw = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
    except (binascii.Error, ValueError):
        raise PolicyError(f"{what} is unpadded base64url") from None
    want(b64url(raw) == v, f"{what} is not canonical base64url")
    return raw


@dataclass(frozen=True)
class WebAuthnAssertion:
    """What ``navigator.credentials.get`` returns for an approval (raw bytes; base64url in
    JSON): the credential's id, authenticatorData, clientDataJSON and the signature over
    authenticatorData || SHA-256(clientDataJSON)."""

    credential_id: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes

    FIELDS = ("credential_id", "authenticator_data", "client_data_json", "signature")

    def to_json(self) -> dict:
        return {k: b64url(getattr(self, k)) for k in self.FIELDS}

    @property
    def credential(self) -> str:
        """The credential id as the policy names it (base64url)."""
        return b64url(self.credential_id)

    @classmethod
    def from_json(cls, data: Any) -> WebAuthnAssertion:
        want(isinstance(data, Mapping) and set(data) == set(cls.FIELDS),
             "a webauthn assertion has exactly the fields " + ", ".join(cls.FIELDS))
        limits = (MAX_CREDENTIAL_ID, MAX_AUTHENTICATOR_DATA, MAX_CLIENT_DATA_JSON,
                  MAX_ASSERTION_SIGNATURE)
        return cls(*(from_b64url(data[k], f"webauthn.{k}", n)
                     for k, n in zip(cls.FIELDS, limits)))


# -- client-side helpers -------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_hex(16)


def payload_hash(payload_type: str, payload: Any) -> str:
    """The hex SHA-256 a request carries for a payload, over its bytes: ``psbt`` the decoded
    PSBT (base64 text or raw bytes), ``eth_tx`` the serialized transaction (hex text or raw
    bytes), ``eip712`` the RFC 8785 JSON of the typed-data object (or the exact JSON bytes if
    given as bytes/str), ``message`` and ``eip191`` the text's UTF-8 bytes."""
    if payload_type not in PAYLOAD_TYPES:
        raise PolicyError(f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}")
    if payload_type == "eip712" and isinstance(payload, Mapping):
        try:
            data = canonical_json(payload)
        except CanonicalError:  # integers beyond 2**53: sorted compact JSON instead
            data = json.dumps(payload, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode()
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
    elif isinstance(payload, str):
        try:
            if payload_type == "psbt":
                data = base64.b64decode(payload, validate=True)
            elif payload_type == "eth_tx":
                data = bytes.fromhex(payload.removeprefix("0x"))
            else:
                data = payload.encode("utf-8")
        except (binascii.Error, ValueError):
            raise PolicyError(f"{payload_type} payload does not decode") from None
    else:
        raise PolicyError("a payload is bytes, text, or (eip712) a JSON object")
    return hashlib.sha256(data).hexdigest()


def make_request(
    private_key: Any, *, cluster_id: str, policy_hash: str, initiator: str, now: float,
    ttl_s: int, action: str = SIGN, key_id: str | None = None,
    digest: bytes | str | None = None, derivation_path: str | None = None,
    payload: bytes | None = None, payload_type: str | None = None,
    params: dict | None = None, nonce: str | None = None, network: str | None = None,
) -> SignedRequest:
    """Build and sign a request (what the client library does for ``request_signature``,
    ``create_key``, ``refresh``, ``reshare``). ``nonce`` is the idempotency key."""
    created = int(now)
    if isinstance(digest, (bytes, bytearray)):
        digest = bytes(digest).hex()
    req = Request(
        cluster_id=cluster_id, policy_hash=policy_hash, action=action, key_id=key_id,
        initiator=initiator, nonce=nonce or new_nonce(), created_at=created,
        expires_at=created + int(ttl_s),
        derivation_path=normalize_path(derivation_path) if action == SIGN else None,
        digest=digest.lower() if isinstance(digest, str) else None,
        payload_type=payload_type if payload is not None else None,
        payload_hash=payload_hash(payload_type, payload) if payload is not None else None,
        params=params if action != SIGN else None,
        network=network if action == SIGN else None,
    )
    return SignedRequest(req, sign_message(private_key, req.message()))


def make_approval(
    private_key: Any, request: Request, *, approver: str, now: float, ttl_s: int,
    decision: str = "approve", reason: str = "", decoded: Any = None, network: str | None = None,
) -> Approval:
    """Build and sign a decision on ``request`` (``approve``/``reject``; the initiator's
    ``cancel``); a rejection's ``reason`` is signed with it. A sign request's decision binds
    what the approver was shown: its ``decoded`` summary and ``network`` (the request's view
    gives both); every signer refuses it unless its own decode gives the same."""
    a = Approval(request.binding(summary_hash(decoded), network), approver, decision, int(now),
                 int(now) + int(ttl_s), reason=reason)
    return replace(a, signature=sign_message(private_key, a.message()))


# -- TLS certificate rotation ----------------------------------------------------------------

MAX_CERT_PEM = 16 << 10  # a leaf certificate's PEM; chains are served, never pinned
MAX_VERSION = 1 << 31


@dataclass(frozen=True)
class CertUpdate:
    """A node's new pinned certificate (its leaf PEM) with the admins' signatures (the node
    checks them: :func:`appliance.policy.verify_cert_update`)."""

    cluster_id: str
    policy_hash: str
    version: int
    node_id: str
    previous_cert_sha256: str
    tls_cert: str
    signatures: tuple[tuple[str, bytes], ...] = ()

    @property
    def tls_cert_sha256(self) -> str:
        return fingerprint_pem(self.tls_cert)

    def statement(self) -> dict:
        return {"type": CERT_UPDATE_TYPE, "cluster_id": self.cluster_id, "policy_hash": self.policy_hash,
                "version": self.version, "node_id": self.node_id,
                "previous_cert_sha256": self.previous_cert_sha256, "tls_cert_sha256": self.tls_cert_sha256}

    def message(self) -> bytes:
        """The bytes each admin signs."""
        return canonical_json(self.statement())

    def signed_by(self, admin: str, private_key: Any) -> CertUpdate:
        return replace(self, signatures=(*self.signatures, (admin, sign_message(private_key, self.message()))))

    def to_json(self) -> dict:
        return {"cluster_id": self.cluster_id, "policy_hash": self.policy_hash, "version": self.version,
                "node_id": self.node_id, "previous_cert_sha256": self.previous_cert_sha256,
                "tls_cert": self.tls_cert,
                "signatures": [{"user": u, "signature": s.hex()} for u, s in self.signatures]}

    @classmethod
    def from_json(cls, data: Any) -> CertUpdate:
        """Parsed and bounded, else PolicyError (the service answers ``bad_cert_update``)."""
        if isinstance(data, (bytes, str)):
            data = parse_statement_json(data)
        fields = {"cluster_id", "policy_hash", "version", "node_id", "previous_cert_sha256", "tls_cert",
                  "signatures"}
        want(isinstance(data, Mapping) and set(data) == fields,
             f"a certificate update is {{{', '.join(sorted(fields))}}}")
        for name in ("policy_hash", "previous_cert_sha256"):
            want(isinstance(data[name], str) and HEX32.match(data[name]) is not None,
                 f"{name} must be 64 lowercase hex characters")
        want(type(data["version"]) is int and 1 <= data["version"] < MAX_VERSION, "version must be a positive integer")
        want(isinstance(data["cluster_id"], str) and 0 < len(data["cluster_id"]) <= 64, "cluster_id must be a string")
        pem = data["tls_cert"]
        want(isinstance(pem, str) and 0 < len(pem) <= MAX_CERT_PEM
             and pem.count("-----BEGIN CERTIFICATE-----") == 1,
             f"tls_cert must be one PEM certificate (at most {MAX_CERT_PEM} characters)")
        try:
            fingerprint_pem(pem)
        except ValueError:
            want(False, "tls_cert does not parse as an X.509 certificate")
        sigs = data["signatures"]
        want(isinstance(sigs, list) and len(sigs) <= 100
             and all(isinstance(s, Mapping) and set(s) == {"user", "signature"} for s in sigs),
             "signatures: [{user, signature}]")
        want(is_id("node_id", data["node_id"]), "node_id must be a node id")
        return cls(data["cluster_id"], data["policy_hash"], data["version"], data["node_id"],
                   data["previous_cert_sha256"], pem,
                   tuple((check_id(s["user"], "user"), sig_hex(s["signature"])) for s in sigs))


# -- key import -------------------------------------------------------------------------------


def import_request_params(bundle_json: Any) -> dict:
    """The params of the signed ``import`` request that authorizes an import bundle (what the
    initiating admin signs and the other admins approve): the SHA-256 of the bundle's
    canonical JSON, its public key, threshold and nodes, and the ``scheme`` a v2 bundle (a
    FROST key) names. ``bundle_json``: the bundle as
    ``appliance key import`` wrote it (nodes in party order, points compressed); the nodes
    recompute these from the bundle they parse (:func:`appliance.key_import.request_params`
    calls this on its checked form), so a bundle written otherwise is refused by them
    (``request_mismatch``). PolicyError if it lacks a field these need."""
    want(isinstance(bundle_json, Mapping), "an import bundle is a JSON object")
    b = dict(bundle_json)
    want(isinstance(b.get("public_key"), str) and isinstance(b.get("threshold"), int)
         and isinstance(b.get("nodes"), list), "an import bundle has public_key, threshold and nodes")
    try:
        bundle_hash = canonical_hash(b)
    except CanonicalError as exc:
        raise PolicyError(f"import bundle: {exc}") from None
    params = {"bundle_hash": bundle_hash, "public_key": b["public_key"], "threshold": b["threshold"],
              "nodes": list(b["nodes"])}
    if "scheme" in b:  # a v2 bundle (a FROST key): the signed request names its scheme
        params["scheme"] = b["scheme"]
    return params
