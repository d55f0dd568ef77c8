"""ECDSA signatures on secp256k1: encodings, verification, public-key recovery.

A :class:`Signature` always holds r, s in [1, q-1]; the constructor and both decoders
enforce that, so an out-of-range value never exists as a ``Signature``. The recovery id is
optional because DER and compact (r||s) encodings do not carry it: a decoded signature has
``recovery_id=None`` until :meth:`Signature.with_recovery_id` determines it.

Encodings:

* ``der()`` / ``from_der``: the ASN.1 ``SEQUENCE { INTEGER r, INTEGER s }`` in strict,
  minimal DER. ``from_der(strict=True)`` (the default, and what :func:`verify` uses) accepts
  exactly the bytes ``der()`` produces and nothing else, which is what makes the encoding
  non-malleable. ``strict=False`` tolerates common BER deviations (long-form or padded
  lengths, superfluous leading zero bytes in an integer) for reading legacy input; it is never
  used on a verification path.
* ``compact()`` / ``from_compact``: r||s, 32 bytes each, big-endian (IEEE P1363).

Recovery id (the "v" byte): bit 0 is the parity of y(R), bit 1 is set when x(R) = r + q,
i.e. x(R) >= q (probability about 2^-128 for a random R).

Verification (:func:`verify`) is our own textbook check built on the group.py point
arithmetic. :func:`verify_with_libsecp256k1` and :func:`verify_with_openssl` are independent
implementations (coincurve and cryptography) the tests compare it with.

Error policy of the verifiers: anything wrong with the *signature* (bad encoding, out-of-range
values, wrong equation) makes them return False; a malformed *public key* or *digest* -- the
verifier's own inputs -- raises :class:`~appliance.errors.EncodingError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import EncodingError
from appliance.tss.group import P, Q, SCALAR_BYTES, Point, inverse

#: q // 2; a signature is "low-S" when s <= HALF_Q (q is odd, so this is s <= q/2)
HALF_Q = Q // 2
DIGEST_BYTES = 32
#: 2 + 2·(2 + 33): the longest DER encoding of two scalars below q
MAX_DER_BYTES = 72


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_scalar(name: str, v: object) -> int:
    if not _is_int(v):
        raise EncodingError(f"signature {name} must be an int")
    if not 1 <= v < Q:  # type: ignore[operator]
        raise EncodingError(f"signature {name} not in [1, q-1]")
    return v  # type: ignore[return-value]


def _check_recovery_id(v: object) -> int | None:
    if v is None:
        return None
    if not _is_int(v) or not 0 <= v <= 3:  # type: ignore[operator]
        raise EncodingError("recovery id must be 0, 1, 2 or 3")
    return v  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# DER


def _der_int(v: int) -> bytes:
    body = v.to_bytes((v.bit_length() + 8) // 8, "big")  # one spare bit: leading 0 if needed
    return b"\x02" + bytes([len(body)]) + body


def _read_len(data: bytes, pos: int, strict: bool) -> tuple[int, int]:
    """Read a DER/BER length at ``pos``; return (length, position after it)."""
    if pos >= len(data):
        raise EncodingError("DER signature truncated in a length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    if strict:
        # every length in a signature is below 128, so DER never uses the long form here
        raise EncodingError("DER signature uses a long-form length")
    n = first & 0x7F
    if n == 0:
        raise EncodingError("indefinite length is not allowed")
    if n > 4 or pos + n > len(data):
        raise EncodingError("DER signature length field too long or truncated")
    return int.from_bytes(data[pos : pos + n], "big"), pos + n


def _read_int(data: bytes, pos: int, end: int, strict: bool) -> tuple[int, int]:
    """Read an INTEGER inside data[:end]; return (value, position after it)."""
    if pos >= end or data[pos] != 0x02:
        raise EncodingError("DER signature: expected an INTEGER")
    length, pos = _read_len(data, pos + 1, strict)
    if length == 0:
        raise EncodingError("DER signature: empty INTEGER")
    if pos + length > end:
        raise EncodingError("DER signature: INTEGER overruns its container")
    body = data[pos : pos + length]
    if body[0] & 0x80:
        raise EncodingError("DER signature: negative INTEGER")
    if strict:
        if length > SCALAR_BYTES + 1:
            raise EncodingError("DER signature: INTEGER too long")
        if length > 1 and body[0] == 0 and not body[1] & 0x80:
            raise EncodingError("DER signature: INTEGER has a superfluous leading zero")
    return int.from_bytes(body, "big"), pos + length


def _parse_der(data: bytes, strict: bool) -> tuple[int, int]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError("DER signature must be bytes")
    data = bytes(data)
    if strict and not 8 <= len(data) <= MAX_DER_BYTES:
        raise EncodingError("DER signature has an impossible length")
    if len(data) < 2 or data[0] != 0x30:
        raise EncodingError("DER signature: expected a SEQUENCE")
    seq_len, pos = _read_len(data, 1, strict)
    if pos + seq_len != len(data):
        raise EncodingError("DER signature: SEQUENCE length does not match the data")
    r, pos = _read_int(data, pos, len(data), strict)
    s, pos = _read_int(data, pos, len(data), strict)
    if pos != len(data):
        raise EncodingError("DER signature: extra data inside the SEQUENCE")
    return r, s


# ---------------------------------------------------------------------------------------
# Signature


@dataclass(frozen=True)
class Signature:
    """An ECDSA signature (r, s) with r, s in [1, q-1] and an optional recovery id (0..3)."""

    r: int
    s: int
    recovery_id: int | None = None

    def __post_init__(self) -> None:
        _check_scalar("r", self.r)
        _check_scalar("s", self.s)
        _check_recovery_id(self.recovery_id)

    # -- encodings ------------------------------------------------------------------------

    def der(self) -> bytes:
        """Strict minimal DER: SEQUENCE { INTEGER r, INTEGER s }."""
        body = _der_int(self.r) + _der_int(self.s)
        return b"\x30" + bytes([len(body)]) + body

    def compact(self) -> bytes:
        """r||s, 64 bytes."""
        return self.r.to_bytes(SCALAR_BYTES, "big") + self.s.to_bytes(SCALAR_BYTES, "big")

    def to_dict(self) -> dict:
        return {
            "der": self.der().hex(),
            "r": self.r.to_bytes(SCALAR_BYTES, "big").hex(),
            "s": self.s.to_bytes(SCALAR_BYTES, "big").hex(),
            "recovery_id": self.recovery_id,
        }

    @classmethod
    def from_der(
        cls, data: bytes, strict: bool = True, *, recovery_id: int | None = None
    ) -> "Signature":
        """Decode DER. ``strict`` (default) accepts only the canonical encoding ``der()``
        would produce; anything else raises :class:`EncodingError`, as does r or s outside
        [1, q-1] in either mode."""
        r, s = _parse_der(data, strict)
        return cls(r, s, recovery_id)

    @classmethod
    def from_compact(cls, data: bytes, *, recovery_id: int | None = None) -> "Signature":
        """Decode r||s (exactly 64 bytes, r and s in [1, q-1])."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != 2 * SCALAR_BYTES:
            raise EncodingError("compact signature must be 64 bytes")
        data = bytes(data)
        return cls(
            int.from_bytes(data[:SCALAR_BYTES], "big"),
            int.from_bytes(data[SCALAR_BYTES:], "big"),
            recovery_id,
        )

    # -- helpers --------------------------------------------------------------------------

    @property
    def is_low_s(self) -> bool:
        return self.s <= HALF_Q

    def normalized(self) -> "Signature":
        """The low-S form of this signature (see :func:`normalize_low_s`)."""
        return normalize_low_s(self.r, self.s, self.recovery_id)

    def with_recovery_id(self, public_key: Point | bytes, digest: bytes) -> "Signature":
        """This signature with the recovery id that recovers ``public_key`` from ``digest``.

        Raises :class:`EncodingError` if no recovery id does (the signature does not verify)."""
        pk = _public_key(public_key)
        for rid in range(4):
            try:
                if recover_public_key(digest, Signature(self.r, self.s, rid)) == pk:
                    return Signature(self.r, self.s, rid)
            except EncodingError:
                continue
        raise EncodingError("no recovery id recovers this public key")


