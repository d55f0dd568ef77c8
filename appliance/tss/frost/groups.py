"""The two prime-order groups FROST runs over (RFC 9591 §6.5, §6.5 secp256k1 and §6.1 Ed25519).

Each group object gives RFC 9591's ``Group`` interface (§3.1): ``Order()``, ``Identity()``,
``ScalarBaseMult``, ``ScalarMult``, element addition, ``SerializeElement`` /
``DeserializeElement`` and ``SerializeScalar`` / ``DeserializeScalar``, with the checks the RFC
asks of a deserialization.

- ``ED25519``: arithmetic by libsodium through PyNaCl (``crypto_core_ed25519_*``,
  ``crypto_scalarmult_ed25519_noclamp``, ``crypto_core_ed25519_scalar_*``). Scalars are
  their 32-byte little-endian encodings, elements their 32-byte encodings (RFC 8032), the
  identity ``01 00..00``. A received element must be canonical, on the curve, in the
  prime-order subgroup and not the identity (``crypto_core_ed25519_is_valid_point``); a
  received scalar must be below L.
- ``SECP256K1``: points are ``appliance.tss.group.Point`` (libsecp256k1 through coincurve,
  33-byte compressed SEC1, strict decoding, never infinity); scalars are ints mod q as in the
  rest of ``appliance.tss`` (coincurve exposes no scalar field with zero).

No field arithmetic is written here: every point operation is a library call.
"""

from __future__ import annotations

from typing import Any, Iterable

import nacl.bindings as na
import nacl.exceptions

from appliance.errors import EncodingError
from appliance.tss.group import Q as SECP_Q
from appliance.tss.group import RNG, Point, inverse, point_sum

#: the order of the Ed25519 prime-order subgroup
ED25519_L = 2**252 + 27742317777372353535851937790883648493

Scalar = Any
Element = Any


