"""FROST ciphersuites (RFC 9591 §6) and the Taproot variant.

- ``FROST_ED25519``: FROST(Ed25519, SHA-512), contextString "FROST-ED25519-SHA512-v1" (§6.1).
  H1(m) = H("…rho" || m), H3 with "nonce": SHA-512 as a little-endian integer mod L;
  H2(m) = SHA-512(m) mod L with no prefix (RFC 8032 compatibility); H4 = SHA-512(ctx || "msg"
  || m); H5 = SHA-512(ctx || "com" || m). Signature: SerializeElement(R) || SerializeScalar(z).
- ``FROST_SECP256K1``: FROST(secp256k1, SHA-256), contextString "FROST-secp256k1-SHA256-v1"
  (§6.5). H1, H2, H3 = hash_to_field(m, 1) of RFC 9380 §5.2 with expand_message_xmd (SHA-256),
  L = 48, DST = ctx || "rho" / "chal" / "nonce"; H4, H5 = SHA-256(ctx || "msg"/"com" || m).
  Signature: 33-byte compressed R || 32-byte big-endian z.
- ``FROST_SECP256K1_TR``: the Taproot (BIP340) variant, as ZcashFoundation/frost's
  ``frost-secp256k1-tr``: contextString "FROST-secp256k1-SHA256-TR-v1", H1/H3/H4/H5 as
  above; the challenge is BIP340's c = int(hash_{BIP0340/challenge}(x(R) || x(PK) || m)) mod q
  over x-only R and PK; the group key is used with even Y (the key shares and verification
  shares are negated when PK has odd Y); when the group commitment R has odd Y every signer
  negates its nonces (d_i, e_i) and the coordinator negates R_i when checking share i; the
  signature is x(R) || z (64 bytes). The BIP341 tweak lives in ``taproot.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from appliance.errors import EncodingError
from appliance.tss.frost.groups import ED25519, SECP256K1, Ed25519Group, Secp256k1Group
from appliance.tss.frost.taproot import tagged_hash
from appliance.tss.group import Point


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-256 (b_in_bytes = 32, s_in_bytes = 64)."""
    if len(dst) > 255:
        raise ValueError("DST longer than 255 bytes")
    ell = -(-len_in_bytes // 32)
    if ell > 255 or len_in_bytes > 65535:
        raise ValueError("expand_message_xmd: requested length too large")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(bytes(64) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    out = prev = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    for i in range(2, ell + 1):
        prev = hashlib.sha256(bytes(x ^ y for x, y in zip(b0, prev)) + bytes([i]) + dst_prime).digest()
        out += prev
    return out[:len_in_bytes]


def hash_to_field_secp256k1(msg: bytes, dst: bytes) -> bytes:
    """RFC 9380 §5.2 hash_to_field(msg, 1) for the secp256k1 scalar field (L = 48): the
    48-byte string as a big-endian integer mod q, reduced by libsecp256k1 (H3 hashes the
    secret share into the nonces, so no Python int sees it)."""
    return SECP256K1.reduce_wide(expand_message_xmd(msg, dst, 48))


@dataclass(frozen=True)
class Ciphersuite:
    """A FROST ciphersuite: its group, hash functions H1..H5 and signature encoding."""

    name: str
    scheme: str
    context: bytes
    G: Any
    H1: Callable[[bytes], Any]
    H2: Callable[[bytes], Any]
    H3: Callable[[bytes], Any]
    H4: Callable[[bytes], bytes]
    H5: Callable[[bytes], bytes]
    #: a hash to a scalar for this library's own uses (DKG proofs, identifiers), by tag
    HX: Callable[[bytes, bytes], Any]
    taproot: bool = False

    # -- the challenge and the Taproot hooks ------------------------------------------

    def challenge(self, R: Any, PK: Any, msg: bytes) -> Any:
        """RFC 9591 §4.6 compute_challenge (BIP340's challenge for the Taproot variant)."""
        if self.taproot:
            return self.H2(R.to_bytes()[1:] + PK.to_bytes()[1:] + msg)
        return self.H2(self.G.serialize_element(R) + self.G.serialize_element(PK) + msg)

    def even_key(self, sk: Any, PK: Any) -> tuple[Any, Any]:
        """(sk, PK) as the signer uses them: negated for Taproot when PK has odd Y."""
        if self.taproot and PK.y_is_odd:
            return self.G.neg(sk), -PK
        return sk, PK

    def even_share(self, PK_i: Any, PK: Any) -> tuple[Any, Any]:
        """(PK_i, PK) as the coordinator checks them: negated for Taproot when PK is odd."""
        if self.taproot and PK.y_is_odd:
            return -PK_i, -PK
        return PK_i, PK

    def commitment_negated(self, R: Any) -> bool:
        """Taproot: signers negate their nonces (and R_i) when the group commitment is odd."""
        return self.taproot and R.y_is_odd

    # -- signatures --------------------------------------------------------------------

    def serialize_signature(self, R: Any, z: Any) -> bytes:
        if self.taproot:
            return R.to_bytes()[1:] + self.G.serialize_scalar(z)
        return self.G.serialize_element(R) + self.G.serialize_scalar(z)

    def deserialize_signature(self, sig: bytes) -> tuple[Any, Any]:
        G = self.G
        if self.taproot:
            if not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
                raise EncodingError("BIP340 signature must be 64 bytes")
            return Point.from_bytes(b"\x02" + bytes(sig[:32])), G.deserialize_scalar(bytes(sig[32:]))
        if not isinstance(sig, (bytes, bytearray)) or len(sig) != G.element_len + G.scalar_len:
            raise EncodingError(f"{self.name} signature must be {G.element_len + G.scalar_len} bytes")
        return G.deserialize_element(bytes(sig[:G.element_len])), G.deserialize_scalar(bytes(sig[G.element_len:]))

    def serialize_public_key(self, PK: Any) -> bytes:
        """The key as a chain shows it: x-only (32 bytes) for Taproot, else SerializeElement."""
        return PK.to_bytes()[1:] if self.taproot else self.G.serialize_element(PK)


def _ed_hash(G: Ed25519Group, ctx: bytes, tag: bytes) -> Callable[[bytes], bytes]:
    return lambda m: G.reduce_wide(hashlib.sha512(ctx + tag + m).digest())


def _ed25519() -> Ciphersuite:
    ctx = b"FROST-ED25519-SHA512-v1"
    G = ED25519
    return Ciphersuite(
        name="FROST(Ed25519, SHA-512)", scheme="ed25519", context=ctx, G=G,
        H1=_ed_hash(G, ctx, b"rho"),
        H2=lambda m: G.reduce_wide(hashlib.sha512(m).digest()),
        H3=_ed_hash(G, ctx, b"nonce"),
        H4=lambda m: hashlib.sha512(ctx + b"msg" + m).digest(),
        H5=lambda m: hashlib.sha512(ctx + b"com" + m).digest(),
        HX=lambda tag, m: G.reduce_wide(hashlib.sha512(ctx + tag + m).digest()),
    )


def _secp256k1(taproot: bool) -> Ciphersuite:
    ctx = b"FROST-secp256k1-SHA256-TR-v1" if taproot else b"FROST-secp256k1-SHA256-v1"
    G: Secp256k1Group = SECP256K1
    h2 = ((lambda m: G.scalar(int.from_bytes(tagged_hash(b"BIP0340/challenge", m), "big")))
          if taproot else (lambda m: hash_to_field_secp256k1(m, ctx + b"chal")))
    return Ciphersuite(
        name="FROST(secp256k1, SHA-256)" + (" Taproot" if taproot else ""),
        scheme="schnorr-bip340" if taproot else "frost-secp256k1", context=ctx, G=G,
        H1=lambda m: hash_to_field_secp256k1(m, ctx + b"rho"),
        H2=h2,
        H3=lambda m: hash_to_field_secp256k1(m, ctx + b"nonce"),
        H4=lambda m: hashlib.sha256(ctx + b"msg" + m).digest(),
        H5=lambda m: hashlib.sha256(ctx + b"com" + m).digest(),
        HX=lambda tag, m: hash_to_field_secp256k1(m, ctx + tag),
        taproot=taproot,
    )


FROST_ED25519 = _ed25519()
FROST_SECP256K1 = _secp256k1(taproot=False)
FROST_SECP256K1_TR = _secp256k1(taproot=True)

#: scheme name (as ``POST /v1/keys`` will take it) -> ciphersuite
SUITES = {s.scheme: s for s in (FROST_ED25519, FROST_SECP256K1, FROST_SECP256K1_TR)}


def suite_for(scheme: str) -> Ciphersuite:
    try:
        return SUITES[scheme]
    except KeyError:
        raise EncodingError(f"unknown FROST scheme {scheme!r}") from None
