"""Π^aff-g: Paillier affine operation with group commitment in range (2024 revision,
Fig. 25), in the erratum form D = C^x · enc0(-y, ρ) (synedrion's PAPER.md:
presigning, Fig. 8 round 2, builds D with -β).

Public inputs: the verifier's Paillier key N0 and the prover's key N1; C ∈ Z*_{N0²};
D = C^x · enc0(-y, ρ) mod N0²; Y = enc1(y, ρ_y) ∈ Z*_{N1²}; X = g^x; the verifier's
ring-Pedersen setup (N̂, s, t); the proof context.
Witness: x ∈ ±2^ℓ, y ∈ ±2^ℓ', ρ ∈ Z*_{N0}, ρ_y ∈ Z*_{N1}.

Prover:
  α ← ±2^(ℓ+ε), β ← ±2^(ℓ'+ε), r ← Z*_{N0}, r_y ← Z*_{N1},
  γ ← ±2^(ℓ+ε)·N̂, m ← ±2^ℓ·N̂, δ ← ±2^(ℓ+ε)·N̂, μ ← ±2^ℓ·N̂;
  A = C^α · enc0(β, r) mod N0², B_x = g^α, B_y = enc1(β, r_y),
  E = s^α t^γ, S = s^x t^m, F = s^β t^δ, T = s^(-y) t^μ (mod N̂; s^(-y): erratum);
  e ← ±q from the transcript (ctx, N0, N1, C, D, Y, X, N̂, s, t, A, B_x, B_y, E, S, F, T);
  z1 = α + e·x, z2 = β - e·y (erratum), z3 = γ + e·m, z4 = δ + e·μ,
  w = r·ρ^e mod N0, w_y = r_y·ρ_y^(-e) mod N1 (erratum).

Verifier checks (every field in its canonical range first; the first that fails raises
``ProofError(check=n)``):
  1. The proof is a Π^aff-g proof; A ∈ Z*_{N0²}; B_y ∈ Z*_{N1²}; B_x a curve point; E, S, F, T ∈ Z*_{N̂}; w ∈ Z*_{N0};
     w_y ∈ Z*_{N1}; z3, z4 ∈ ±2^(ℓ+ε+1)·N̂; the public C, D ∈ Z*_{N0²}, Y ∈ Z*_{N1²} and
     X a curve point.
  2. z1 ∈ ±2^(ℓ+ε) and z2 ∈ ±2^(ℓ'+ε)  (the range checks).
  3. g^z1 = B_x · X^e.
  4. C^z1 · enc0(z2, w) = A · D^e mod N0².
  5. enc1(z2, w_y) = B_y · Y^(-e) mod N1²  (erratum: Y^(-e)).
  6. s^z1 t^z3 = E · S^e mod N̂.
  7. s^z2 t^z4 = F · T^e mod N̂.

The affine part (A, B_x, B_y, z1, z2, w, w_y and checks 3-5) is the same in Π^aff-g*
(Fig. 27, ``aff_g_star``), which uses the private helpers below with e ∈ {0, 1}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gmpy2 import mpz

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import RNG, Q, Point
from appliance.tss.paillier import (
    PaillierPublicKey,
    PaillierSecretKey,
    RingPedersenParams,
    RingPedersenSecret,
    pow_pub,
    pow_secret_base,
    rp_commit_public,
)
from appliance.tss.params import SecurityParams
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import (
    SignedSecretPowers,
    check_point,
    check_signed_range,
    check_signed_range_scaled,
    check_unit,
    require,
    sample_signed,
    sample_signed_scaled,
    sample_unit,
)

DOMAIN = b"pi-aff-g"


@dataclass(frozen=True)
class AffGPublic:
    N0: PaillierPublicKey
    N1: PaillierPublicKey
    C: int
    D: int
    Y: int
    X: Point


@dataclass(frozen=True)
class AffGWitness:
    x: int
    y: int
    rho: int
    rho_y: int

    def __repr__(self) -> str:
        return "AffGWitness(<hidden>)"


@dataclass(frozen=True)
class AffGProof:
    A: int
    B_x: Point
    B_y: int
    E: int
    S: int
    F: int
    T: int
    z1: int
    z2: int
    z3: int
    z4: int
    w: int
    w_y: int


# --------------------------------------------------------------------------------------
# the affine part, shared with Π^aff-g* (Fig. 27)


@dataclass(frozen=True)
class _AffineMask:
    """The prover's masks α, β and randomizers r, r_y of one (repetition of the) proof."""

    alpha: int
    beta: int
    r: mpz
    r_y: mpz

    def __repr__(self) -> str:
        return "_AffineMask(<hidden>)"


