"""Malicious moduli and best-effort cheating provers for the Π^mod / Π^fac / Π^prm tests.

Nothing here is used outside tests. The primes built here are ordinary random primes
(gmpy2.next_prime), never safe primes: the safe and Blum primes come from the test-only
prime file through tests/conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import lcm, prod

import gmpy2
from gmpy2 import mpz

from appliance.tss.group import RNG
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import mod


@dataclass(frozen=True)
class BitForgeModulus:
    """N = p_1 ··· p_16 · L: sixteen ~16-bit primes and one large prime (the 2023 "BitForge"
    construction against CGGMP implementations that skipped Π^mod / Π^fac checks)."""

    N: mpz
    small: tuple[int, ...]
    large: mpz

    @property
    def primes(self) -> list[int]:
        return [*self.small, int(self.large)]


def bitforge_modulus(
    rng: RNG, bits: int = 2048, count: int = 16, small_bits: int = 16
) -> BitForgeModulus:
    """Blum primes throughout (p ≡ 3 mod 4), the friendliest case for a Π^mod cheater; N has
    exactly ``bits`` bits."""
    small: list[int] = []
    x = mpz((1 << (small_bits - 1)) + rng.randbelow(1 << (small_bits - 3)))
    while len(small) < count:
        x = gmpy2.next_prime(x)
        if x % 4 == 3:
            small.append(int(x))
    assert all(p.bit_length() == small_bits for p in small)
    S = prod(small)
    lo = -(-(1 << (bits - 1)) // S)
    hi = ((1 << bits) - 1) // S
    while True:
        L = gmpy2.next_prime(lo + rng.randbelow(hi - lo - (hi - lo) // 4))
        while L % 4 != 3:
            L = gmpy2.next_prime(L)
        if L <= hi:
            break
    N = mpz(S) * L
    assert N.bit_length() == bits
    return BitForgeModulus(N, tuple(small), L)


def prime_1_mod_4(rng: RNG, bits: int) -> mpz:
    """A random prime p ≡ 1 (mod 4) with its top two bits set (not a Blum prime)."""
    while True:
        p = gmpy2.next_prime(mpz(rng.randbelow(1 << bits)) | (3 << (bits - 2)))
        if p % 4 == 1 and p.bit_length() == bits:
            return p


# --------------------------------------------------------------------------------------
# square and 4th roots modulo a prime (any prime, not only Blum ones)


def sqrt_mod_prime(v: int, p: int) -> mpz | None:
    """A square root of v mod the odd prime p (Tonelli-Shanks), or None."""
    v = mpz(v) % p
    if v == 0:
        return mpz(0)
    if gmpy2.legendre(v, p) != 1:
        return None
    if p % 4 == 3:
        return gmpy2.powmod(v, (p + 1) // 4, p)
    s, t = 0, mpz(p - 1)
    while t % 2 == 0:
        s, t = s + 1, t // 2
    z = 2
    while gmpy2.legendre(z, p) != -1:
        z += 1
    m, c, r, u = s, gmpy2.powmod(z, t, p), gmpy2.powmod(v, (t + 1) // 2, p), gmpy2.powmod(v, t, p)
    while u != 1:
        i, u2 = 0, u
        while u2 != 1:
            u2, i = u2 * u2 % p, i + 1
        b = gmpy2.powmod(c, 1 << (m - i - 1), p)
        m, c, r, u = i, b * b % p, r * b % p, u * b * b % p
    return r


def fourth_root_mod_prime(v: int, p: int) -> mpz | None:
    """Some x with x^4 = v mod p, or None."""
    r = sqrt_mod_prime(v, p)
    if r is None:
        return None
    for cand in (r, (-r) % p):
        x = sqrt_mod_prime(cand, p)
        if x is not None:
            return x
    return None


def crt(residues: list[int], moduli: list[int]) -> mpz:
    M = prod(moduli)
    x = mpz(0)
    for r, m in zip(residues, moduli):
        Mi = M // m
        x += mpz(r) * Mi * gmpy2.invert(Mi, m)
    return x % M


def _canonical_root(roots: list[mpz], primes: list[int], N: int) -> mpz:
    """Among the roots ±roots[k] mod each prime, one that Π^mod's encoding rule accepts
    (below N/2, Jacobi symbol +1) if the first few sign patterns give one."""
    x = crt(roots, primes)
    for k in range(-1, len(primes)):
        cand = x
        if k >= 0:
            flipped = list(roots)
            flipped[k] = (-flipped[k]) % primes[k]
            cand = crt(flipped, primes)
        for c in (cand, N - cand):
            if 2 * c < N and gmpy2.jacobi(c, N) == 1:
                return c
    return x


# --------------------------------------------------------------------------------------
# a Π^mod prover that knows the full factorization of any squarefree N and does its best


def cheat_mod_proof(ctx: ProofContext, N: int, primes: list[int], w: int, m: int) -> mod.ModProof:
    """For each challenge y_i, the first (a, b) for which (-1)^a w^b y has a 4th root modulo
    every prime factor, and that root by CRT in the encoding Π^mod accepts; when no pair
    works, the pair with a square root modulo the most factors and whatever roots exist.
    z_i is a true N-th root of y_i whenever gcd(N, λ(N)) = 1, else 1."""
    N = mpz(N)
    ys = mod._challenge(ctx, N, mpz(w), m)
    lam = lcm(*(int(p) - 1 for p in primes))
    try:
        n_inv = gmpy2.invert(N, lam)
    except ZeroDivisionError:
        n_inv = None
    xs, as_, bs, zs = [], [], [], []
    for y in ys:
        best = None
        for a, b in product((0, 1), (0, 1)):
            v = (-1) ** a * gmpy2.powmod(w, b, N) * y % N
            squares = sum(gmpy2.legendre(v % p, p) >= 0 for p in primes)
            roots = None
            if squares == len(primes):
                roots = [fourth_root_mod_prime(v % p, p) for p in primes]
                if all(r is not None for r in roots):
                    best = (squares + 1, a, b, roots)
                    break
            if best is None or squares > best[0]:
                if roots is None:
                    roots = [fourth_root_mod_prime(v % p, p) for p in primes]
                best = (squares, a, b, [r if r is not None else mpz(1) for r in roots])
        _, a, b, roots = best
        xs.append(int(_canonical_root(roots, primes, N)))
        as_.append(a)
        bs.append(b)
        zs.append(int(gmpy2.powmod(y, n_inv, N)) if n_inv is not None else 1)
    return mod.ModProof(w=int(w), x=tuple(xs), a=tuple(as_), b=tuple(bs), z=tuple(zs))


def jacobi_minus_one(rng: RNG, N: int) -> mpz:
    while True:
        w = mpz(1 + rng.randbelow(int(N) - 1))
        if gmpy2.jacobi(w, N) == -1:
            return w
