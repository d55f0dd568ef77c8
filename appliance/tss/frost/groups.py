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
  33-byte compressed SEC1, strict decoding, never infinity); scalars are their 32-byte
  big-endian encodings, and their arithmetic is libsecp256k1's constant-time
  ``secp256k1_ec_seckey_tweak_add`` / ``_tweak_mul`` / ``_negate`` / ``_verify`` through
  coincurve's cffi bindings. libsecp256k1 refuses a zero key; the zero cases are handled
  without branching on a secret result (``Secp256k1Group.add``).

Both groups give the same ``ScalarOps`` (below), so the protocol code has one path and no
secret scalar goes through a variable-time Python int operation: ints appear only for public
values (identifiers, inverses of Lagrange denominators, multipliers of public points, the
BIP340 challenge and the BIP341 tweak). Received scalars are checked canonical in constant
time (libsodium's reduction, libsecp256k1's seckey_verify), and zero tests use
``hmac.compare_digest``.

No field arithmetic is written here: every point operation is a library call.
"""

from __future__ import annotations

import hmac
from typing import Any, Iterable, Protocol

import coincurve
import nacl.bindings as na
import nacl.exceptions
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT

from appliance.errors import EncodingError
from appliance.tss.group import Q as SECP_Q
from appliance.tss.group import RNG, Point, inverse, point_sum

#: the order of the Ed25519 prime-order subgroup
ED25519_L = 2**252 + 27742317777372353535851937790883648493

Scalar = Any
Element = Any


class ScalarOps(Protocol):
    """The scalar field of a FROST group; a scalar is its canonical 32-byte encoding."""

    order: int
    ZERO: bytes
    ONE: bytes

    def scalar(self, n: int) -> bytes: ...  # a public integer
    def add(self, a: bytes, b: bytes) -> bytes: ...
    def sub(self, a: bytes, b: bytes) -> bytes: ...
    def mul(self, a: bytes, b: bytes) -> bytes: ...
    def neg(self, a: bytes) -> bytes: ...
    def inv(self, a: bytes) -> bytes: ...  # public values only
    def is_zero(self, a: bytes) -> bool: ...
    def random_scalar(self, rng: RNG) -> bytes: ...
    def serialize_scalar(self, a: bytes) -> bytes: ...
    def deserialize_scalar(self, data: bytes) -> bytes: ...


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
        if self.is_zero(a):
            raise ZeroDivisionError("zero has no inverse mod L")
        return na.crypto_core_ed25519_scalar_invert(a)

    def is_zero(self, a: bytes) -> bool:
        return hmac.compare_digest(a, self.ZERO)

    def random_scalar(self, rng: RNG) -> bytes:
        """Uniform nonzero scalar: 64 random bytes reduced mod L (bias below 2^-250)."""
        while True:
            s = na.crypto_core_ed25519_scalar_reduce(rng.token_bytes(64))
            if not self.is_zero(s):
                return s

    def serialize_scalar(self, a: bytes) -> bytes:
        return bytes(a)

    def deserialize_scalar(self, data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise EncodingError("ed25519 scalar must be 32 bytes")
        data = bytes(data)
        # canonical iff reducing it (zero-extended to 64 bytes) gives it back: constant time
        if not hmac.compare_digest(na.crypto_core_ed25519_scalar_reduce(data + bytes(32)), data):
            raise EncodingError("ed25519 scalar not below the group order")
        return data

    # -- elements (libsodium's crypto_core_ed25519_* and crypto_scalarmult_ed25519_*) -

    def base_mul(self, k: bytes) -> bytes:
        if self.is_zero(k):
            return self.IDENTITY
        return na.crypto_scalarmult_ed25519_base_noclamp(k)

    def mul_point(self, P: bytes, k: bytes) -> bytes:
        if self.is_zero(k) or P == self.IDENTITY:
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
    """secp256k1 with libsecp256k1 (points: ``Point``; scalars: 32-byte big-endian encodings).

    Secret-scalar arithmetic is libsecp256k1's constant-time ``secp256k1_ec_seckey_*`` through
    coincurve's cffi bindings (``_SeckeyOps``); ints appear only for public values (small
    identifiers, inverses of Lagrange denominators, multipliers of public points).
    """

    name = "secp256k1"
    order = SECP_Q
    scalar_len = 32
    element_len = 33
    IDENTITY = Point.INFINITY
    ZERO = bytes(32)
    ONE = bytes(31) + b"\x01"

    def __init__(self, ops: "_SeckeyOps | None" = None) -> None:
        self._ops = ops if ops is not None else _SeckeyOps()

    # -- scalars ---------------------------------------------------------------------

    def scalar(self, n: int) -> bytes:
        """A public integer (an identifier, a hash value) as a scalar."""
        return (n % SECP_Q).to_bytes(32, "big")

    def reduce_wide(self, data: bytes) -> bytes:
        """A 48-byte big-endian value mod q (RFC 9380 hash_to_field, L = 48), constant time:
        data = hi·2^192 + lo with hi, lo < 2^192 < q, so the result is hi·2^192 + lo mod q."""
        if len(data) != 48:
            raise ValueError("reduce_wide takes 48 bytes")
        hi, lo = bytes(8) + data[:24], bytes(8) + data[24:]
        return self.add(self.mul(hi, _TWO_192), lo)

    def add(self, a: bytes, b: bytes) -> bytes:
        # libsecp256k1 refuses a zero key: 0 + b is b (a zero operand is public or has
        # probability 2^-256; only that bit shows). A zero sum comes back zeroed by the library.
        if self.is_zero(a):
            return bytes(b)
        return self._ops.tweak_add(a, b)

    def sub(self, a: bytes, b: bytes) -> bytes:
        return self.add(a, self.neg(b))

    def mul(self, a: bytes, b: bytes) -> bytes:
        return self._ops.tweak_mul(a, b)  # a zero operand gives the zeroed (right) result

    def neg(self, a: bytes) -> bytes:
        return self._ops.negate(a)  # -0 = 0: the library leaves a zero key zeroed

    def inv(self, a: bytes) -> bytes:
        """Public values only (Lagrange denominators of public identifiers)."""
        return inverse(int.from_bytes(a, "big")).to_bytes(32, "big")

    def is_zero(self, a: bytes) -> bool:
        return hmac.compare_digest(a, self.ZERO)

    def random_scalar(self, rng: RNG) -> bytes:
        """Uniform in [1, q-1]: 32 random bytes until libsecp256k1 accepts them as a key."""
        while True:
            k = rng.token_bytes(32)
            if self._ops.is_valid_nonzero(k):
                return k

    def serialize_scalar(self, a: bytes) -> bytes:
        return bytes(a)

    def deserialize_scalar(self, data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise EncodingError("secp256k1 scalar must be 32 bytes")
        data = bytes(data)
        if not (self.is_zero(data) or self._ops.is_valid_nonzero(data)):
            raise EncodingError("secp256k1 scalar not below the group order")
        return data

    # -- elements (libsecp256k1 through ``Point``) -----------------------------------

    def base_mul(self, k: bytes) -> Point:
        """k·G for a secret k, without a Python int (libsecp256k1's constant-time ecmult_gen)."""
        if self.is_zero(k):
            return Point.INFINITY
        return Point(coincurve.PublicKey.from_secret(bytes(k)))

    def mul_point(self, P: Point, k: bytes) -> Point:
        """k·P for a public k (binding factors, c·λ_i, powers of identifiers)."""
        return P * int.from_bytes(k, "big")

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


_TWO_192 = (2**192).to_bytes(32, "big")


class _SeckeyOps:
    """libsecp256k1's ``secp256k1_ec_seckey_*`` on 32-byte buffers (coincurve's cffi ``lib``).

    Each call works on a fresh C buffer; on a refused input (a zero key, a zero factor, a
    zero sum) the library zeroes the buffer, which is the right answer for those cases, so
    no result is branched on. Inputs are canonical scalars (< q), which ``deserialize_scalar``,
    ``random_scalar`` and the arithmetic itself guarantee.
    """

    def __init__(self, lib: Any = None) -> None:
        self.lib = lib if lib is not None else _lib
        self.ctx = GLOBAL_CONTEXT.ctx

    def _run(self, fn: Any, a: bytes, *args: bytes) -> bytes:
        buf = _ffi.new("unsigned char[32]", bytes(a))
        fn(self.ctx, buf, *args)
        return bytes(_ffi.buffer(buf, 32))

    def tweak_add(self, a: bytes, b: bytes) -> bytes:
        return self._run(self.lib.secp256k1_ec_seckey_tweak_add, a, bytes(b))

    def tweak_mul(self, a: bytes, b: bytes) -> bytes:
        return self._run(self.lib.secp256k1_ec_seckey_tweak_mul, a, bytes(b))

    def negate(self, a: bytes) -> bytes:
        return self._run(self.lib.secp256k1_ec_seckey_negate, a)

    def is_valid_nonzero(self, a: bytes) -> bool:
        return self.lib.secp256k1_ec_seckey_verify(self.ctx, bytes(a)) == 1


ED25519 = Ed25519Group()
SECP256K1 = Secp256k1Group()