def _check_witness(wit: AffGWitness, params: SecurityParams, what: str) -> None:
    if not -(1 << params.ell) <= wit.x <= (1 << params.ell):
        raise ParameterError(f"{what}: witness x outside ±2^ℓ")
    if not -(1 << params.ell_prime) <= wit.y <= (1 << params.ell_prime):
        raise ParameterError(f"{what}: witness y outside ±2^ℓ'")


def _encryptor(
    key: PaillierPublicKey, own: PaillierSecretKey | None
) -> Callable[[int, int], mpz]:
    """enc(m, ρ) under ``key``, by CRT when ``own`` is the secret key of ``key``."""
    if own is None:
        return key.encrypt
    if own.N != key.N:
        raise ValueError("paillier_sk is not the prover's key N1")
    return own.encrypt


def _c_powers(pub: AffGPublic, params: SecurityParams) -> SignedSecretPowers:
    """C^α mod N0² for secret masks α ∈ ±2^(ℓ+ε)."""
    return SignedSecretPowers(pub.C, pub.N0.N2, params.ell + params.eps + 1)


def _affine_commit(
    rng: RNG,
    pub: AffGPublic,
    params: SecurityParams,
    c_pow: SignedSecretPowers,
    enc1: Callable[[int, int], mpz],
) -> tuple[_AffineMask, mpz, Point, mpz]:
    """Sample α, β, r, r_y; return them and A = C^α enc0(β, r), B_x = g^α, B_y = enc1(β, r_y)."""
    mask = _AffineMask(
        alpha=sample_signed(rng, params.ell + params.eps),
        beta=sample_signed(rng, params.ell_prime + params.eps),
        r=sample_unit(rng, pub.N0.N),
        r_y=sample_unit(rng, pub.N1.N),
    )
    N02 = pub.N0.N2
    A = c_pow(mask.alpha) * pub.N0.encrypt(mask.beta, mask.r) % N02
    B_x = Point.generator_mul(mask.alpha)
    B_y = enc1(mask.beta, mask.r_y)
    return mask, A, B_x, B_y


def _affine_respond(
    pub: AffGPublic, wit: AffGWitness, mask: _AffineMask, e: int, rng: RNG
) -> tuple[int, int, mpz, mpz]:
    """z1 = α + e·x, z2 = β - e·y, w = r ρ^e mod N0, w_y = r_y ρ_y^(-e) mod N1 (e public;
    the secret ρ, ρ_y are inverted only blinded)."""
    N0, N1 = pub.N0.N, pub.N1.N
    return (
        mask.alpha + e * wit.x,
        mask.beta - e * wit.y,
        mask.r * pow_secret_base(wit.rho, e, N0, rng) % N0,
        mask.r_y * pow_secret_base(wit.rho_y, -e, N1, rng) % N1,
    )


def _check_affine_public(pub: AffGPublic) -> None:
    """Check 1 for the statement: C, D ∈ Z*_{N0²}, Y ∈ Z*_{N1²}, X a curve point."""
    check_unit(pub.C, pub.N0.N2, "C", check=1)
    check_unit(pub.D, pub.N0.N2, "D", check=1)
    check_unit(pub.Y, pub.N1.N2, "Y", check=1)
    check_point(pub.X, "X", check=1)


def _check_affine_group(pub: AffGPublic, e: int, B_x: Point, z1: int, what: str) -> None:
    """Check 3: g^z1 = B_x · X^e."""
    require(Point.generator_mul(z1) == B_x + pub.X * e, f"{what}: g^z1 != B_x X^e", check=3)


def _check_affine_paillier(
    pub: AffGPublic, e: int, A: int, B_y: int, z1: int, z2: int, w: int, w_y: int, what: str
) -> None:
    """Checks 4 and 5: C^z1 enc0(z2, w) = A D^e mod N0² and enc1(z2, w_y) = B_y Y^(-e) mod N1²."""
    N02, N12 = pub.N0.N2, pub.N1.N2
    lhs0 = pow_pub(pub.C, z1, N02) * pub.N0.encrypt(z2, w) % N02
    require(lhs0 == A * pow_pub(pub.D, e, N02) % N02, f"{what}: C^z1 enc0(z2, w) != A D^e", check=4)
    lhs1 = pub.N1.encrypt(z2, w_y)
    require(lhs1 == B_y * pow_pub(pub.Y, -e, N12) % N12, f"{what}: enc1(z2, w_y) != B_y Y^-e", check=5)


# --------------------------------------------------------------------------------------
# Π^aff-g


