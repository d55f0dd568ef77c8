"""Secret payloads between nodes, encrypted to the recipient's HSM-held transport key.

Sender (software, any process, no HSM needed): :func:`encrypt_to`. Receiver: the
recipient's :meth:`hsm.HSM.transport_decrypt`, which needs that node's token.

Scheme ("ECIES" shape), version 1:

* the sender makes an ephemeral P-256 key pair (``cryptography``), computes the ECDH
  shared secret Z (x-coordinate, 32 bytes) with the recipient's transport public key;
* K = HKDF-SHA256(IKM = Z, salt = "threshold-appliance/transport/v1",
  info = len-prefixed(ephemeral public key, recipient public key, context)), 32 bytes;
* AES-256-GCM under K with a fresh random 96-bit nonce, AAD = version || ephemeral
  public key || recipient public key || len-prefixed(context).

Envelope: ``0x01 || ephemeral public key (65, uncompressed SEC1) || nonce (12) ||
ciphertext || tag (16)``.

``context`` is the caller's binding (protocol, session id, sender, recipient, round...):
the receiver must pass the same bytes or decryption fails.

Where the receiver's secrets live (SoftHSM 2.6.1, checked against the real module):
the transport private key is a token object, SENSITIVE, never extractable, DERIVE only;
Z is computed inside the HSM by C_DeriveKey(CKM_ECDH1_DERIVE). SoftHSM 2.6 accepts only
``CKD_NULL`` as the ECDH KDF (CKD_SHA256_KDF returns CKR_MECHANISM_PARAM_INVALID) and has
no CKM_HKDF_DERIVE, so HKDF cannot run inside it. The derived Z is therefore created as a
*session* object (CKA_TOKEN false, never written to the token directory) with
CKA_EXTRACTABLE true, CKA_SENSITIVE false and no usage capability at all, read once
(CKA_VALUE), and destroyed at once (also on error; the session's close would destroy it
too). Z and K then exist only in this process's memory while HKDF and AES-GCM run in
software (``cryptography``); they are never logged, stored or sent, and are dropped
straight after use (Python cannot guarantee the bytes are wiped). An HSM with
CKM_HKDF_DERIVE (PKCS#11 3.0) could keep both inside; the envelope would not change.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hsm.errors import HSMIntegrityError

ENVELOPE_VERSION = 1
POINT_LEN = 65
NONCE_LEN = 12
TAG_LEN = 16
HKDF_SALT = b"threshold-appliance/transport/v1"
_CURVE = ec.SECP256R1()


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _check_point(point: bytes, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(point, (bytes, bytearray)) or len(point) != POINT_LEN or point[0] != 4:
        raise ValueError(f"{what} must be a 65-byte uncompressed P-256 point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, bytes(point))
    except ValueError:
        raise ValueError(f"{what} is not a point on P-256") from None


def _derive_key(z: bytes, eph: bytes, recipient: bytes, context: bytes) -> bytes:
    info = _lp(eph) + _lp(recipient) + _lp(context)
    return HKDF(hashes.SHA256(), 32, HKDF_SALT, info).derive(z)


def _aad(eph: bytes, recipient: bytes, context: bytes) -> bytes:
    return bytes([ENVELOPE_VERSION]) + eph + recipient + _lp(context)


def encrypt_to(recipient_public_key: bytes, plaintext: bytes, *, context: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` so that only the holder of the transport key whose public
    key is ``recipient_public_key`` (65-byte uncompressed P-256) can decrypt it."""
    recipient = bytes(recipient_public_key)
    pub = _check_point(recipient, "the recipient's transport public key")
    eph_key = ec.generate_private_key(_CURVE)
    eph = eph_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    z = eph_key.exchange(ec.ECDH(), pub)
    key = _derive_key(z, eph, recipient, bytes(context))
    del z
    nonce = os.urandom(NONCE_LEN)
    ct = AESGCM(key).encrypt(nonce, bytes(plaintext), _aad(eph, recipient, bytes(context)))
    del key
    return bytes([ENVELOPE_VERSION]) + eph + nonce + ct


def parse_envelope(envelope: bytes) -> tuple[bytes, bytes, bytes]:
    """(ephemeral point, nonce, ciphertext||tag); :class:`HSMIntegrityError` if malformed
    (the ephemeral point is checked to be on P-256 before it reaches the HSM)."""
    if not isinstance(envelope, (bytes, bytearray, memoryview)):
        raise HSMIntegrityError("a transport envelope must be bytes")
    b = bytes(envelope)
    if len(b) < 1 + POINT_LEN + NONCE_LEN + TAG_LEN or b[0] != ENVELOPE_VERSION:
        raise HSMIntegrityError("not a transport envelope of a known version")
    eph = b[1 : 1 + POINT_LEN]
    try:
        _check_point(eph, "the ephemeral key")
    except ValueError:
        raise HSMIntegrityError("transport envelope carries an invalid ephemeral key") from None
    nonce = b[1 + POINT_LEN : 1 + POINT_LEN + NONCE_LEN]
    return eph, nonce, b[1 + POINT_LEN + NONCE_LEN :]


def open_with_shared_secret(
    z: bytes, recipient_public_key: bytes, envelope: bytes, context: bytes
) -> bytes:
    """Receiver's software half: HKDF and AES-GCM from the HSM-derived Z."""
    eph, nonce, ct = parse_envelope(envelope)
    key = _derive_key(bytes(z), eph, bytes(recipient_public_key), bytes(context))
    try:
        aad = _aad(eph, bytes(recipient_public_key), bytes(context))
        return AESGCM(key).decrypt(nonce, ct, aad)
    except InvalidTag:
        raise HSMIntegrityError(
            "transport envelope failed authentication (wrong recipient, context or tampered)"
        ) from None
    finally:
        del key
