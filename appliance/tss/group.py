"""secp256k1 scalars and points.

Scalars are Python ints reduced mod ``Q``. Points wrap coincurve (libsecp256k1) public keys;
the point at infinity is a distinct value that can be computed with but never encoded or
decoded: a received point must be on the curve, canonical and not infinity.
Secret scalar multiplications go through libsecp256k1 (constant time).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Iterable, Protocol

import coincurve
import gmpy2

from appliance.errors import EncodingError

#: group order of secp256k1
Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: field prime of secp256k1
P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
SCALAR_BYTES = 32
POINT_BYTES = 33


class RNG(Protocol):
    """The randomness a protocol is handed: anything with ``randbelow`` and ``token_bytes``."""

    def randbelow(self, n: int) -> int: ...

    def token_bytes(self, n: int) -> bytes: ...


class SystemRNG:
    """The operating system's CSPRNG."""

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)

    def token_bytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)


class SeededRNG:
    """A deterministic RNG for tests and reproducible simulations (SHAKE-256 stream)."""

    def __init__(self, seed: bytes | int | str) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(32, "big", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._key = hashlib.sha256(b"appliance/seeded-rng" + seed).digest()
        self._counter = 0

    def token_bytes(self, n: int) -> bytes:
        out = hashlib.shake_256(self._key + self._counter.to_bytes(8, "big")).digest(n)
        self._counter += 1
        return out

    def randbelow(self, n: int) -> int:
        if n <= 0:
            raise ValueError("randbelow needs a positive bound")
        nbytes = (n.bit_length() + 7) // 8 + 8
        while True:
            # rejection sampling on a wide multiple of n: no modulo bias
            x = int.from_bytes(self.token_bytes(nbytes), "big")
            limit = (1 << (8 * nbytes)) - (1 << (8 * nbytes)) % n
            if x < limit:
                return x % n


def default_rng(rng: RNG | None) -> RNG:
    return rng if rng is not None else SystemRNG()


def random_scalar(rng: RNG) -> int:
    """Uniform nonzero scalar."""
    return 1 + rng.randbelow(Q - 1)


def scalar_to_bytes(x: int) -> bytes:
    return (x % Q).to_bytes(SCALAR_BYTES, "big")


def scalar_from_bytes(data: bytes) -> int:
    """Strict: exactly 32 bytes and below Q."""
    if len(data) != SCALAR_BYTES:
        raise EncodingError("scalar must be 32 bytes")
    x = int.from_bytes(data, "big")
    if x >= Q:
        raise EncodingError("scalar not below the group order")
    return x


def inverse(x: int) -> int:
    if x % Q == 0:
        raise ZeroDivisionError("zero has no inverse mod q")
    return pow(x, -1, Q)


def public_inverse(x: int) -> int:
    """x^-1 mod q for a PUBLIC x (for example the re-randomizer ρ, a hash output everyone
    knows): GMP's extended Euclid, which is not constant time; secret values use ``inverse``
    (or ctinv)."""
    if x % Q == 0:
        raise ZeroDivisionError("zero has no inverse mod q")
    return int(gmpy2.invert(x, Q))


def hash_to_scalar(domain: bytes, *parts: bytes) -> int:
    """Hash length-prefixed ``parts`` to a scalar in [0, Q) without modulo bias.

    SHAKE-256 output is read 32 bytes at a time and a block >= Q is rejected (probability
    about 2^-128 per block)."""
    h = hashlib.shake_256()
    for item in (domain, *parts):
        h.update(len(item).to_bytes(8, "big"))
        h.update(item)
    counter = 0
    while True:
        stream = h.copy()
        stream.update(counter.to_bytes(4, "big"))
        x = int.from_bytes(stream.digest(SCALAR_BYTES), "big")
        if x < Q:
            return x
        counter += 1


class Point:
    """A point of secp256k1, or the point at infinity (``Point.INFINITY``)."""

    __slots__ = ("_pk", "_bytes")
    INFINITY: "Point"

    def __init__(self, pk: coincurve.PublicKey | None) -> None:
        self._pk = pk
        self._bytes = pk.format(compressed=True) if pk is not None else b""

    @property
    def is_infinity(self) -> bool:
        return self._pk is None

    @classmethod
    def generator_mul(cls, k: int) -> "Point":
        """k·G, constant time in k (libsecp256k1)."""
        k %= Q
        if k == 0:
            return cls.INFINITY
        return cls(coincurve.PrivateKey(k.to_bytes(32, "big")).public_key)

    def __mul__(self, k: int) -> "Point":
        """k·P, constant time in k (libsecp256k1)."""
        k %= Q
        if k == 0 or self._pk is None:
            return Point.INFINITY
        return Point(self._pk.multiply(k.to_bytes(32, "big")))

    __rmul__ = __mul__

    def __add__(self, other: "Point") -> "Point":
        if self._pk is None:
            return other
        if other._pk is None:
            return self
        return _combine([self._pk, other._pk])

    def __neg__(self) -> "Point":
        if self._pk is None:
            return self
        b = self._bytes
        return Point(coincurve.PublicKey(bytes([b[0] ^ 1]) + b[1:]))

    def __sub__(self, other: "Point") -> "Point":
        return self + (-other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and self._bytes == other._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __repr__(self) -> str:
        return "Point(infinity)" if self._pk is None else f"Point({self._bytes.hex()})"

    def to_bytes(self) -> bytes:
        """Compressed SEC1 (33 bytes). Infinity has no encoding."""
        if self._pk is None:
            raise EncodingError("the point at infinity cannot be encoded")
        return self._bytes

    def to_uncompressed(self) -> bytes:
        if self._pk is None:
            raise EncodingError("the point at infinity cannot be encoded")
        return self._pk.format(compressed=False)

    @property
    def x(self) -> int:
        return int.from_bytes(self.to_bytes()[1:], "big")

    @property
    def y_is_odd(self) -> bool:
        return self.to_bytes()[0] == 3

    @classmethod
    def from_bytes(cls, data: bytes) -> "Point":
        """Strict decoding: 33-byte compressed SEC1, x < p, on the curve (so never infinity)."""
        if not isinstance(data, (bytes, bytearray)) or len(data) != POINT_BYTES:
            raise EncodingError("point must be 33 bytes of compressed SEC1")
        if data[0] not in (2, 3):
            raise EncodingError("point prefix must be 02 or 03")
        if int.from_bytes(data[1:], "big") >= P:
            raise EncodingError("point x-coordinate not below the field prime")
        try:
            return cls(coincurve.PublicKey(bytes(data)))
        except Exception as exc:  # coincurve raises ValueError for a non-curve x
            raise EncodingError("point is not on secp256k1") from exc


Point.INFINITY = Point(None)
G = Point.generator_mul(1)


def _combine(keys: list[coincurve.PublicKey]) -> Point:
    try:
        return Point(coincurve.PublicKey.combine_keys(keys))
    except ValueError:
        return Point.INFINITY


def point_sum(points: Iterable[Point]) -> Point:
    keys = [p._pk for p in points if p._pk is not None]
    if not keys:
        return Point.INFINITY
    if len(keys) == 1:
        return Point(keys[0])
    return _combine(keys)


def multi_mul(pairs: Iterable[tuple[int, Point]]) -> Point:
    """sum of k_i·P_i."""
    return point_sum(p * k for k, p in pairs)


def lagrange_coefficient(x_i: int, xs: Iterable[int], at: int = 0) -> int:
    """Lagrange basis coefficient of x_i over the points ``xs``, evaluated at ``at``."""
    num, den = 1, 1
    for x_j in xs:
        if x_j == x_i:
            continue
        num = num * (at - x_j) % Q
        den = den * (x_i - x_j) % Q
    return num * inverse(den) % Q


def poly_eval(coeffs: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % Q
    return acc


def poly_commit_eval(commitments: list[Point], x: int) -> Point:
    """Evaluate a Feldman commitment vector at x: sum of x^k·C_k."""
    return multi_mul((pow(x, k, Q), c) for k, c in enumerate(commitments))


__all__ = [
    "Q", "P", "G", "Point", "RNG", "SystemRNG", "SeededRNG", "default_rng", "random_scalar",
    "scalar_to_bytes", "scalar_from_bytes", "inverse", "public_inverse", "hash_to_scalar", "point_sum",
    "multi_mul", "lagrange_coefficient", "poly_eval", "poly_commit_eval",
]
