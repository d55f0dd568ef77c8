"""Client request authentication: RFC 9421 HTTP Message Signatures (``http-message-signatures``).

Every client request (all but the open routes) carries one signature, labelled ``sig1``,
made with the caller's own key (Ed25519 or ECDSA P-256), covering::

    "@method" "@authority" "@path" "@query" "content-digest";created=...;keyid="<user id>";nonce="..."

``@authority`` is the node's own host:port (of its URL in the cluster configuration): a
request signed for one node does not verify on another, whatever Host header it carries.
``content-digest`` is RFC 9530 ``sha-256`` over the exact body bytes (also for an empty
body). The node checks, in order, before it reads the body (:meth:`RequestVerifier.precheck`):
one signature present; a nonce; ``created`` is no older than ``max_age`` and not in the
future (beyond a small skew); every required component is covered; ``keyid`` names a
configured user. Then, with the body: the algorithm is the one of that user's key (never
the one the request claims); the digest matches the body; the signature verifies against
the node's own authority; the nonce is fresh (kept durably by the node, see
:mod:`appliance.storage.nonces`, until the signature would expire anyway). Any failure: 401.
An unknown key id, a bad signature and a body that does not match its digest get the same
answer (:data:`SIGNATURE_REJECTED`), so the 401 does not tell which user ids exist (an
unknown key id is answered before the body is read: it must not cost the node a body).
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import http_sf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from http_message_signatures import HTTPMessageVerifier

# the signature's parameters and the client side are the client library's (one definition)
from appliance_client.httpsig import COVERED as COVERED
from appliance_client.httpsig import LABEL as LABEL
from appliance_client.httpsig import Headers as _Headers
from appliance_client.httpsig import Message as _Message
from appliance_client.httpsig import OneKey as _OneKey
from appliance_client.httpsig import algorithm_for as algorithm_for
from appliance_client.httpsig import authority_of as authority_of
from appliance_client.httpsig import load_private_key as load_private_key
from appliance_client.httpsig import sign_request as sign_request

REQUIRED = ("@method", "@authority", "@path", "@query", "content-digest")
DEFAULT_MAX_AGE = 300  # seconds
CLOCK_SKEW = 5  # seconds a "created" may lie in the future
SIGNATURE_REJECTED = "signature rejected"  # unknown key id, bad signature, digest mismatch alike


class AuthError(Exception):
    """Authentication failed (HTTP 401); the message says why, without secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def load_public_key(pem: str | bytes):
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    algorithm_for(key)
    return key


def generate_user_key(kind: str = "ed25519"):
    """A new user key (``ed25519`` or ``p256``); returns (private PEM, public PEM)."""
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind in ("p256", "secp256r1", "P-256"):
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError("key kind must be ed25519 or p256")
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


# -- server side ---------------------------------------------------------------------------


class NonceStore(Protocol):
    def check_and_add(self, key_id: str, nonce: str, created: int, *, forget_before: int) -> bool: ...


class NonceCache:
    """Nonces seen within the acceptance window (per key id), in memory: for a verifier used
    outside a node (a node passes its durable :class:`appliance.storage.NonceLedger`).
    Evicts only nonces whose ``created`` is before ``forget_before``: never an unexpired one."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def check_and_add(self, key_id: str, nonce: str, created: int, *, forget_before: int) -> bool:
        with self._lock:
            for k in [k for k, c in self._seen.items() if c < forget_before]:
                del self._seen[k]
            if (key_id, nonce) in self._seen:
                return False
            self._seen[(key_id, nonce)] = created
            return True


@dataclass(frozen=True)
class SignatureParams:
    key_id: str
    nonce: str
    created: int


class RequestVerifier:
    """Verifies signed client requests against the configured users, for one node."""

    def __init__(self, users: dict[str, object], *, authority: str, max_age: int = DEFAULT_MAX_AGE,
                 nonces: NonceStore | None = None) -> None:
        """``users``: user id -> public key (cryptography object); ``authority``: this node's
        host:port (:func:`authority_of` its URL), the only one a request may be signed for;
        ``nonces``: where accepted nonces are kept (a node: durably), else in memory."""
        self.users = dict(users)
        self.authority = authority
        self.max_age = max_age
        self.nonces: NonceStore = nonces if nonces is not None else NonceCache()

    def precheck(self, headers: list[tuple[str, str]], *, now: float | None = None) -> SignatureParams:
        """What can be checked without the body: the signature parameters, the key id, the
        covered components, ``created`` and the nonce's form. :class:`AuthError` if not."""
        hdrs = _Headers(headers)
        sig_input = hdrs.get("Signature-Input")
        if not sig_input or "Signature" not in hdrs:
            raise AuthError("request is not signed (RFC 9421 Signature-Input and Signature required)")
        try:
            parsed = http_sf.parse(sig_input.encode("latin-1"), tltype="dictionary")
        except Exception:
            raise AuthError("malformed Signature-Input") from None
        if not isinstance(parsed, dict) or list(parsed) != [LABEL]:
            raise AuthError(f"exactly one signature labelled {LABEL!r} is required")
        entry = parsed[LABEL]
        items, params = (entry if isinstance(entry, tuple) and len(entry) == 2 else ((), {}))
        key_id = params.get("keyid") if isinstance(params, dict) else None
        nonce = params.get("nonce") if isinstance(params, dict) else None
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
            raise AuthError("a nonce (8 to 128 characters) is required")
        created = params.get("created")
        now = time.time() if now is None else now
        if type(created) is not int or created > now + CLOCK_SKEW:
            raise AuthError("created is missing or in the future")
        if created < now - self.max_age:
            raise AuthError("signature is too old")
        covered = {i[0] if isinstance(i, tuple) else i for i in items} if isinstance(items, list) else set()
        missing = [c for c in REQUIRED if c not in covered]
        if missing:
            raise AuthError(f"the signature must cover {', '.join(missing)}")
        # an unknown key id is refused as a bad signature is, after the same checks: an
        # outsider cannot tell which user ids exist
        if not isinstance(key_id, str) or key_id not in self.users:
            raise AuthError(SIGNATURE_REJECTED)
        return SignatureParams(key_id, nonce, created)

    def verify(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> str:
        """The authenticated user id, or :class:`AuthError`. ``url``'s path and query are
        checked; its authority is replaced by this node's own (a Host header proves nothing)."""
        p = self.precheck(headers)
        parts = urlsplit(url)
        own_url = f"https://{self.authority}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        key = self.users[p.key_id]
        verifier = HTTPMessageVerifier(signature_algorithm=algorithm_for(key),
                                       key_resolver=_OneKey(p.key_id, public=key))
        verifier.max_clock_skew = datetime.timedelta(seconds=CLOCK_SKEW)
        try:
            verifier.verify(_Message(method.upper(), own_url, _Headers(headers)), require_components=REQUIRED,
                            max_age=datetime.timedelta(seconds=self.max_age), body=body)
        except Exception:  # HTTPMessageSignaturesException or a malformed value: no detail
            raise AuthError(SIGNATURE_REJECTED) from None
        # the nonce is spent only by a request whose signature verified; it is forgotten only
        # once its created is outside the window (it could not be accepted again anyway)
        forget_before = int(time.time()) - self.max_age - 2 * CLOCK_SKEW
        if not self.nonces.check_and_add(p.key_id, p.nonce, p.created, forget_before=forget_before):
            raise AuthError("nonce already used")
        return p.key_id
