"""Checks and samplers shared by the proofs: canonical ranges and random masks.

Every verifier calls these on every proof field before using it, so a value outside its
canonical range (x -> x + N, x -> N - x where that leaves the range, a point that is not on
the curve) fails with ``ProofError`` instead of being reduced silently.
"""

from __future__ import annotations

import gmpy2
from gmpy2 import mpz

from appliance.errors import ProofError
from appliance.tss.group import Q, RNG, Point
from appliance.tss.paillier import in_unit_group


def require(condition: bool, what: str) -> None:
    """Raise ProofError(what) unless ``condition``."""
    if not condition:
        raise ProofError(what)


def check_int(x: object, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, type(mpz(0)))):
        raise ProofError(f"{name} is not an integer")
    return int(x)


def check_signed_range(x: object, bits: int, name: str) -> int:
    """|x| <= 2^bits (the paper's x ∈ ±2^bits)."""
    v = check_int(x, name)
    require(-(1 << bits) <= v <= (1 << bits), f"{name} outside ±2^{bits}")
    return v


def check_signed_range_scaled(x: object, bits: int, scale: int, name: str) -> int:
    """|x| <= 2^bits · scale (the paper's ±2^bits · N̂)."""
    v = check_int(x, name)
    bound = (1 << bits) * int(scale)
    require(-bound <= v <= bound, f"{name} outside ±2^{bits}·N")
    return v


def check_unit(x: object, modulus: int, name: str) -> mpz:
    """x ∈ Z*_modulus, as its canonical representative in (0, modulus)."""
    v = check_int(x, name)
    require(in_unit_group(v, modulus), f"{name} not in Z*_N")
    return mpz(v)


def check_residue(x: object, modulus: int, name: str) -> mpz:
    """x ∈ [0, modulus)."""
    v = check_int(x, name)
    require(0 <= v < modulus, f"{name} not in [0, N)")
    return mpz(v)


def check_scalar(x: object, name: str) -> int:
    v = check_int(x, name)
    require(0 <= v < Q, f"{name} not a scalar in [0, q)")
    return v


def check_point(x: object, name: str) -> Point:
    require(isinstance(x, Point) and not x.is_infinity, f"{name} is not a curve point")
    return x  # type: ignore[return-value]


def check_bit(x: object, name: str) -> int:
    v = check_int(x, name)
    require(v in (0, 1), f"{name} is not a bit")
    return v


def sample_signed(rng: RNG, bits: int) -> int:
    """Uniform in ±2^bits."""
    return rng.randbelow((1 << (bits + 1)) + 1) - (1 << bits)


def sample_signed_scaled(rng: RNG, bits: int, scale: int) -> int:
    """Uniform in ±2^bits · scale."""
    bound = (1 << bits) * int(scale)
    return rng.randbelow(2 * bound + 1) - bound


def sample_unit(rng: RNG, modulus: int) -> mpz:
    """Uniform in Z*_modulus."""
    while True:
        r = mpz(1 + rng.randbelow(int(modulus) - 1))
        if gmpy2.gcd(r, modulus) == 1:
            return r