def normalize_low_s(r: int, s: int, recovery_id: int | None) -> Signature:
    """(r, s, v) -> its low-S form: if s > q/2, s := q - s and v := v ^ 1.

    (r, q - s) is the same signature for R negated, hence the flipped y-parity bit.
    A ``None`` recovery id stays ``None``."""
    _check_scalar("s", s)
    recovery_id = _check_recovery_id(recovery_id)
    if s > HALF_Q:
        s = Q - s
        if recovery_id is not None:
            recovery_id ^= 1
    return Signature(r, s, recovery_id)


# ---------------------------------------------------------------------------------------
# public keys and digests


def _public_key(public_key: Point | bytes) -> Point:
    """A Point, 33-byte compressed SEC1 or 65-byte uncompressed SEC1 (prefix 04), strictly."""
    if isinstance(public_key, Point):
        if public_key.is_infinity:
            raise EncodingError("the public key is the point at infinity")
        return public_key
    if not isinstance(public_key, (bytes, bytearray, memoryview)):
        raise EncodingError("public key must be a Point or SEC1 bytes")
    data = bytes(public_key)
    if len(data) == 65:
        if data[0] != 4:
            raise EncodingError("uncompressed public key prefix must be 04")
        x = int.from_bytes(data[1:33], "big")
        y = int.from_bytes(data[33:], "big")
        if x >= P or y >= P:
            raise EncodingError("public key coordinate not below the field prime")
        if (y * y - x * x * x - 7) % P:
            raise EncodingError("public key is not on secp256k1")
        data = bytes([2 | (y & 1)]) + data[1:33]
    return Point.from_bytes(data)


