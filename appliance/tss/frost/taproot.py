"""BIP340 and BIP341 pieces for the Taproot ciphersuite (libsecp256k1 for every point).

- ``tagged_hash(tag, m)`` = SHA256(SHA256(tag) || SHA256(tag) || m) (BIP340).
- ``taptweak(P, merkle_root)``: t = int(hash_TapTweak(x(P) || merkle_root)) with
  merkle_root empty for a key-path-only output (BIP341 "taproot_tweak_pubkey"); t ≥ q fails.
- ``tweak_key(sk_i, PK_i, PK, merkle_root)``: the key-path tweak applied to one share, as
  ``frost-secp256k1-tr``'s ``KeyPackage::tweak``: P is first made even (sk_i, PK_i, PK
  negated if PK has odd Y), then Q = P + t·G, sk_i' = sk_i + t, PK_i' = PK_i + t·G. Since the
  Lagrange coefficients of any signer set sum to 1, Σ λ_i·sk_i' = sk + t, the secret of Q; the
  shares' verification uses PK_i' so a bad share is still named. Signing with Q then applies
  the even-Y rule again (``Ciphersuite.even_key``), as BIP341 signing with the output key does.
- ``verify(pk32, msg, sig64)``: BIP340 verification, written from the BIP's pseudocode.

A P2TR output of a DKG key must be ``output_key(P, b"")`` (or a real script root), never the
DKG's P itself: a rushing DKG participant that sees the others' φ_0 first can pick its own
φ_0 = (a + t)·G with P' = Σ others + a·G and t = H_TapTweak(x(P') || root) for a script tree
of its own, so that P = P' + t·G has a script path only it knows (BIP341's footnote; the
reason frost-secp256k1-tr tweaks every DKG output with an empty root). The tweak with an
empty root cannot be steered that way, since it hashes P itself. ``merkle_root=None`` is for
plain BIP340 signatures over messages, not for Taproot spends.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from appliance.errors import EncodingError
from appliance.tss.frost.groups import SECP256K1
from appliance.tss.group import P as FIELD_P
from appliance.tss.group import Q, Point


@lru_cache(maxsize=16)
def _tag(tag: bytes) -> bytes:
    return hashlib.sha256(tag).digest()


def tagged_hash(tag: bytes, msg: bytes) -> bytes:
    t = _tag(tag)
    return hashlib.sha256(t + t + msg).digest()


def lift_x(x: bytes) -> Point:
    """The point with x-coordinate x and even Y (EncodingError if there is none)."""
    if len(x) != 32:
        raise EncodingError("x-only key must be 32 bytes")
    return Point.from_bytes(b"\x02" + x)


def taptweak(P: Point, merkle_root: bytes = b"") -> int:
    if len(merkle_root) not in (0, 32):
        raise EncodingError("merkle root must be empty or 32 bytes")
    t = int.from_bytes(tagged_hash(b"TapTweak", P.to_bytes()[1:] + merkle_root), "big")
    if t >= Q:
        raise EncodingError("taproot tweak not below the group order")
    return t


def output_key(P: Point, merkle_root: bytes = b"") -> Point:
    """BIP341 Q = lift_x(x(P)) + t·G."""
    even = P if not P.y_is_odd else -P
    return even + Point.generator_mul(taptweak(even, merkle_root))


def tweak_key(sk_i: bytes, PK_i: Point, PK: Point, merkle_root: bytes = b"") -> tuple[bytes, Point, Point]:
    """(sk_i', PK_i', Q) for the key-path output key Q of internal key PK (sk_i a 32-byte
    scalar; its negation and the addition of t are libsecp256k1's, as in ``groups``)."""
    if PK.y_is_odd:
        sk_i, PK_i, PK = SECP256K1.neg(sk_i), -PK_i, -PK
    t = taptweak(PK, merkle_root)
    tG = Point.generator_mul(t)
    return SECP256K1.add(sk_i, SECP256K1.scalar(t)), PK_i + tG, PK + tG


def tweak_public(PK_i: Point, PK: Point, merkle_root: bytes = b"") -> tuple[Point, Point]:
    """(PK_i', Q): the verification side of ``tweak_key``."""
    if PK.y_is_odd:
        PK_i, PK = -PK_i, -PK
    tG = Point.generator_mul(taptweak(PK, merkle_root))
    return PK_i + tG, PK + tG


def verify(pubkey: bytes, msg: bytes, sig: bytes) -> bool:
    """BIP340 Verify(pk, m, sig) for a message of any length."""
    if len(pubkey) != 32 or len(sig) != 64:
        return False
    try:
        P = lift_x(pubkey)
    except EncodingError:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if r >= FIELD_P or s >= Q:
        return False
    e = int.from_bytes(tagged_hash(b"BIP0340/challenge", sig[:32] + pubkey + msg), "big") % Q
    R = Point.generator_mul(s) - P * e
    return not R.is_infinity and not R.y_is_odd and R.x == r
