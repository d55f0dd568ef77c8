"""Paillier encryption and ring-Pedersen commitments on gmpy2.

Paillier: N = p q with p, q Blum primes (p ≡ q ≡ 3 mod 4), generator 1 + N,
``enc(m, ρ) = (1 + N)^m ρ^N mod N²``. Plaintexts are signed integers taken mod N;
``decrypt_signed`` returns the representative in (-N/2, N/2].

Ring-Pedersen: N̂ = P Q with P, Q safe primes, t = τ² mod N̂, s = t^λ mod N̂;
``commit(x, y) = s^x t^y mod N̂``.

Exponentiation discipline (DESIGN.md): an exponent that is secret goes through
``gmpy2.powmod_sec`` (constant time; it refuses exponents <= 0, so a signed secret x with
|x| < 2^b is raised as base^(x + 2^b) · base^(-2^b)); public exponents use ``gmpy2.powmod``;
CRT is used only by the holder of the factors, on its own modulus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import gmpy2
from gmpy2 import mpz

from appliance.errors import EncodingError, ParameterError
from appliance.tss.ctinv import crt_combine, crt_inverses, inv_mod_prime, lift_inverse, n_inverse_mod_phi
from appliance.tss.group import RNG
from appliance.tss.primes import PrimeSource

DEFAULT_PAILLIER_BITS = 3072
ALLOWED_PAILLIER_BITS = (2048, 3072)


# --------------------------------------------------------------------------------------
# exponentiation helpers


def pow_sec(base: int, exp: int, mod: int) -> mpz:
    """base^exp mod m for a secret exponent exp >= 0, in constant time."""
    if exp == 0:
        return mpz(1) % mod
    return gmpy2.powmod_sec(base, exp, mod)


def pow_sec_signed(base: int, exp: int, mod: int, bound_bits: int,
                   inv_offset: int | None = None) -> mpz:
    """base^exp mod m for a secret signed exponent with |exp| < 2^bound_bits.

    Computed as base^(exp + 2^b) · base^(-2^b): the secret exponent is always positive and
    its sign never decides a branch. ``base`` must be invertible mod m. ``inv_offset`` is
    base^(-2^b) when the caller has it already (a fixed base)."""
    offset = 1 << bound_bits
    shifted = exp + offset
    if not 0 < shifted < 2 * offset:
        raise ParameterError("secret exponent outside its declared range")
    if inv_offset is None:
        inv_offset = gmpy2.powmod(base, -offset, mod)
    return gmpy2.powmod_sec(base, shifted, mod) * inv_offset % mod


def pow_pub(base: int, exp: int, mod: int) -> mpz:
    """base^exp mod m for a public (possibly negative) exponent."""
    return gmpy2.powmod(base, exp, mod)


def pow_secret_base(base: int, exp: int, mod: int, rng: RNG) -> mpz:
    """base^exp mod m for a secret base and a public exponent (a proof's ρ^e).

    A negative exponent needs the inverse of the base; gmpy2 inverts in variable time, so the
    base is blinded by a random unit b first: ρ^-1 = (ρ·b)^-1 · b."""
    if exp >= 0:
        return gmpy2.powmod(base, exp, mod)
    while True:
        b = mpz(1 + rng.randbelow(int(mod) - 1))
        if gmpy2.gcd(b, mod) == 1:
            break
    inv = gmpy2.invert(mpz(base) * b % mod, mod) * b % mod
    return gmpy2.powmod(inv, -exp, mod)


def in_unit_group(x: int, mod: int) -> bool:
    """x in Z*_mod, given as its canonical representative."""
    return 0 < x < mod and gmpy2.gcd(x, mod) == 1


# --------------------------------------------------------------------------------------
# Paillier


@dataclass(frozen=True)
class PaillierPublicKey:
    N: mpz

    def __post_init__(self) -> None:
        object.__setattr__(self, "N", mpz(self.N))

    @cached_property
    def N2(self) -> mpz:
        return self.N * self.N

    @property
    def bits(self) -> int:
        return int(self.N.bit_length())

    def check_ciphertext(self, c: int) -> mpz:
        """Reject anything outside Z*_{N²} (0, multiples of p or q, >= N²)."""
        c = mpz(c)
        if not in_unit_group(c, self.N2):
            raise EncodingError("ciphertext not in Z*_{N^2}")
        return c

    def random_rho(self, rng: RNG) -> mpz:
        """Uniform element of Z*_N."""
        while True:
            r = mpz(1 + rng.randbelow(int(self.N) - 1))
            if gmpy2.gcd(r, self.N) == 1:
                return r

    def encrypt(self, m: int, rho: int) -> mpz:
        """(1 + N)^m ρ^N mod N² (m signed; (1+N)^m = 1 + mN mod N²)."""
        gm = (1 + (mpz(m) % self.N) * self.N) % self.N2
        return gm * pow_pub(rho, self.N, self.N2) % self.N2

    def add(self, c1: int, c2: int) -> mpz:
        return mpz(c1) * c2 % self.N2

    def mul(self, c: int, k: int) -> mpz:
        """c^k mod N² for a public k (negative k inverts)."""
        return pow_pub(c, k, self.N2)

    def mul_secret(self, c: int, k: int, bound_bits: int) -> mpz:
        """c^k mod N² for a secret signed k with |k| < 2^bound_bits."""
        return pow_sec_signed(c, k, self.N2, bound_bits)

    def to_bytes(self) -> bytes:
        return int(self.N).to_bytes((self.bits + 7) // 8, "big")


@dataclass(frozen=True)
class PaillierSecretKey:
    p: mpz
    q: mpz
    public: PaillierPublicKey = field(init=False)

    def __post_init__(self) -> None:
        p, q = mpz(self.p), mpz(self.q)
        if p == q:
            raise ParameterError("Paillier primes must differ")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "public", PaillierPublicKey(p * q))

    def __repr__(self) -> str:  # never print the factors
        return f"PaillierSecretKey(N={self.public.bits} bits)"

    @property
    def N(self) -> mpz:
        return self.public.N

    @cached_property
    def phi(self) -> mpz:
        return (self.p - 1) * (self.q - 1)

    @cached_property
    def _crt(self) -> dict[str, mpz]:
        """The CRT constants, once per key object and without inverting a secret by GCD.

        q^-1 mod p by Fermat, p^-1 mod q from it (``crt_inverses``), (q²)^-1 mod p² by a
        Newton step. hp = L_p((1+N)^(p-1) mod p²)^-1 has a closed form: (1+N)^(p-1) ≡
        1 + (p-1)N (mod p²), so L_p(...) = (p-1)q ≡ -q (mod p) and hp = -(q^-1) mod p."""
        p, q = self.p, self.q
        q_inv_p, p_inv_q = crt_inverses(p, q)
        p2, q2 = p * p, q * q
        q_inv_p2 = lift_inverse(q, q_inv_p, p)
        return {
            "p2": p2,
            "q2": q2,
            "q2_inv_p2": q_inv_p2 * q_inv_p2 % p2,
            "q_inv_p": q_inv_p,
            "hp": p - q_inv_p,
            "hq": q - p_inv_q,
            "phi_p2": p * (p - 1),
            "phi_q2": q * (q - 1),
        }

    @property
    def q_inv_p(self) -> mpz:
        """q^-1 mod p (secret)."""
        return self._crt["q_inv_p"]

    @cached_property
    def n_inv_phi(self) -> mpz:
        """N^-1 mod φ(N) (secret; ParameterError when gcd(N, φ(N)) != 1)."""
        return n_inverse_mod_phi(self.p, self.q, self.q_inv_p)

    def decrypt(self, c: int) -> mpz:
        """The plaintext in [0, N), by CRT (Paillier's decryption with the factors)."""
        c = self.public.check_ciphertext(c)
        k = self._crt
        p, q = self.p, self.q
        mp = (pow_sec(c % k["p2"], p - 1, k["p2"]) - 1) // p * k["hp"] % p
        mq = (pow_sec(c % k["q2"], q - 1, k["q2"]) - 1) // q * k["hq"] % q
        return crt_combine(mp, mq, p, q, k["q_inv_p"])

    def decrypt_signed(self, c: int) -> mpz:
        m = self.decrypt(c)
        return m - self.N if m > self.N // 2 else m

    def recover_rho(self, c: int, m: int) -> mpz:
        """The ρ with c = enc(m, ρ), m = dec(c) (needed by Π^dec): ρ = (c mod N)^(N^-1 mod φ).

        c = (1+N)^m ρ^N and (1+N)^m ≡ 1 (mod N), so c ≡ ρ^N (mod N): the secret plaintext m
        takes no part (no inverse of 1 + mN is needed); it stays in the signature as the
        statement's other half."""
        c = self.public.check_ciphertext(c)
        return self.pow_n(c % self.N, self.n_inv_phi)

    def pow_n2(self, base: int, exp: int) -> mpz:
        """base^exp mod N² for a secret exp >= 0 and base in Z*_{N²}, by CRT."""
        k = self._crt
        xp = pow_sec(base % k["p2"], exp % k["phi_p2"], k["p2"])
        xq = pow_sec(base % k["q2"], exp % k["phi_q2"], k["q2"])
        return crt_combine(xp, xq, k["p2"], k["q2"], k["q2_inv_p2"])

    def pow_n(self, base: int, exp: int) -> mpz:
        """base^exp mod N for exp >= 0 and base in Z*_N, by CRT (the holder's own modulus)."""
        p, q = self.p, self.q
        xp = pow_sec(base % p, exp % (p - 1), p)
        xq = pow_sec(base % q, exp % (q - 1), q)
        return crt_combine(xp, xq, p, q, self.q_inv_p)

    def encrypt(self, m: int, rho: int) -> mpz:
        """enc(m, ρ) with the factors: ρ^N by CRT mod p² and q².

        The exponent N is public and is not reduced mod φ(p²) (that would make it depend on
        the secret p), so the public-exponent ``powmod`` is the right one here."""
        N, N2 = self.N, self.public.N2
        k = self._crt
        gm = (1 + (mpz(m) % N) * N) % N2
        xp = pow_pub(rho % k["p2"], N, k["p2"])
        xq = pow_pub(rho % k["q2"], N, k["q2"])
        return gm * crt_combine(xp, xq, k["p2"], k["q2"], k["q2_inv_p2"]) % N2


def generate_paillier(bits: int, primes: PrimeSource) -> PaillierSecretKey:
    """A Paillier key with N of exactly ``bits`` bits from two Blum primes."""
    if bits not in ALLOWED_PAILLIER_BITS:
        raise ParameterError(f"Paillier modulus must be one of {ALLOWED_PAILLIER_BITS} bits")
    while True:
        p = primes.blum_prime(bits // 2)
        q = primes.blum_prime(bits // 2)
        if p != q:
            return PaillierSecretKey(mpz(p), mpz(q))


# --------------------------------------------------------------------------------------
# ring-Pedersen


@dataclass(frozen=True)
class RingPedersenParams:
    """Public ring-Pedersen parameters (N̂, s, t)."""

    N: mpz
    s: mpz
    t: mpz

    def __post_init__(self) -> None:
        for name in ("N", "s", "t"):
            object.__setattr__(self, name, mpz(getattr(self, name)))

    @property
    def bits(self) -> int:
        return int(self.N.bit_length())

    def check(self) -> None:
        """Basic sanity of received parameters (the rest is Π^prm's job)."""
        if self.N % 2 == 0 or self.N < 3:
            raise EncodingError("ring-Pedersen modulus must be odd")
        for v in (self.s, self.t):
            if not in_unit_group(v, self.N) or v == 1:
                raise EncodingError("ring-Pedersen s, t must be non-trivial units mod N̂")
        if self.s == self.t:
            raise EncodingError("ring-Pedersen s and t must differ")

    def commit(self, x: int, y: int, x_bits: int, y_bits: int) -> mpz:
        """s^x t^y mod N̂ for secret signed x, y with |x| < 2^x_bits, |y| < 2^y_bits.

        As ``pow_sec_signed``, with the public offset powers s^(-2^b), t^(-2^b) cached per
        parameter set (s and t are fixed bases)."""
        return (
            self._signed_pow(self.s, x, x_bits) * self._signed_pow(self.t, y, y_bits) % self.N
        )

    def _signed_pow(self, base: mpz, exp: int, bits: int) -> mpz:
        cache = self.__dict__.setdefault("_offset_cache", {})
        inv = cache.get((base, bits))
        if inv is None:
            inv = cache[(base, bits)] = gmpy2.powmod(base, -(1 << bits), self.N)
        return pow_sec_signed(base, exp, self.N, bits, inv_offset=inv)

    def commit_public(self, x: int, y: int) -> mpz:
        """s^x t^y mod N̂ for public exponents (verification side)."""
        return pow_pub(self.s, x, self.N) * pow_pub(self.t, y, self.N) % self.N


@dataclass(frozen=True)
class RingPedersenSecret:
    """The secret behind ring-Pedersen parameters: safe primes P, Q and λ with s = t^λ."""

    p: mpz
    q: mpz
    lam: mpz
    params: RingPedersenParams

    def __repr__(self) -> str:
        return f"RingPedersenSecret(N̂={self.params.bits} bits)"

    @cached_property
    def phi(self) -> mpz:
        return (self.p - 1) * (self.q - 1)

    @cached_property
    def q_inv_p(self) -> mpz:
        """Q^-1 mod P (secret), by Fermat in constant time."""
        return inv_mod_prime(self.q, self.p)

    def commit_fast(self, x: int, y: int) -> mpz:
        """s^x t^y mod N̂ for the holder of the secret: t^(λx + y) by CRT over P and Q.

        For verifying proofs made against one's own parameters; constant time, since the
        exponent depends on λ."""
        e = (self.lam * x + y) % self.phi
        t = self.params.t
        xp = pow_sec(t % self.p, e % (self.p - 1), self.p)
        xq = pow_sec(t % self.q, e % (self.q - 1), self.q)
        return crt_combine(xp, xq, self.p, self.q, self.q_inv_p)


def rp_commit_public(
    params: RingPedersenParams, x: int, y: int, own: "RingPedersenSecret | None" = None
) -> mpz:
    """s^x t^y mod N̂ for public x, y; fast when the caller owns the parameters."""
    if own is not None and own.params == params:
        return own.commit_fast(x, y)
    return params.commit_public(x, y)


def generate_ring_pedersen(bits: int, primes: PrimeSource, rng: RNG) -> RingPedersenSecret:
    """Ring-Pedersen parameters with N̂ of exactly ``bits`` bits from two safe primes."""
    if bits not in ALLOWED_PAILLIER_BITS:
        raise ParameterError(f"ring-Pedersen modulus must be one of {ALLOWED_PAILLIER_BITS} bits")
    while True:
        p = mpz(primes.safe_prime(bits // 2))
        q = mpz(primes.safe_prime(bits // 2))
        if p != q:
            break
    return ring_pedersen_from_primes(p, q, rng)


def ring_pedersen_from_primes(p: int, q: int, rng: RNG) -> RingPedersenSecret:
    p, q = mpz(p), mpz(q)
    N = p * q
    phi = (p - 1) * (q - 1)
    while True:
        tau = mpz(1 + rng.randbelow(int(N) - 1))
        if gmpy2.gcd(tau, N) != 1:
            continue
        t = tau * tau % N
        lam = mpz(1 + rng.randbelow(int(phi) - 1))
        s = pow_sec(t, lam, N)
        if t != 1 and s != 1 and s != t:
            return RingPedersenSecret(p, q, lam, RingPedersenParams(N, s, t))
