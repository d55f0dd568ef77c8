"""Π^fac: no small factor — N0 = p q with p, q > 2^ℓ (2024 revision, Section A.4, Fig. 26;
Fig. 28 in the 2021 numbering).

Public inputs: the prover's Paillier modulus N0; the verifier's ring-Pedersen setup
(N̂, s, t); the proof context. √N0 below is ⌊√N0⌋ (gmpy2.isqrt), for prover and verifier
alike (the paper's author accepts the floor, the ceiling or a power-of-two bound: synedrion
PAPER.md, Q&A on Π^fac).
Witness: primes p, q with N0 = p q and 2^ℓ < p, q < 2^ℓ·√N0 (a ``PaillierSecretKey``).

Prover:
  α, β ← ±2^(ℓ+ε)·√N0;  μ, ν ← ±2^ℓ·N̂;  σ ← ±2^ℓ·N0·N̂;  r ← ±2^(ℓ+ε)·N0·N̂;
  x, y ← ±2^(ℓ+ε)·N̂;
  P = s^p t^μ, Q = s^q t^ν, A = s^α t^x, B = s^β t^y, T = Q^α t^r (mod N̂);
  e ← ±q from the transcript (ctx, N0, N̂, s, t, P, Q, A, B, T, σ);
  z1 = α + e·p, z2 = β + e·q, w1 = x + e·μ, w2 = y + e·ν, v = r + e·(σ − ν·p).
  The proof is (P, Q, A, B, T, σ, z1, z2, w1, w2, v); every exponent is raised through
  ``powmod_sec`` (the prover does not know N̂'s factors, so no CRT here).

Verifier checks (the first that fails raises ``ProofError(check=n)``), with R = s^N0 t^σ mod N̂:
  1. The proof is a Π^fac proof; the verifier's own setup is sound (N̂ odd, s, t ∈ Z*_N̂, so
     that a bad one fails cleanly); N0 has params.paillier_bits bits (the bound in 4. proves p, q > 2^ℓ only because
     2ℓ + ε = log √N0: a shorter N0 would void it).
  2. P, Q, A, B, T ∈ Z*_N̂.
  3. σ ∈ ±2^ℓ·N0·N̂; w1, w2 ∈ ±2^(ℓ+ε+1)·N̂; v ∈ ±2^(ℓ+ε+1)·N0·N̂ (canonical ranges: the
     honest values lie there because ε > ℓ and |e| < 2^ℓ).
  4. z1, z2 ∈ ±2^(ℓ+ε)·√N0 (the range check: p, q < 2^(ℓ+ε)·√N0, hence p, q > 2^ℓ).
  5. e is recomputed from the transcript (nothing to fail).
  6. s^z1 t^w1 = A · P^e mod N̂.
  7. s^z2 t^w2 = B · Q^e mod N̂.
  8. Q^z1 t^v = T · R^e mod N̂.
The verifier owns (N̂, s, t); with ``setup_secret`` checks 6-8 run by CRT over its primes.
"""

from __future__ import annotations

from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import RNG, Q as CURVE_Q
from appliance.tss.paillier import (
    PaillierPublicKey,
    PaillierSecretKey,
    RingPedersenParams,
    RingPedersenSecret,
    pow_pub,
    pow_sec_signed,
    rp_commit_public,
)
from appliance.tss.params import SecurityParams
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import (
    check_int,
    check_signed_range_scaled,
    check_unit,
    require,
    sample_signed_scaled,
)
from appliance.tss.zk._numtheory import rp_pow_public

DOMAIN = b"pi-fac"


@dataclass(frozen=True)
class FacProof:
    P: int
    Q: int
    A: int
    B: int
    T: int
    sigma: int
    z1: int
    z2: int
    w1: int
    w2: int
    v: int


def _challenge(
    ctx: ProofContext, N0: int, setup: RingPedersenParams, P: int, Q: int, A: int, B: int, T: int,
    sigma: int,
) -> int:
    tr = Transcript(DOMAIN, ctx)
    tr.append("N0", N0)
    tr.append_many(Nhat=setup.N, s=setup.s, t=setup.t)
    tr.append_many(P=P, Q=Q, A=A, B=B, T=T, sigma=sigma)
    return tr.challenge_signed("e", CURVE_Q)


def prove(
    ctx: ProofContext,
    pub: PaillierPublicKey,
    sk: PaillierSecretKey,
    setup: RingPedersenParams,
    params: SecurityParams,
    rng: RNG,
) -> FacProof:
    """Prove that ``pub.N`` has no factor below 2^ℓ, knowing its factors ``sk``."""
    if sk.public != pub:
        raise ParameterError("Π^fac: the secret key is not the key of N0")
    N0 = pub.N
    root = gmpy2.isqrt(N0)
    bound = root << params.ell
    lo = 1 << params.ell
    if not (lo < sk.p < bound and lo < sk.q < bound):
        raise ParameterError("Π^fac: a factor is outside (2^ℓ, 2^ℓ·√N0)")
    return _prove_with_factors(ctx, N0, sk.p, sk.q, setup, params, rng)