def _challenge(
    ctx: ProofContext, pub: AffGPublic, setup: RingPedersenParams, A: int, B_x: Point, B_y: int,
    E: int, S: int, F: int, T: int,
) -> int:
    tr = Transcript(DOMAIN, ctx)
    tr.append_many(N0=pub.N0.N, N1=pub.N1.N, C=pub.C, D=pub.D, Y=pub.Y, X=pub.X)
    tr.append_many(Nhat=setup.N, s=setup.s, t=setup.t)
    tr.append_many(A=A, B_x=B_x, B_y=B_y, E=E, S=S, F=F, T=T)
    return tr.challenge_signed("e", Q)


def prove(
    ctx: ProofContext,
    pub: AffGPublic,
    wit: AffGWitness,
    setup: RingPedersenParams,
    params: SecurityParams,
    rng: RNG,
    *,
    paillier_sk: PaillierSecretKey | None = None,
) -> AffGProof:
    """``paillier_sk``, the prover's own key for N1, makes enc1 use CRT."""
    _check_witness(wit, params, "Π^aff-g")
    ell, ellp, eps = params.ell, params.ell_prime, params.eps
    Nh = setup.N
    nh_bits = int(Nh.bit_length())
    enc1 = _encryptor(pub.N1, paillier_sk)

    mask, A, B_x, B_y = _affine_commit(rng, pub, params, _c_powers(pub, params), enc1)
    gamma = sample_signed_scaled(rng, ell + eps, Nh)
    m = sample_signed_scaled(rng, ell, Nh)
    delta = sample_signed_scaled(rng, ell + eps, Nh)
    mu = sample_signed_scaled(rng, ell, Nh)

    E = setup.commit(mask.alpha, gamma, ell + eps + 1, ell + eps + nh_bits + 1)
    S = setup.commit(wit.x, m, ell + 1, ell + nh_bits + 1)
    F = setup.commit(mask.beta, delta, ellp + eps + 1, ell + eps + nh_bits + 1)
    T = setup.commit(-wit.y, mu, ellp + 1, ell + nh_bits + 1)

    e = _challenge(ctx, pub, setup, A, B_x, B_y, E, S, F, T)
    z1, z2, w, w_y = _affine_respond(pub, wit, mask, e, rng)
    return AffGProof(
        A=int(A), B_x=B_x, B_y=int(B_y), E=int(E), S=int(S), F=int(F), T=int(T),
        z1=z1, z2=z2, z3=gamma + e * m, z4=delta + e * mu, w=int(w), w_y=int(w_y),
    )


def verify(
    ctx: ProofContext,
    pub: AffGPublic,
    proof: AffGProof,
    setup: RingPedersenParams,
    params: SecurityParams,
    *,
    setup_secret: RingPedersenSecret | None = None,
) -> None:
    """Raise ProofError unless every check in the module docstring holds.

    ``setup_secret``: the verifier's own ring-Pedersen secret, to check 6. and 7. by CRT."""
    if not isinstance(proof, AffGProof):
        raise ProofError("not a Π^aff-g proof", check=1)
    ell, ellp, eps = params.ell, params.ell_prime, params.eps
    Nh = setup.N
    # 1. canonical ranges
    _check_affine_public(pub)
    A = check_unit(proof.A, pub.N0.N2, "A", check=1)
    B_x = check_point(proof.B_x, "B_x", check=1)
    B_y = check_unit(proof.B_y, pub.N1.N2, "B_y", check=1)
    E = check_unit(proof.E, Nh, "E", check=1)
    S = check_unit(proof.S, Nh, "S", check=1)
    F = check_unit(proof.F, Nh, "F", check=1)
    T = check_unit(proof.T, Nh, "T", check=1)
    w = check_unit(proof.w, pub.N0.N, "w", check=1)
    w_y = check_unit(proof.w_y, pub.N1.N, "w_y", check=1)
    z3 = check_signed_range_scaled(proof.z3, ell + eps + 1, Nh, "z3", check=1)
    z4 = check_signed_range_scaled(proof.z4, ell + eps + 1, Nh, "z4", check=1)
    # 2. the range checks
    z1 = check_signed_range(proof.z1, ell + eps, "z1", check=2)
    z2 = check_signed_range(proof.z2, ellp + eps, "z2", check=2)

    e = _challenge(ctx, pub, setup, A, B_x, B_y, E, S, F, T)
    _check_affine_group(pub, e, B_x, z1, "Π^aff-g")  # 3.
    _check_affine_paillier(pub, e, A, B_y, z1, z2, w, w_y, "Π^aff-g")  # 4., 5.
    lhs = rp_commit_public(setup, z1, z3, setup_secret)  # 6.
    require(lhs == E * pow_pub(S, e, Nh) % Nh, "Π^aff-g: s^z1 t^z3 != E S^e", check=6)
    lhs = rp_commit_public(setup, z2, z4, setup_secret)  # 7.
    require(lhs == F * pow_pub(T, e, Nh) % Nh, "Π^aff-g: s^z2 t^z4 != F T^e", check=7)
