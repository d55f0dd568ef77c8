"""Inverses of secret values without the variable-time extended GCD.

``gmpy2.invert`` runs a binary extended GCD whose steps depend on both operands, and a
timing or cache trace of it leaks them (the "certified side channels" class, 2020). The
holder of a Paillier or ring-Pedersen key needs a few inverses involving its secret primes;
each is computed here from a constant-time exponentiation (``gmpy2.powmod_sec``) and plain
multiplications and exact divisions, never by inverting modulo a secret:

- ``inv_mod_prime``: x^-1 mod a prime p is x^(p-2) mod p (Fermat), raised in constant time;
- ``lift_inverse``: from x^-1 mod p to x^-1 mod p² by one Newton step, u·(2 - x·u);
- ``crt_inverses``: q^-1 mod p by Fermat and p^-1 mod q from it with no second inversion,
  since q·(q^-1 mod p) + p·(p^-1 mod q) = 1 + pq exactly;
- ``inv_by_swap``: a^-1 mod a secret m from m^-1 mod a: if m·u = 1 + k·a then a·(-k) ≡ 1
  (mod m), so nothing is inverted modulo m;
- ``n_inverse_mod_phi``: N^-1 mod φ(N) for N = p q, by ``inv_by_swap`` with φ^-1 mod N
  (Fermat mod p and mod q, joined by CRT).

Callers pass only odd moduli (``powmod_sec`` requires them) larger than 3.
"""

from __future__ import annotations

import gmpy2
from gmpy2 import mpz

from appliance.errors import ParameterError


def crt_combine(xp: int, xq: int, p: int, q: int, q_inv_p: int) -> mpz:
    """The x mod pq with x ≡ xp (mod p) and x ≡ xq (mod q); q_inv_p = q^-1 mod p."""
    h = (xp - xq) * q_inv_p % p
    return mpz(xq + h * q)


def inv_mod_prime(x: int, p: int) -> mpz:
    """x^-1 mod the odd prime p as x^(p-2) mod p, in constant time (0 when p divides x)."""
    p = mpz(p)
    if p <= 3 or p % 2 == 0:
        raise ParameterError("Fermat inversion needs an odd prime above 3")
    return gmpy2.powmod_sec(mpz(x) % p, p - 2, p)


def lift_inverse(x: int, x_inv_p: int, p: int) -> mpz:
    """x^-1 mod p² from u = x^-1 mod p: x·u = 1 + t·p, so x·u·(2 - x·u) = 1 - t²p²."""
    p2 = mpz(p) * p
    u = mpz(x_inv_p)
    return u * (2 - mpz(x) * u) % p2


def crt_inverses(p: int, q: int) -> tuple[mpz, mpz]:
    """(q^-1 mod p, p^-1 mod q) for distinct odd primes p, q, with one Fermat inversion.

    With u = q^-1 mod p in [1, p) and v = p^-1 mod q in [1, q), q·u + p·v ≡ 1 mod pq and lies
    in (1, 2pq), so it is 1 + pq and v = (1 + pq - q·u) / p exactly."""
    p, q = mpz(p), mpz(q)
    u = inv_mod_prime(q, p)
    v, rem = divmod(1 + p * q - q * u, p)
    if rem != 0 or not 0 < v < q:
        raise ParameterError("the CRT primes are not distinct primes")
    return u, v


def inv_by_swap(a: int, m: int, m_inv_a: int) -> mpz:
    """a^-1 mod m given m^-1 mod a (a, m coprime): m·u = 1 + k·a, so a^-1 ≡ -k (mod m)."""
    a, m = mpz(a), mpz(m)
    k, rem = divmod(m * mpz(m_inv_a) - 1, a)
    if rem != 0:
        raise ParameterError("m_inv_a is not the inverse of m mod a")
    return (-k) % m


def n_inverse_mod_phi(p: int, q: int, q_inv_p: int) -> mpz:
    """N^-1 mod φ(N) for N = p q (distinct odd primes, q_inv_p = q^-1 mod p).

    φ^-1 mod N comes from Fermat inversions mod p and mod q (both public-size exponents of
    the secret primes, raised in constant time); ``inv_by_swap`` turns it into N^-1 mod φ.
    Raises ParameterError when gcd(N, φ(N)) != 1 (then no inverse exists)."""
    p, q = mpz(p), mpz(q)
    N, phi = p * q, (p - 1) * (q - 1)
    phi_inv_n = crt_combine(inv_mod_prime(phi, p), inv_mod_prime(phi, q), p, q, q_inv_p)
    if phi * phi_inv_n % N != 1:
        raise ParameterError("gcd(N, φ(N)) != 1")
    return inv_by_swap(N, phi, phi_inv_n)