def _prove_with_factors(
    ctx: ProofContext, N0: mpz, p: mpz, q: mpz, setup: RingPedersenParams, params: SecurityParams,
    rng: RNG,
) -> FacProof:
    """The prover's steps for the claimed factors p, q (``prove`` checks them first)."""
    ell, eps = params.ell, params.eps
    Nh = setup.N
    root = gmpy2.isqrt(N0)
    nh_bits = int(Nh.bit_length())
    n0_bits = int(N0.bit_length())
    root_bits = int(root.bit_length())

    alpha = sample_signed_scaled(rng, ell + eps, root)
    beta = sample_signed_scaled(rng, ell + eps, root)
    mu = sample_signed_scaled(rng, ell, Nh)
    nu = sample_signed_scaled(rng, ell, Nh)
    sigma = sample_signed_scaled(rng, ell, N0 * Nh)
    r = sample_signed_scaled(rng, ell + eps, N0 * Nh)
    x = sample_signed_scaled(rng, ell + eps, Nh)
    y = sample_signed_scaled(rng, ell + eps, Nh)

    # exponent bounds for the constant-time signed powers (|exp| < 2^bits)
    fac_bits = n0_bits + 1
    mask_bits = ell + nh_bits + 1
    ab_bits = ell + eps + root_bits + 1
    xy_bits = ell + eps + nh_bits + 1
    r_bits = ell + eps + n0_bits + nh_bits + 1

    P = setup.commit(p, mu, fac_bits, mask_bits)
    Q = setup.commit(q, nu, fac_bits, mask_bits)
    A = setup.commit(alpha, x, ab_bits, xy_bits)
    B = setup.commit(beta, y, ab_bits, xy_bits)
    T = pow_sec_signed(Q, alpha, Nh, ab_bits) * pow_sec_signed(setup.t, r, Nh, r_bits) % Nh

    e = _challenge(ctx, N0, setup, P, Q, A, B, T, sigma)
    return FacProof(
        P=int(P), Q=int(Q), A=int(A), B=int(B), T=int(T), sigma=int(sigma),
        z1=int(alpha + e * p),
        z2=int(beta + e * q),
        w1=int(x + e * mu),
        w2=int(y + e * nu),
        v=int(r + e * (sigma - nu * p)),
    )


def verify(
    ctx: ProofContext,
    pub: PaillierPublicKey,
    proof: FacProof,
    setup: RingPedersenParams,
    params: SecurityParams,
    *,
    setup_secret: RingPedersenSecret | None = None,
) -> None:
    """Raise ProofError unless every check in the module docstring holds.

    ``setup_secret``: the verifier's own ring-Pedersen secret, to check 6-8 by CRT."""
    if not isinstance(proof, FacProof):
        raise ProofError("not a Π^fac proof", check=1)
    ell, eps = params.ell, params.eps
    # 1. the verifier's own setup, checked anyway so that a bad one fails cleanly; the modulus
    Nh = mpz(check_int(setup.N, "N̂", check=1))
    require(Nh > 2 and Nh % 2 == 1, "Π^fac: N̂ is not an odd modulus", check=1)
    check_unit(setup.s, Nh, "s", check=1)
    check_unit(setup.t, Nh, "t", check=1)
    N0 = mpz(check_int(pub.N, "N0", check=1))
    bits = params.paillier_bits
    require(N0 > 0 and N0.bit_length() == bits, f"Π^fac: N0 is not {bits} bits", check=1)
    root = gmpy2.isqrt(N0)
    # 2, 3. every field in its canonical range
    P = check_unit(proof.P, Nh, "P", check=2)
    Q = check_unit(proof.Q, Nh, "Q", check=2)
    A = check_unit(proof.A, Nh, "A", check=2)
    B = check_unit(proof.B, Nh, "B", check=2)
    T = check_unit(proof.T, Nh, "T", check=2)
    sigma = check_signed_range_scaled(proof.sigma, ell, N0 * Nh, "sigma", check=3)
    w1 = check_signed_range_scaled(proof.w1, ell + eps + 1, Nh, "w1", check=3)
    w2 = check_signed_range_scaled(proof.w2, ell + eps + 1, Nh, "w2", check=3)
    v = check_signed_range_scaled(proof.v, ell + eps + 1, N0 * Nh, "v", check=3)
    # 4. the range check
    z1 = check_signed_range_scaled(proof.z1, ell + eps, root, "z1", check=4)
    z2 = check_signed_range_scaled(proof.z2, ell + eps, root, "z2", check=4)
    # 5. the challenge
    e = _challenge(ctx, N0, setup, P, Q, A, B, T, sigma)
    # 6. s^z1 t^w1 = A P^e
    lhs = rp_commit_public(setup, z1, w1, setup_secret)
    require(lhs == A * pow_pub(P, e, Nh) % Nh, "Π^fac: s^z1 t^w1 != A P^e", check=6)
    # 7. s^z2 t^w2 = B Q^e
    lhs = rp_commit_public(setup, z2, w2, setup_secret)
    require(lhs == B * pow_pub(Q, e, Nh) % Nh, "Π^fac: s^z2 t^w2 != B Q^e", check=7)
    # 8. Q^z1 t^v = T R^e, R = s^N0 t^σ
    R = rp_commit_public(setup, N0, sigma, setup_secret)
    lhs = rp_pow_public(setup, Q, z1, setup_secret)
    lhs = lhs * rp_commit_public(setup, 0, v, setup_secret) % Nh
    require(lhs == T * pow_pub(R, e, Nh) % Nh, "Π^fac: Q^z1 t^v != T R^e", check=8)
