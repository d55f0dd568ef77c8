"""Π^mod: N is a Paillier-Blum modulus (2024 revision, Fig. 12 as synedrion cites it; Fig. 16
in the 2021 numbering): N = p q with p ≡ q ≡ 3 (mod 4) and gcd(N, φ(N)) = 1.

Public inputs: N (the prover's Paillier key); the proof context; m = params.m = 128.
Witness: the primes p, q (a ``PaillierSecretKey``).

Prover:
  w ← Z_N uniform with Jacobi symbol (w|N) = -1 (so w ∈ Z*_N);
  (y_1, ..., y_m) ← Z*_N from the transcript (ctx, N, w);
  for each i: bits a_i, b_i such that y'_i = (-1)^a_i w^b_i y_i mod N is a square mod N
  (exactly one pair works when p, q are Blum primes and (w|N) = -1);
  x_i = the principal 4th root of y'_i (itself a square mod p and mod q), by CRT:
  mod a Blum prime p, v ↦ v^(((p+1)/4)² mod (p-1)) sends a square v to its principal
  4th root (and any unit y to a 4th root of (y|p)·y, which gives the Legendre symbol too);
  z_i = y_i^(N^-1 mod φ(N)) mod N, by CRT.
  Encoding: x_i is sent as ±(principal root), whichever lies below N/2. A verifier cannot
  tell the principal root from its negation (both have Jacobi symbol +1 for a Blum N), so
  without this rule anyone could flip the sign of any x_i and get another valid proof; with
  it every response has exactly one accepted value.
  Every exponent that depends on p, q goes through ``powmod_sec``. The prover checks
  x_i^4 = y'_i before answering (a faulty CRT half would otherwise leak a factor; z_i is
  not re-checked, which would cost a full exponentiation per repetition).

Verifier checks (the first that fails raises ``ProofError(check=n)``):
  1. The proof is a Π^mod proof; N has params.paillier_bits bits, is odd, not prime and not a perfect power.
  2. w ∈ Z*_N (so w ≠ 0 and w < N, gcd(w, N) = 1) and the Jacobi symbol (w|N) = -1.
  3. x, a, b, z have exactly m entries each; every x_i, z_i ∈ Z*_N; every a_i, b_i a bit;
     every x_i < N/2 with Jacobi symbol (x_i|N) = +1 (the canonical 4th root).
  4. y_1..y_m are recomputed from the transcript (ctx, N, w) (nothing to fail).
  5. x_i^4 = (-1)^a_i w^b_i y_i mod N for every i (cheap, so checked first).
  6. z_i^N = y_i mod N for every i.
"""

from __future__ import annotations

from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import RNG
from appliance.tss.paillier import PaillierPublicKey, PaillierSecretKey, crt_combine, pow_sec
from appliance.tss.params import SecurityParams
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import check_bit, check_modulus, check_repeated, check_unit, require

DOMAIN = b"pi-mod"


@dataclass(frozen=True)
class ModProof:
    w: int
    x: tuple[int, ...]
    a: tuple[int, ...]
    b: tuple[int, ...]
    z: tuple[int, ...]


def _challenge(ctx: ProofContext, N: int, w: int, m: int) -> list[int]:
    tr = Transcript(DOMAIN, ctx)
    tr.append_many(N=N, w=w)
    return tr.challenge_units("y", N, m)


class _BlumRoots:
    """4th roots and Legendre symbols mod one Blum prime p, in constant-time exponentiation.

    With k = (p+1)/4 and E = k² mod (p-1): for a unit y, r = y^E satisfies r^4 = (y|p)·y, and
    (r|p) = (y|p)^k."""

    def __init__(self, p: mpz) -> None:
        self.p = p
        k = (p + 1) // 4
        self.E = k * k % (p - 1)
        self.k_odd = int(k & 1)

    def root(self, y: int) -> tuple[mpz, int]:
        """(r, l): r = y^E mod p and l = (y|p) ∈ {1, -1}."""
        p = self.p
        yp = mpz(y) % p
        r = pow_sec(yp, self.E, p)
        r2 = r * r % p
        return r, (1 if r2 * r2 % p == yp else -1)


def prove(
    ctx: ProofContext,
    pub: PaillierPublicKey,
    sk: PaillierSecretKey,
    params: SecurityParams,
    rng: RNG,
) -> ModProof:
    """Prove that ``pub.N`` is a Paillier-Blum modulus, knowing its factors ``sk``."""
    if sk.public != pub:
        raise ParameterError("Π^mod: the secret key is not the key of N")
    if sk.p % 4 != 3 or sk.q % 4 != 3:
        raise ParameterError("Π^mod: the factors are not Blum primes")
    N = pub.N
    while True:
        w = mpz(1 + rng.randbelow(int(N) - 1))
        if gmpy2.jacobi(w, N) == -1:
            break
    return _respond(ctx, sk, w, params.m)