def _digest_int(digest: bytes) -> int:
    """The digest as an integer mod q. secp256k1's order has 256 bits, so a 32-byte digest
    is used whole (no truncation); the value may exceed q and is reduced."""
    if not isinstance(digest, (bytes, bytearray, memoryview)) or len(digest) != DIGEST_BYTES:
        raise EncodingError("digest must be exactly 32 bytes")
    return int.from_bytes(bytes(digest), "big") % Q


def _as_signature(sig: Signature | bytes) -> Signature | None:
    if isinstance(sig, Signature):
        return sig
    try:
        return Signature.from_der(sig, strict=True)
    except EncodingError:
        return None


# ---------------------------------------------------------------------------------------
# verification and recovery


def verify(
    public_key: Point | bytes,
    digest: bytes,
    sig: Signature | bytes,
    *,
    strict_low_s: bool = False,
) -> bool:
    """ECDSA verification: R = (e·w)·G + (r·w)·Q with w = s^-1; accept iff R is not infinity
    and x(R) mod q == r. ``sig`` is a :class:`Signature` or strict DER bytes. With
    ``strict_low_s`` a signature with s > q/2 is rejected (Bitcoin's non-malleability rule)."""
    pk = _public_key(public_key)
    e = _digest_int(digest)
    signature = _as_signature(sig)
    if signature is None:
        return False
    r, s = signature.r, signature.s
    # Signature's constructor already enforces these; re-checked because verification must
    # not depend on nobody having bypassed a frozen dataclass.
    if not (_is_int(r) and _is_int(s) and 1 <= r < Q and 1 <= s < Q):
        return False
    if strict_low_s and s > HALF_Q:
        return False
    w = inverse(s)
    R = Point.generator_mul(e * w % Q) + pk * (r * w % Q)
    if R.is_infinity:
        return False
    return R.x % Q == r


