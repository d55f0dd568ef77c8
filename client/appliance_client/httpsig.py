"""RFC 9421 HTTP Message Signatures of client requests (``http-message-signatures``): what
the client signs and the node (:mod:`api.auth`) verifies, one definition for both sides.

Every client request (all but the open routes) carries one signature, labelled ``sig1``,
made with the caller's own key (Ed25519 or ECDSA P-256), covering::

    "@method" "@authority" "@path" "@query" "content-digest";created=...;keyid="<user id>";nonce="..."

``@authority`` is the node's own host:port; ``content-digest`` is RFC 9530 ``sha-256`` over
the exact body bytes (also for an empty body).
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

LABEL = "sig1"
COVERED = ("@method", "@authority", "@path", "@query", "content-digest")


def algorithm_for(key) -> type:
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return algorithms.ED25519
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return algorithms.ECDSA_P256_SHA256
    raise ValueError("user keys must be Ed25519 or ECDSA P-256")


def load_private_key(pem: str | bytes):
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    algorithm_for(key)
    return key


class Headers:
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
class Message:
    method: str
    url: str
    headers: Headers


class OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, public=None, private=None):
        self.key_id, self.public, self.private = key_id, public, private

    def resolve_public_key(self, key_id: str):
        return self.public if key_id == self.key_id else None

    def resolve_private_key(self, key_id: str):
        if key_id != self.key_id or self.private is None:
            raise KeyError(key_id)
        return self.private


def sign_request(method: str, url: str, body: bytes, key_id: str, private_key,
                 *, created: datetime.datetime | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers (``Content-Digest``, ``Signature-Input``, ``Signature``) for a request."""
    msg = Message(method.upper(), url, Headers([]))
    signer = HTTPMessageSigner(signature_algorithm=algorithm_for(private_key),
                               key_resolver=OneKey(key_id, private=private_key))
    signer.sign(msg, key_id=key_id, label=LABEL, covered_component_ids=COVERED, body=body,
                created=created or datetime.datetime.now(datetime.timezone.utc),
                nonce=nonce or secrets.token_urlsafe(18))
    return dict(msg.headers.items())


def authority_of(url: str) -> str:
    """RFC 9421 ``@authority`` of a URL: host in lower case, the port unless it is the default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == {"http": 80, "https": 443}.get(parts.scheme.lower()):
        return host
    return f"{host}:{port}"
