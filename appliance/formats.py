"""Standard encodings of public keys and signatures (secp256k1 ECDSA).

Public keys (``public_key_formats``), next to the compressed SEC1 hex a view always had:

- ``public_key_uncompressed``: SEC1 ``04 || X || Y``, hex;
- ``public_key_spki_der`` / ``public_key_pem``: X.509 SubjectPublicKeyInfo (id-ecPublicKey,
  namedCurve secp256k1; what AWS KMS GetPublicKey returns), DER base64 and PEM;
- ``addresses``: ``eth`` (EIP-55) and, for the key rule's Bitcoin network, ``p2wpkh`` (bech32)
  and ``p2pkh`` (base58) of the compressed key, and that ``network``.

Signatures (``signature_formats``), next to ``der``, ``r``, ``s`` and ``recovery_id``:

- ``rsv``: 65 bytes ``r || s || v``, hex, v = 27 + recovery_id (what Ethereum's
  ``ecrecover`` and personal_sign signatures carry);
- ``jws``: the JWS Signature of ES256K (RFC 8812, RFC 7518 section 3.4): base64url of r || s.
  The compact JWS of a signing input ``header.payload`` whose SHA-256 was the signed digest is
  ``header.payload.`` + this (:func:`jws_compact`; the client library's
  ``api.client.jws_signing_input`` and ``ApplianceClient.sign_jws`` make one).

:func:`read_signature` and :func:`read_message` read what ``POST /v1/verify`` accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.errors import ApplianceError, ServiceError
from appliance.payloads.addresses import eth_address, p2pkh_address, p2wpkh_address
from appliance.tss import ecdsa

#: the largest message ``/v1/verify`` hashes (decoded bytes)
MAX_MESSAGE_BYTES = 1 << 19  # hex of it fits the API's 2 MiB body
MESSAGE_ENCODINGS = ("hex", "base64", "utf8")
#: v = RSV_V_OFFSET + recovery_id in ``rsv``
RSV_V_OFFSET = 27
JWS_ALG = "ES256K"


# ---------------------------------------------------------------------------------------
# public keys


def spki_der(public_key: bytes) -> bytes:
    """SubjectPublicKeyInfo DER of a SEC1 secp256k1 key (compressed or not); the point is
    written uncompressed, as OpenSSL and KMS write it."""
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_pem(public_key: bytes) -> str:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def uncompressed(public_key: bytes) -> bytes:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def addresses(public_key: bytes, network: str) -> dict:
    return {"eth": eth_address(public_key), "p2wpkh": p2wpkh_address(public_key, network),
            "p2pkh": p2pkh_address(public_key, network), "network": network}


def public_key_formats(public_key: bytes, network: str) -> dict:
    """The fields a key view (and a derived key's) adds to ``public_key`` (a fresh copy)."""
    out = _public_key_formats(bytes(public_key), network)
    return {**out, "addresses": dict(out["addresses"])}


@lru_cache(maxsize=4096)  # ~0.9 ms a key uncached: a list of 1,000 keys stays fast
def _public_key_formats(public_key: bytes, network: str) -> dict:
    return {"public_key_uncompressed": uncompressed(public_key).hex(),
            "public_key_spki_der": base64.b64encode(spki_der(public_key)).decode("ascii"),
            "public_key_pem": spki_pem(public_key),
            "addresses": addresses(public_key, network)}


# ---------------------------------------------------------------------------------------
# signatures


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rsv(sig: ecdsa.Signature) -> bytes:
    if sig.recovery_id not in (0, 1):
        raise ValueError("r||s||v needs a recovery id 0 or 1")
    return sig.compact() + bytes([RSV_V_OFFSET + sig.recovery_id])


def signature_formats(view: dict) -> dict:
    """A stored signature view ``{der, r, s, recovery_id}`` with ``rsv`` (when the recovery id
    is 0 or 1) and ``jws`` added; a Schnorr/Ed25519 one ``{sig}`` as it is."""
    if "sig" in view:
        return dict(view)
    sig = ecdsa.Signature(int(view["r"], 16), int(view["s"], 16), view.get("recovery_id"))
    out = dict(view)
    if sig.recovery_id in (0, 1):
        out["rsv"] = rsv(sig).hex()
    out["jws"] = b64url(sig.compact())
    return out


def jws_digest(signing_input: str) -> bytes:
    """What is signed for an ES256K JWS: SHA-256 of the ASCII signing input."""
    return hashlib.sha256(signing_input.encode("ascii")).digest()


def jws_compact(signing_input: str, signature: dict) -> str:
    """The compact JWS of a signing input and a signature view of its :func:`jws_digest`."""
    return f"{signing_input}.{signature_formats(signature)['jws']}"


def parse_rsv(text: object) -> ecdsa.Signature:
    """65 bytes hex, v in 27/28 (or 0/1)."""
    if not isinstance(text, str) or len(text) != 130:
        raise ServiceError("bad_signature_rsv", "rsv must be 65 bytes hex (r || s || v)")
    try:
        raw = bytes.fromhex(text)
        v = raw[64] - RSV_V_OFFSET if raw[64] >= RSV_V_OFFSET else raw[64]
        if v not in (0, 1):
            raise ValueError
        return ecdsa.Signature.from_compact(raw[:64], recovery_id=v)
    except (ValueError, ApplianceError):
        raise ServiceError("bad_signature_rsv", "rsv must be 65 bytes hex (r || s || v), "
                           "r and s in [1, q-1], v 27 or 28 (or 0 or 1)") from None


_SIG_FORMS = ("der", "r", "rsv", "jws")


def read_signature(value: object) -> ecdsa.Signature:
    """A signature as ``/v1/verify`` takes it: DER hex, or an object with ``der``, ``r`` and
    ``s``, ``rsv`` or ``jws`` (base64url r || s). An object with several (a signature view as
    the node returns it) must have them agree; ``rsv`` gives the result its recovery id."""
    if isinstance(value, str):
        value = {"der": value}
    if not isinstance(value, dict):
        raise ServiceError("bad_signature_format", "signature: DER hex, or {der}, {r, s}, {rsv} or {jws}")
    forms = [f for f in _SIG_FORMS if value.get(f) is not None]
    if value.get("s") is not None and "r" not in forms:
        forms.append("s")
    if not forms:
        raise ServiceError("bad_signature_format", "signature: DER hex, or {der}, {r, s}, {rsv} or {jws}")
    sigs = [_read_form(form, value) for form in forms]
    if len({(x.r, x.s) for x in sigs}) != 1:
        raise ServiceError("bad_signature_format", f"signature: {', '.join(forms)} are not the same signature")
    return sigs[forms.index("rsv")] if "rsv" in forms else sigs[0]


def _read_form(form: str, value: dict) -> ecdsa.Signature:
    try:
        if form == "der":
            return ecdsa.Signature.from_der(bytes.fromhex(value["der"]))
        if form == "rsv":
            return parse_rsv(value["rsv"])
        if form == "jws":
            return ecdsa.Signature.from_compact(_b64url_decode(value["jws"]))
        r, s = value.get("r"), value.get("s")
        if not (isinstance(r, str) and isinstance(s, str) and len(r) == 64 and len(s) == 64):
            raise ValueError
        return ecdsa.Signature(int(r, 16), int(s, 16))
    except ServiceError:
        raise
    except (TypeError, ValueError, ApplianceError):
        raise ServiceError(f"bad_signature_{form if form != 's' else 'r'}", _SIG_MESSAGES[form]) from None


_SIG_MESSAGES = {
    "der": "der must be the strict DER encoding (hex) of r and s in [1, q-1]",
    "jws": "jws must be base64url of r || s (64 bytes), r and s in [1, q-1]",
    "r": "r and s must be 32 bytes hex each, in [1, q-1]",
    "s": "r and s must be 32 bytes hex each, in [1, q-1]",
}


def _b64url_decode(text: object) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_digest(value: object) -> bytes:
    """A ``digest`` as ``/v1/verify`` takes it: 32 bytes, hex."""
    try:
        digest = bytes.fromhex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        digest = b""
    if len(digest) != 32:
        raise ServiceError("bad_digest", "digest must be exactly 32 bytes, hex")
    return digest


def read_message(value: object, encoding: object) -> bytes:
    """The bytes of a ``message`` in ``encoding`` (hex, base64 or utf8; default hex)."""
    encoding = "hex" if encoding is None else encoding
    if encoding not in MESSAGE_ENCODINGS:
        raise ServiceError("bad_message_encoding", f"message_encoding must be one of {', '.join(MESSAGE_ENCODINGS)}")
    if not isinstance(value, str):
        raise ServiceError("bad_message", "message must be a string")
    try:
        if encoding == "hex":
            data = bytes.fromhex(value)
        elif encoding == "base64":
            data = base64.b64decode(value, validate=True)
        else:
            data = value.encode("utf-8")
    except (ValueError, binascii.Error):
        raise ServiceError("bad_message", f"message is not {encoding}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise ServiceError("bad_message", f"message is over {MAX_MESSAGE_BYTES} bytes")
    return data