def recovery_id_for(R: Point) -> int:
    """The recovery id of a signature whose nonce point is R (for a signer who knows R):
    bit 0 = y(R) odd, bit 1 = x(R) >= q. Refers to (r, s) as computed from R, i.e. before
    any low-S normalisation (which flips bit 0)."""
    if not isinstance(R, Point) or R.is_infinity:
        raise EncodingError("R must be a finite point")
    return (1 if R.y_is_odd else 0) | (2 if R.x >= Q else 0)


def recover_public_key(digest: bytes, sig: Signature) -> Point:
    """The public key Q = r^-1·(s·R - e·G), R being the point with x = r (+ q if bit 1 of the
    recovery id) and y parity bit 0. Raises :class:`EncodingError` if the recovery id is
    missing, x >= p, no curve point has that x, or the result is the point at infinity."""
    if not isinstance(sig, Signature):
        raise EncodingError("recover_public_key needs a Signature")
    if sig.recovery_id is None:
        raise EncodingError("signature has no recovery id")
    rid = _check_recovery_id(sig.recovery_id)
    assert rid is not None
    r = _check_scalar("r", sig.r)
    s = _check_scalar("s", sig.s)
    e = _digest_int(digest)
    x = r + Q if rid & 2 else r
    if x >= P:
        raise EncodingError("recovery id's x-overflow bit gives x >= p")
    R = Point.from_bytes(bytes([2 | (rid & 1)]) + x.to_bytes(32, "big"))
    r_inv = inverse(r)
    pk = R * (s * r_inv % Q) - Point.generator_mul(e * r_inv % Q)
    if pk.is_infinity:
        raise EncodingError("recovered public key is the point at infinity")
    return pk


# ---------------------------------------------------------------------------------------
# independent verifiers (libsecp256k1 through coincurve, OpenSSL through cryptography)


def _pubkey_bytes(pubkey: Point | bytes) -> bytes:
    if isinstance(pubkey, Point):
        return pubkey.to_bytes()
    if not isinstance(pubkey, (bytes, bytearray, memoryview)):
        raise EncodingError("public key must be a Point or SEC1 bytes")
    return bytes(pubkey)


def _sig_der_bytes(sig: Signature | bytes) -> bytes:
    """The bytes handed to an external verifier: a Signature is DER-encoded, bytes are passed
    through untouched so that the external parser judges them."""
    return sig.der() if isinstance(sig, Signature) else bytes(sig)


def verify_with_libsecp256k1(
    pubkey_bytes: Point | bytes, digest: bytes, sig: Signature | bytes
) -> bool:
    """libsecp256k1's verification (coincurve). It parses DER strictly and rejects high-S
    signatures (secp256k1_ecdsa_verify requires the lower-S form)."""
    import coincurve

    _digest_int(digest)
    try:
        pk = coincurve.PublicKey(_pubkey_bytes(pubkey_bytes))
    except ValueError as exc:
        raise EncodingError("libsecp256k1 rejected the public key") from exc
    try:
        return bool(pk.verify(_sig_der_bytes(sig), bytes(digest), hasher=None))
    except Exception:  # coincurve raises ValueError/TypeError on unparsable signatures
        return False


def verify_with_openssl(pubkey_bytes: Point | bytes, digest: bytes, sig: Signature | bytes) -> bool:
    """OpenSSL's verification (cryptography, ECDSA over a prehashed SHA-256 digest). Accepts
    high-S signatures, as plain ECDSA does."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    _digest_int(digest)
    try:
        pk = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256K1(), _pubkey_bytes(pubkey_bytes)
        )
    except ValueError as exc:
        raise EncodingError("OpenSSL rejected the public key") from exc
    try:
        pk.verify(_sig_der_bytes(sig), bytes(digest), ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


__all__ = [
    "Signature", "normalize_low_s", "verify", "recover_public_key", "recovery_id_for",
    "verify_with_libsecp256k1", "verify_with_openssl", "HALF_Q",
]
