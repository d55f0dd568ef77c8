"""``POST /v1/verify`` of a Schnorr signature: BIP340 (``schnorr-bip340``, libsecp256k1 through
coincurve) or Ed25519 (RFC 8032, ``cryptography``), given as ``{"sig": 64-byte hex}``.

The scheme: the key's when ``key_id`` is given (its ``public_key`` as clients see it: the
x-only Taproot output key Q for BIP340, the 32-byte point for Ed25519), else the body's
``scheme`` with a 32-byte ``public_key`` (x-only for BIP340; both kinds are 32 bytes, so the
scheme is never guessed). What is verified is what the node signs for such a key
(appliance/signing/schnorr.py): a ``digest``'s 32 bytes for both schemes; a ``message``'s
bytes themselves for Ed25519, their SHA-256 for BIP340. The answer: ``valid``, ``scheme`` and
``digest`` (the digest, or the message's SHA-256)."""

from __future__ import annotations

import hashlib
from typing import Any

from appliance import formats
from appliance.errors import EncodingError, ServiceError
from appliance.keys import frost_keys
from appliance.policy import BIP340, ED25519
from appliance.signing import schnorr
from appliance.tss.frost.taproot import lift_x

SCHNORR_SCHEMES = (BIP340, ED25519)
_SIG_FORMAT = "a schnorr-bip340 or ed25519 signature is {sig}: 64 bytes, hex"


def is_schnorr_signature(sig: Any) -> bool:
    """The ``{sig}`` form (a FROST key's signature view)."""
    return isinstance(sig, dict) and sig.get("sig") is not None


def verify(body: dict, scheme: str | None, row: dict | None) -> dict:
    """The answer for ``body`` (checked as ``POST /v1/verify`` takes it) under ``scheme`` (the
    key's if ``row`` is given)."""
    if scheme not in SCHNORR_SCHEMES:
        if scheme is None:
            raise ServiceError("bad_scheme", "a {sig} signature needs scheme (schnorr-bip340 or ed25519) "
                               "or the key_id of such a key")
        raise ServiceError("scheme_mismatch", f"an {scheme} signature is DER, {{r, s}}, {{rsv}} or {{jws}}, "
                           "not {sig}")
    sig_view = body.get("signature")
    if not is_schnorr_signature(sig_view) or set(k for k, v in sig_view.items() if v is not None) != {"sig"}:
        raise ServiceError("bad_signature_format", _SIG_FORMAT)
    try:
        sig = bytes.fromhex(sig_view["sig"])
    except (TypeError, ValueError):
        sig = b""
    if len(sig) != 64:
        raise ServiceError("bad_signature_format", _SIG_FORMAT)
    if row is not None:
        pk = frost_keys.shown_public_key(scheme, row["public_key"])
    else:
        pk = _public_key(body.get("public_key"), scheme)
    has_digest, has_message = body.get("digest") is not None, body.get("message") is not None
    if has_digest == has_message:
        raise ServiceError("digest_or_message", "give exactly one of digest (32 bytes hex) and message")
    if has_message:
        data = formats.read_message(body["message"], body.get("message_encoding"))
        digest = hashlib.sha256(data).digest()
        signed = data if scheme == ED25519 else digest
    else:
        digest = formats.read_digest(body["digest"])
        signed = digest
    return {"valid": schnorr.verify(scheme, pk, signed, sig), "scheme": scheme, "digest": digest.hex()}


def _public_key(value: Any, scheme: str) -> bytes:
    try:
        pk = bytes.fromhex(value)
    except (TypeError, ValueError):
        pk = b""
    if len(pk) != 32:
        raise ServiceError("bad_public_key", f"a {scheme} public_key is 32 bytes, hex"
                           + (" (x-only)" if scheme == BIP340 else ""))
    if scheme == BIP340:
        try:
            lift_x(pk)
        except (EncodingError, ValueError):
            raise ServiceError("bad_public_key", "public_key is not the x coordinate of a secp256k1 point") from None
    return pk