class Ed25519Group:
    """edwards25519 with libsodium (scalars and elements are their byte encodings)."""

    name = "ed25519"
    order = ED25519_L
    scalar_len = 32
    element_len = 32
    IDENTITY = b"\x01" + bytes(31)
    ZERO = bytes(32)
    ONE = b"\x01" + bytes(31)

    # -- scalars (libsodium's crypto_core_ed25519_scalar_*) ---------------------------

    def scalar(self, n: int) -> bytes:
        """A small public integer (an identifier, a power) as a scalar."""
        return na.crypto_core_ed25519_scalar_reduce((n % self.order).to_bytes(64, "little"))

    def reduce_wide(self, data: bytes) -> bytes:
        """A 64-byte little-endian hash output mod L (RFC 9591 §6.1 H1..H3)."""
        return na.crypto_core_ed25519_scalar_reduce(data)

    def add(self, a: bytes, b: bytes) -> bytes:
        return na.crypto_core_ed25519_scalar_add(a, b)

    def sub(self, a: bytes, b: bytes) -> bytes:
        return na.crypto_core_ed25519_scalar_sub(a, b)

    def mul(self, a: bytes, b: bytes) -> bytes:
        return na.crypto_core_ed25519_scalar_mul(a, b)

    def neg(self, a: bytes) -> bytes:
        return na.crypto_core_ed25519_scalar_negate(a)

    def inv(self, a: bytes) -> bytes:
        if a == self.ZERO:
            raise ZeroDivisionError("zero has no inverse mod L")
        return na.crypto_core_ed25519_scalar_invert(a)

    def is_zero(self, a: bytes) -> bool:
        return a == self.ZERO

    def random_scalar(self, rng: RNG) -> bytes:
        """Uniform nonzero scalar: 64 random bytes reduced mod L (bias below 2^-250)."""
        while True:
            s = na.crypto_core_ed25519_scalar_reduce(rng.token_bytes(64))
            if s != self.ZERO:
                return s

    def serialize_scalar(self, a: bytes) -> bytes:
        return bytes(a)

    def deserialize_scalar(self, data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise EncodingError("ed25519 scalar must be 32 bytes")
        if int.from_bytes(data, "little") >= self.order:
            raise EncodingError("ed25519 scalar not below the group order")
        return bytes(data)

    # -- elements (libsodium's crypto_core_ed25519_* and crypto_scalarmult_ed25519_*) -

    def base_mul(self, k: bytes) -> bytes:
        if k == self.ZERO:
            return self.IDENTITY
        return na.crypto_scalarmult_ed25519_base_noclamp(k)

    def mul_point(self, P: bytes, k: bytes) -> bytes:
        if k == self.ZERO or P == self.IDENTITY:
            return self.IDENTITY
        try:
            return na.crypto_scalarmult_ed25519_noclamp(k, P)
        except nacl.exceptions.RuntimeError:
            # libsodium refuses an identity result; P is a checked prime-order point and
            # k is nonzero below L, so this is unreachable for valid inputs
            raise EncodingError("ed25519 scalar multiplication refused its inputs") from None

    def padd(self, P: bytes, R: bytes) -> bytes:
        return na.crypto_core_ed25519_add(P, R)

    def pneg(self, P: bytes) -> bytes:
        return na.crypto_core_ed25519_sub(self.IDENTITY, P)

    def psum(self, points: Iterable[bytes]) -> bytes:
        acc = self.IDENTITY
        for p in points:
            acc = na.crypto_core_ed25519_add(acc, p)
        return acc

    def is_identity(self, P: bytes) -> bool:
        return P == self.IDENTITY

    def serialize_element(self, P: bytes) -> bytes:
        if P == self.IDENTITY:
            raise EncodingError("the identity element is never serialized")
        return bytes(P)

    def deserialize_element(self, data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise EncodingError("ed25519 element must be 32 bytes")
        if not na.crypto_core_ed25519_is_valid_point(bytes(data)):
            raise EncodingError("ed25519 element is not a canonical prime-order point (or is the identity)")
        return bytes(data)


class Secp256k1Group:
    """secp256k1 with libsecp256k1 (points: ``Point``; scalars: ints mod q)."""

    name = "secp256k1"
    order = SECP_Q
    scalar_len = 32
    element_len = 33
    IDENTITY = Point.INFINITY
    ZERO = 0
    ONE = 1

    def scalar(self, n: int) -> int:
        return n % SECP_Q

    def add(self, a: int, b: int) -> int:
        return (a + b) % SECP_Q

    def sub(self, a: int, b: int) -> int:
        return (a - b) % SECP_Q

    def mul(self, a: int, b: int) -> int:
        return a * b % SECP_Q

    def neg(self, a: int) -> int:
        return -a % SECP_Q

    def inv(self, a: int) -> int:
        return inverse(a)

    def is_zero(self, a: int) -> bool:
        return a % SECP_Q == 0

    def random_scalar(self, rng: RNG) -> int:
        return 1 + rng.randbelow(SECP_Q - 1)

    def serialize_scalar(self, a: int) -> bytes:
        return (a % SECP_Q).to_bytes(32, "big")

    def deserialize_scalar(self, data: bytes) -> int:
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise EncodingError("secp256k1 scalar must be 32 bytes")
        x = int.from_bytes(data, "big")
        if x >= SECP_Q:
            raise EncodingError("secp256k1 scalar not below the group order")
        return x

    def base_mul(self, k: int) -> Point:
        return Point.generator_mul(k)

    def mul_point(self, P: Point, k: int) -> Point:
        return P * k

    def padd(self, P: Point, R: Point) -> Point:
        return P + R

    def pneg(self, P: Point) -> Point:
        return -P

    def psum(self, points: Iterable[Point]) -> Point:
        return point_sum(points)

    def is_identity(self, P: Point) -> bool:
        return P.is_infinity

    def serialize_element(self, P: Point) -> bytes:
        return P.to_bytes()  # EncodingError for infinity

    def deserialize_element(self, data: bytes) -> Point:
        return Point.from_bytes(data)  # strict: 33 bytes, x < p, on the curve


ED25519 = Ed25519Group()
SECP256K1 = Secp256k1Group()
