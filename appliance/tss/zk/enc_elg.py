"""Π^enc-elg: range proof for a Paillier plaintext with an El-Gamal commitment
(2024 revision, Section A.2, Fig. 24).

Public inputs: the prover's Paillier key N0; C = enc0(x, ρ) ∈ Z*_{N0²}; points A = g^a,
B = g^b, X = g^(a·b + x); the verifier's ring-Pedersen setup (N̂, s, t); the proof context.
Witness: x ∈ ±2^ℓ, ρ ∈ Z*_{N0}, b ∈ F_q. (``a`` is an ephemeral secret the proof does not
use: an erratum noted in synedrion's PAPER.md.)

Prover:
  α ← ±2^(ℓ+ε), μ ← ±2^ℓ·N̂, r ← Z*_{N0}, β ← F_q, γ ← ±2^(ℓ+ε)·N̂;
  S = s^x t^μ, D = enc0(α, r), Y = A^β g^α, Z = g^β, T = s^α t^γ (mod N̂);
  e ← ±q from the transcript (ctx, N0, C, A, B, X, N̂, s, t, S, D, Y, Z, T);
  z1 = α + e·x, w = β + e·b mod q, z2 = r·ρ^e mod N0, z3 = γ + e·μ.

Verifier checks (every field in its canonical range first; the first that fails raises
``ProofError(check=n)``):
  1. The proof is a Π^enc-elg proof; S, T ∈ Z*_{N̂}; D ∈ Z*_{N0²}; Y, Z curve points; w ∈ [0, q); z2 ∈ Z*_{N0};
     z3 ∈ ±2^(ℓ+ε+1)·N̂; the public C ∈ Z*_{N0²} and A, B, X curve points.
  2. z1 ∈ ±2^(ℓ+ε)  (the range check that makes this a range proof).
  3. enc0(z1, z2) = D · C^e mod N0².
  4. A^w · g^z1 = Y · X^e.
  5. g^w = Z · B^e.
  6. s^z1 t^z3 = T · S^e mod N̂.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import RNG, Q, Point, random_scalar
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
    check_point,
    check_scalar,
    check_signed_range,
    check_signed_range_scaled,
    check_unit,
    require,
    sample_signed,
    sample_signed_scaled,
    sample_unit,
)

DOMAIN = b"pi-enc-elg"


@dataclass(frozen=True)
class EncElgPublic:
    N0: PaillierPublicKey
    C: int
    A: Point
    B: Point
    X: Point


@dataclass(frozen=True)
class EncElgWitness:
    x: int
    rho: int
    b: int

    def __repr__(self) -> str:
        return "EncElgWitness(<hidden>)"


@dataclass(frozen=True)
class EncElgProof:
    S: int
    D: int
    Y: Point
    Z: Point
    T: int
    z1: int
    w: int
    z2: int
    z3: int


def _challenge(
    ctx: ProofContext, pub: EncElgPublic, setup: RingPedersenParams, S: int, D: int, Y: Point,
    Z: Point, T: int,
) -> int:
    tr = Transcript(DOMAIN, ctx)
    tr.append_many(N0=pub.N0.N, C=pub.C, A=pub.A, B=pub.B, X=pub.X)
    tr.append_many(Nhat=setup.N, s=setup.s, t=setup.t)
    tr.append_many(S=S, D=D, Y=Y, Z=Z, T=T)
    return tr.challenge_signed("e", Q)


def prove(
    ctx: ProofContext,
    pub: EncElgPublic,
    wit: EncElgWitness,
    setup: RingPedersenParams,
    params: SecurityParams,
    rng: RNG,
    *,
    paillier_sk: PaillierSecretKey | None = None,
) -> EncElgProof:
    """``paillier_sk``, the prover's own key for N0, makes the encryption use CRT."""
    ell, eps = params.ell, params.eps
    if not -(1 << ell) <= wit.x <= (1 << ell):
        raise ParameterError("Π^enc-elg: witness x outside ±2^ℓ")
    Nh = setup.N
    alpha = sample_signed(rng, ell + eps)
    mu = sample_signed_scaled(rng, ell, Nh)
    r = sample_unit(rng, pub.N0.N)
    beta = random_scalar(rng)
    gamma = sample_signed_scaled(rng, ell + eps, Nh)

    nh_bits = int(Nh.bit_length())
    S = setup.commit(wit.x, mu, ell + 1, ell + nh_bits + 1)
    D = paillier_sk.encrypt(alpha, r) if paillier_sk is not None else pub.N0.encrypt(alpha, r)
    Y = pub.A * beta + Point.generator_mul(alpha)
    Z = Point.generator_mul(beta)
    T = setup.commit(alpha, gamma, ell + eps + 1, ell + eps + nh_bits + 1)

    e = _challenge(ctx, pub, setup, S, D, Y, Z, T)
    N0 = pub.N0.N
    return EncElgProof(
        S=int(S), D=int(D), Y=Y, Z=Z, T=int(T),
        z1=alpha + e * wit.x,
        w=(beta + e * wit.b) % Q,
        z2=int(r * pow_secret_base(wit.rho, e, N0, rng) % N0),
        z3=gamma + e * mu,
    )


def verify(
    ctx: ProofContext,
    pub: EncElgPublic,
    proof: EncElgProof,
    setup: RingPedersenParams,
    params: SecurityParams,
    *,
    setup_secret: RingPedersenSecret | None = None,
) -> None:
    """Raise ProofError unless every check in the module docstring holds.

    ``setup_secret``: the verifier's own ring-Pedersen secret, to check 6. by CRT."""
    if not isinstance(proof, EncElgProof):
        raise ProofError("not a Π^enc-elg proof", check=1)
    ell, eps = params.ell, params.eps
    N0 = pub.N0.N
    N02 = pub.N0.N2
    Nh = setup.N
    C = check_unit(pub.C, N02, "C", check=1)
    A, B, X = check_point(pub.A, "A", check=1), check_point(pub.B, "B", check=1), check_point(pub.X, "X", check=1)
    S = check_unit(proof.S, Nh, "S", check=1)
    T = check_unit(proof.T, Nh, "T", check=1)
    D = check_unit(proof.D, N02, "D", check=1)
    Y = check_point(proof.Y, "Y", check=1)
    Z = check_point(proof.Z, "Z", check=1)
    w = check_scalar(proof.w, "w", check=1)
    z2 = check_unit(proof.z2, N0, "z2", check=1)
    z3 = check_signed_range_scaled(proof.z3, ell + eps + 1, Nh, "z3", check=1)
    z1 = check_signed_range(proof.z1, ell + eps, "z1", check=2)

    e = _challenge(ctx, pub, setup, S, D, Y, Z, T)
    require(pub.N0.encrypt(z1, z2) == D * pow_pub(C, e, N02) % N02, "Π^enc-elg: enc(z1, z2) != D·C^e", check=3)
    require(A * w + Point.generator_mul(z1) == Y + X * e, "Π^enc-elg: A^w g^z1 != Y X^e", check=4)
    require(Point.generator_mul(w) == Z + B * e, "Π^enc-elg: g^w != Z B^e", check=5)
    lhs = rp_commit_public(setup, z1, z3, setup_secret)
    require(lhs == T * pow_pub(S, e, Nh) % Nh, "Π^enc-elg: s^z1 t^z3 != T S^e", check=6)
