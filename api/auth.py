"""Client request authentication: RFC 9421 HTTP Message Signatures (``http-message-signatures``).

Every client request (all but the open routes) carries one signature, labelled ``sig1``,
made with the caller's own key (Ed25519 or ECDSA P-256), covering::

    "@method" "@path" "@query" "content-digest";created=...;keyid="<user id>";nonce="..."

``content-digest`` is RFC 9530 ``sha-256`` over the exact body bytes (also for an empty
body). The node checks, in order: one signature present; a nonce; ``created`` is no older
than ``max_age`` and not in the future (beyond a small skew); ``keyid`` names a configured
user; the algorithm is the one of that user's key (never the one the request claims);
every required component is covered; the digest matches the body; the signature verifies;
the nonce is fresh (remembered until the signature would expire anyway). Any failure: 401.
An unknown key id, a bad signature and a body that does not match its digest get the same
answer (:data:`SIGNATURE_REJECTED`), so the 401 does not tell which user ids exist.
"""

from __future__ import annotations

import datetime
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import http_sf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)

LABEL = "sig1"
COVERED = ("@method", "@path", "@query", "content-digest")
REQUIRED = ("@method", "@path", "@query", "content-digest")
DEFAULT_MAX_AGE = 300  # seconds
CLOCK_SKEW = 5  # seconds a "created" may lie in the future
SIGNATURE_REJECTED = "signature rejected"  # unknown key id, bad signature, digest mismatch alike


class AuthError(Exception):
    """Authentication failed (HTTP 401); the message says why, without secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def algorithm_for(key) -> type:
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return algorithms.ED25519
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return algorithms.ECDSA_P256_SHA256
    raise ValueError("user keys must be Ed25519 or ECDSA P-256")


def load_public_key(pem: str | bytes):
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    algorithm_for(key)
    return key


def load_private_key(pem: str | bytes):
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
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


class _Headers:
    """The header interface the library wants, over a (case-insensitive) multidict."""

    def __init__(self, items: list[tuple[str, str]]):
        self._items = list(items)

    def items(self):
        return list(self._items)

    def __iter__(self):
        return iter(dict.fromkeys(k for k, _ in self._items))

    def __contains__(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self._items)

    def __getitem__(self, name: str) -> str:
        vals = [v for k, v in self._items if k.lower() == name.lower()]
        if not vals:
            raise KeyError(name)
        return ", ".join(vals)

    def __setitem__(self, name: str, value: str) -> None:
        self._items = [(k, v) for k, v in self._items if k.lower() != name.lower()]
        self._items.append((name, value))

    def __delitem__(self, name: str) -> None:
        self._items = [(k, v) for k, v in self._items if k.lower() != name.lower()]

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default


@dataclass
class _Message:
    method: str
    url: str
    headers: _Headers


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, public=None, private=None):
        self.key_id, self.public, self.private = key_id, public, private

    def resolve_public_key(self, key_id: str):
        return self.public if key_id == self.key_id else None

    def resolve_private_key(self, key_id: str):
        if key_id != self.key_id or self.private is None:
            raise KeyError(key_id)
        return self.private


# -- client side ---------------------------------------------------------------------------


def sign_request(method: str, url: str, body: bytes, key_id: str, private_key,
                 *, created: datetime.datetime | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers (``Content-Digest``, ``Signature-Input``, ``Signature``) for a request."""
    msg = _Message(method.upper(), url, _Headers([]))
    signer = HTTPMessageSigner(signature_algorithm=algorithm_for(private_key),
                               key_resolver=_OneKey(key_id, private=private_key))
    signer.sign(msg, key_id=key_id, label=LABEL, covered_component_ids=COVERED, body=body,
                created=created or datetime.datetime.now(datetime.timezone.utc),
                nonce=nonce or secrets.token_urlsafe(18))
    return dict(msg.headers.items())


# -- server side ---------------------------------------------------------------------------


class NonceCache:
    """Nonces seen within the acceptance window (per key id); thread-safe, bounded."""

    def __init__(self, ttl: float, max_entries: int = 200_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_add(self, key_id: str, nonce: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen:
                k, exp = next(iter(self._seen.items()))
                if exp > now and len(self._seen) < self.max_entries:
                    break
                self._seen.popitem(last=False)
            if (key_id, nonce) in self._seen:
                return False
            self._seen[(key_id, nonce)] = now + self.ttl
            return True


class RequestVerifier:
    """Verifies signed client requests against the configured users."""

    def __init__(self, users: dict[str, object], *, max_age: int = DEFAULT_MAX_AGE) -> None:
        """``users``: user id -> public key (cryptography object)."""
        self.users = dict(users)
        self.max_age = max_age
        self.nonces = NonceCache(ttl=max_age + 2 * CLOCK_SKEW)

    def verify(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> str:
        """The authenticated user id, or :class:`AuthError`."""
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
        params = parsed[LABEL][1] if isinstance(parsed[LABEL], tuple) else {}
        key_id = params.get("keyid")
        nonce = params.get("nonce")
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
            raise AuthError("a nonce (8 to 128 characters) is required")
        created = params.get("created")
        now = time.time()
        if not isinstance(created, int) or created > now + CLOCK_SKEW:
            raise AuthError("created is missing or in the future")
        if created < now - self.max_age:
            raise AuthError("signature is too old")
        # an unknown key id is refused as a bad signature is, after the same checks: an
        # outsider cannot tell which user ids exist
        if not isinstance(key_id, str) or key_id not in self.users:
            raise AuthError(SIGNATURE_REJECTED)
        key = self.users[key_id]
        verifier = HTTPMessageVerifier(signature_algorithm=algorithm_for(key),
                                       key_resolver=_OneKey(key_id, public=key))
        verifier.max_clock_skew = datetime.timedelta(seconds=CLOCK_SKEW)
        try:
            verifier.verify(_Message(method.upper(), url, hdrs), require_components=REQUIRED,
                            max_age=datetime.timedelta(seconds=self.max_age), body=body)
        except Exception:  # HTTPMessageSignaturesException or a malformed value: no detail
            raise AuthError(SIGNATURE_REJECTED) from None
        # the nonce is spent only by a request whose signature verified
        if not self.nonces.check_and_add(key_id, nonce):
            raise AuthError("nonce already used")
        return key_id
