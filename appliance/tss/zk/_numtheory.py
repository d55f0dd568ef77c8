"""Number theory the proofs share: fixed-base powers for public exponents, and powers modulo
the caller's own ring-Pedersen modulus by CRT.

Both follow DESIGN.md's exponentiation discipline: ``FixedBasePowers`` is a speed trick for
*public* bases and *public* exponents only (a verifier's checks); ``rp_pow_public`` uses CRT
only when the caller owns the factors of N̂, and then raises in constant time, because the
reduced exponents depend on the secret factors.
"""

from __future__ import annotations

import gmpy2
from gmpy2 import mpz

from appliance.tss.paillier import (
    RingPedersenParams,
    RingPedersenSecret,
    crt_combine,
    pow_pub,
    pow_sec,
)


class FixedBasePowers:
    """base^e mod m for many public exponents 0 <= e < 2^max_bits and one public base.

    Yao's fixed-base method with signed digits: the table holds base^(2^(w·j)) and its
    inverse for every digit position j (about 2·max_bits squarings, paid once); each power
    then costs one multiplication per nonzero digit plus 2·2^(w-1) to fold the buckets:
    about a quarter of the work of ``powmod`` at 2048-3072 bits (w = 7 measured best at
    both). Not for secrets: the work done depends on the exponent's digits. ``base`` must
    be invertible mod m.
    """

    def __init__(self, base: int, mod: int, max_bits: int, window: int | None = None) -> None:
        mod = mpz(mod)
        base = mpz(base) % mod
        w = window if window is not None else 7
        if w < 2:
            raise ValueError("window must be at least 2 bits")
        self._mod = mod
        self._w = w
        self._max_bits = max_bits
        # signed recoding can carry one digit past the top
        ndigits = max_bits // w + 2
        pos = [base]
        x = base
        for _ in range(ndigits - 1):
            for _ in range(w):
                x = x * x % mod
            pos.append(x)
        inv = gmpy2.invert(base, mod)
        neg = [inv]
        x = inv
        for _ in range(ndigits - 1):
            for _ in range(w):
                x = x * x % mod
            neg.append(x)
        self._pos = pos
        self._neg = neg

    def __call__(self, e: int) -> mpz:
        e = int(e)
        if e < 0 or e.bit_length() > self._max_bits:
            raise ValueError("exponent outside the table's range")
        w = self._w
        mod = self._mod
        half = 1 << (w - 1)
        full = 1 << w
        mask = full - 1
        buckets: list[mpz | None] = [None] * (half + 1)
        pos, neg = self._pos, self._neg
        j = 0
        while e:
            d = e & mask
            e >>= w
            if d >= half:
                # digit d - 2^w (negative), carry one into the next position
                d = full - d
                e += 1
                t = neg[j]
            else:
                t = pos[j]
            if d:
                b = buckets[d]
                buckets[d] = t if b is None else b * t % mod
            j += 1
        # Π_d B_d^d as a running product from the top digit value down
        acc = mpz(1)
        run = mpz(1)
        started = False
        for d in range(half, 0, -1):
            b = buckets[d]
            if b is not None:
                run = b if not started else run * b % mod
                started = True
            if started:
                acc = acc * run % mod
        return acc % mod


def rp_pow_public(
    params: RingPedersenParams, base: int, exp: int, own: RingPedersenSecret | None = None
) -> mpz:
    """base^exp mod N̂ for a public base in Z*_N̂ and a public exponent (possibly negative).

    When the caller owns the parameters (``own``), by CRT over its primes P, Q with the
    exponent reduced mod P-1 and Q-1; those reductions depend on the secret factors, so the
    halves are raised in constant time. Otherwise a plain public exponentiation."""
    if own is None or own.params != params:
        return pow_pub(base, exp, params.N)
    p, q = own.p, own.q
    xp = pow_sec(mpz(base) % p, mpz(exp) % (p - 1), p)
    xq = pow_sec(mpz(base) % q, mpz(exp) % (q - 1), q)
    return crt_combine(xp, xq, p, q, own.q_inv_p)