def _respond(ctx: ProofContext, sk: PaillierSecretKey, w: mpz, m: int) -> ModProof:
    """The prover's steps after sampling w: challenge, then (x_i, a_i, b_i, z_i) per i.

    N^-1 mod φ(N) and q^-1 mod p are the key's own constants (computed once per key, without
    inverting a secret by extended GCD)."""
    N, p, q = sk.N, sk.p, sk.q
    try:
        q_inv_p, n_inv = sk.q_inv_p, sk.n_inv_phi
    except ParameterError:
        raise ParameterError("Π^mod: the factors are not two primes with gcd(N, φ(N)) = 1") from None
    rp, rq = _BlumRoots(p), _BlumRoots(q)
    np_, nq_ = n_inv % (p - 1), n_inv % (q - 1)
    # 4th roots of ±w mod p and mod q, and (w|p), (w|q); (w|p)(w|q) = (w|N) = -1
    om_p, wl_p = rp.root(w)
    om_q, wl_q = rq.root(w)

    ys = _challenge(ctx, N, w, m)
    xs, as_, bs, zs = [], [], [], []
    for y in ys:
        u_p, l_p = rp.root(y)
        u_q, l_q = rq.root(y)
        # b makes (w^b y|p) = (w^b y|q); then (-1)^a fixes both to +1 (-1 is a non-square
        # mod a Blum prime)
        b = 0 if l_p == l_q else 1
        sign = l_p * (wl_p if b else 1)
        a = 0 if sign == 1 else 1
        # u·ω^b is a 4th root of (-1)^a w^b y; multiplying by (-1)^(a·k) makes it a square
        xp = u_p * (om_p if b else 1) % p
        xq = u_q * (om_q if b else 1) % q
        xp = xp * (1 - 2 * (a & rp.k_odd)) % p
        xq = xq * (1 - 2 * (a & rq.k_odd)) % q
        x = crt_combine(xp, xq, p, q, q_inv_p)
        if 2 * x > N:
            x = N - x
        y_prime = (-1) ** a * (w if b else 1) * y % N
        if pow(x, 4, N) != y_prime:
            raise ParameterError("Π^mod: no 4th root (N is not a Paillier-Blum modulus or w is bad)")
        zp = pow_sec(mpz(y) % p, np_, p)
        zq = pow_sec(mpz(y) % q, nq_, q)
        xs.append(int(x))
        as_.append(a)
        bs.append(b)
        zs.append(int(crt_combine(zp, zq, p, q, q_inv_p)))
    return ModProof(w=int(w), x=tuple(xs), a=tuple(as_), b=tuple(bs), z=tuple(zs))


def verify(
    ctx: ProofContext, pub: PaillierPublicKey, proof: ModProof, params: SecurityParams
) -> None:
    """Raise ProofError unless every check in the module docstring holds."""
    if not isinstance(proof, ModProof):
        raise ProofError("not a Π^mod proof", check=1)
    m = params.m
    # 1. the modulus
    N = check_modulus(pub.N, params.paillier_bits, "Π^mod: N", check=1)
    require(not gmpy2.is_prime(N), "Π^mod: N is prime", check=1)
    require(not gmpy2.is_power(N), "Π^mod: N is a perfect power", check=1)
    # 2. w
    w = check_unit(proof.w, N, "w", check=2)
    require(gmpy2.jacobi(w, N) == -1, "Π^mod: Jacobi symbol (w|N) != -1", check=2)
    # 3. every field in its canonical range
    x_in = check_repeated(proof.x, m, "Π^mod: x", check=3)
    a_in = check_repeated(proof.a, m, "Π^mod: a", check=3)
    b_in = check_repeated(proof.b, m, "Π^mod: b", check=3)
    z_in = check_repeated(proof.z, m, "Π^mod: z", check=3)
    xs = [check_unit(v, N, f"x[{i}]", check=3) for i, v in enumerate(x_in)]
    for i, x in enumerate(xs):
        require(2 * x < N and gmpy2.jacobi(x, N) == 1, f"Π^mod: x[{i}] is not the canonical root", check=3)
    as_ = [check_bit(v, f"a[{i}]", check=3) for i, v in enumerate(a_in)]
    bs = [check_bit(v, f"b[{i}]", check=3) for i, v in enumerate(b_in)]
    zs = [check_unit(v, N, f"z[{i}]", check=3) for i, v in enumerate(z_in)]
    # 4. the challenge
    ys = _challenge(ctx, N, w, m)
    # 5. x_i^4 = (-1)^a_i w^b_i y_i
    for i in range(m):
        rhs = ys[i] * w % N if bs[i] else mpz(ys[i])
        if as_[i]:
            rhs = N - rhs
        x2 = xs[i] * xs[i] % N
        require(x2 * x2 % N == rhs, f"Π^mod: x[{i}]^4 != (-1)^a w^b y", check=5)
    # 6. z_i^N = y_i
    for i in range(m):
        require(gmpy2.powmod(zs[i], N, N) == ys[i], f"Π^mod: z[{i}]^N != y", check=6)
