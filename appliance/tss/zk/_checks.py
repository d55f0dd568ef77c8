"""Checks and samplers shared by the proofs: canonical ranges and random masks.

Every verifier calls these on every proof field before using it, so a value outside its
canonical range (x -> x + N, x -> N - x where that leaves the range, a point that is not on
the curve) fails with ``ProofError`` instead of being reduced silently. Each takes ``check``,
the number of the verifier's check (in the proof module's docstring) that it is part of, and
the ``ProofError`` it raises carries that number.
"""

from __future__ import annotations

import gmpy2
from gmpy2 import mpz

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import Q, RNG, Point
from appliance.tss.paillier import PaillierSecretKey, in_unit_group, pow_sec


def require(condition: bool, what: str, *, check: int) -> None:
    """Raise ``ProofError(what, check=check)`` unless ``condition``."""
    if not condition:
        raise ProofError(what, check=check)


def check_int(x: object, name: str, *, check: int) -> int:
    """An int (or mpz), never a bool."""
    if isinstance(x, bool) or not isinstance(x, (int, type(mpz(0)))):
        raise ProofError(f"{name} is not an integer", check=check)
    return int(x)


def check_signed_range(x: object, bits: int, name: str, *, check: int) -> int:
    """|x| <= 2^bits (the paper's x ∈ ±2^bits)."""
    v = check_int(x, name, check=check)
    require(-(1 << bits) <= v <= (1 << bits), f"{name} outside ±2^{bits}", check=check)
    return v


def check_signed_range_scaled(x: object, bits: int, scale: int, name: str, *, check: int) -> int:
    """|x| <= 2^bits · scale (the paper's ±2^bits · N̂)."""
    v = check_int(x, name, check=check)
    bound = (1 << bits) * int(scale)
    require(-bound <= v <= bound, f"{name} outside ±2^{bits}·N", check=check)
    return v


def check_modulus(x: object, bits: int, name: str, *, check: int) -> mpz:
    """A modulus of exactly ``bits`` bits that is odd (what Π^mod and Π^prm require first)."""
    n = mpz(check_int(x, name, check=check))
    require(n > 0 and n.bit_length() == bits, f"{name} is not {bits} bits", check=check)
    require(n % 2 == 1, f"{name} is even", check=check)
    return n


def check_unit(x: object, modulus: int, name: str, *, check: int) -> mpz:
    """x ∈ Z*_modulus, as its canonical representative in (0, modulus)."""
    v = check_int(x, name, check=check)
    require(in_unit_group(v, modulus), f"{name} not in Z*_N", check=check)
    return mpz(v)


def check_residue(x: object, modulus: int, name: str, *, check: int) -> mpz:
    """x ∈ [0, modulus)."""
    v = check_int(x, name, check=check)
    require(0 <= v < modulus, f"{name} not in [0, N)", check=check)
    return mpz(v)


def check_scalar(x: object, name: str, *, check: int) -> int:
    v = check_int(x, name, check=check)
    require(0 <= v < Q, f"{name} not a scalar in [0, q)", check=check)
    return v


def check_point(x: object, name: str, *, check: int) -> Point:
    require(isinstance(x, Point) and not x.is_infinity, f"{name} is not a curve point", check=check)
    return x  # type: ignore[return-value]


def check_bit(x: object, name: str, *, check: int) -> int:
    v = check_int(x, name, check=check)
    require(v in (0, 1), f"{name} is not a bit", check=check)
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


class SignedSecretPowers:
    """base^x mod m for many secret signed exponents |x| < 2^bound_bits and one base.

    As ``pow_sec_signed``: base^(x + 2^b) in constant time, times the public offset power
    base^(-2^b); here the offset power is computed once for every exponent (proofs that
    repeat m times raise the same base m times). ``own_key``: the caller's own
    ``PaillierSecretKey`` when m is its N², so the constant-time part runs by CRT."""

    def __init__(
        self, base: int, mod: int, bound_bits: int, own_key: PaillierSecretKey | None = None
    ) -> None:
        if own_key is not None and own_key.public.N2 != mod:
            raise ValueError("own_key is not the key of this modulus")
        self._base = mpz(base) % mod
        self._mod = mpz(mod)
        self._offset = 1 << bound_bits
        self._inv_part = gmpy2.powmod(self._base, -self._offset, self._mod)
        self._own_key = own_key

    def __call__(self, x: int) -> mpz:
        shifted = x + self._offset
        if not 0 < shifted < 2 * self._offset:
            raise ParameterError("secret exponent outside its declared range")
        if self._own_key is not None:
            high = self._own_key.pow_n2(self._base, shifted)
        else:
            high = pow_sec(self._base, shifted, self._mod)
        return high * self._inv_part % self._mod


def check_repeated(x: object, m: int, name: str, *, check: int) -> tuple:
    """A tuple or list of exactly m entries (one per repetition of a proof that repeats);
    each entry is still to be checked by the caller."""
    require(isinstance(x, (tuple, list)) and len(x) == m, f"{name} does not have {m} entries", check=check)
    return tuple(x)  # type: ignore[arg-type]
