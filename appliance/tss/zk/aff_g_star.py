"""Π^aff-g*: setup-less Paillier affine operation with group commitment (2024 revision,
Fig. 27), in the erratum form D = C^x · enc0(-y, ρ) as Π^aff-g.

Used in the identification step of presigning (Fig. 9), where the proof goes to every party
at once: there is no verifier's ring-Pedersen setup, so instead of one challenge e ∈ ±q the
proof repeats m times (``params.m``) with one-bit challenges, and the ranges of x and y
follow from the range checks on z_j and z'_j alone.

Public inputs: the same statement as Π^aff-g (so ``AffGStarPublic`` is ``aff_g.AffGPublic``):
the key N0 of C's owner and the prover's key N1; C ∈ Z*_{N0²}; D = C^x · enc0(-y, ρ);
Y = enc1(y, μ); X = g^x; the proof context. No setup.
Witness (``AffGStarWitness`` is ``aff_g.AffGWitness``, its ``rho_y`` field is μ):
x ∈ ±2^ℓ, y ∈ ±2^ℓ', ρ ∈ Z*_{N0}, μ ∈ Z*_{N1}.

Prover, for j = 1..m:
  α_j ← ±2^(ℓ+ε), β_j ← ±2^(ℓ'+ε), r_j ← Z*_{N0}, s_j ← Z*_{N1};
  A_j = C^α_j · enc0(β_j, r_j) mod N0², R_j = g^α_j, B_j = enc1(β_j, s_j);
  e = (e_1..e_m) ← {0,1}^m from the transcript (ctx, N0, N1, C, D, Y, X, A, R, B);
  z_j = α_j + e_j·x, z'_j = β_j - e_j·y (erratum), w_j = r_j·ρ^e_j mod N0,
  λ_j = s_j·μ^(-e_j) mod N1 (erratum).

Verifier checks (every field in its canonical range first; the first that fails raises
``ProofError(check=n)``, numbered as Π^aff-g's checks 1-5):
  1. The proof is a Π^aff-g* proof; A, R, B, z, z', w, λ have m entries each; A_j ∈ Z*_{N0²}; R_j curve points;
     B_j ∈ Z*_{N1²}; w_j ∈ Z*_{N0}; λ_j ∈ Z*_{N1}; the public C, D ∈ Z*_{N0²},
     Y ∈ Z*_{N1²} and X a curve point.
  2. z_j ∈ ±2^(ℓ+ε) and z'_j ∈ ±2^(ℓ'+ε) for every j  (the range checks).
  3. g^z_j = R_j · X^e_j for every j.
  4. C^z_j · enc0(z'_j, w_j) = A_j · D^e_j mod N0² for every j.
  5. enc1(z'_j, λ_j) = B_j · Y^(-e_j) mod N1² for every j  (erratum: Y^(-e_j)).
  (3. runs for every j before 4. and 5., the costly ones.)

A_j, R_j, B_j, the responses and checks 3-5 are Π^aff-g's with e = e_j: the code is
``aff_g``'s private helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ProofError
from appliance.tss.group import RNG, Point
from appliance.tss.paillier import PaillierSecretKey
from appliance.tss.params import SecurityParams
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import (
    check_point,
    check_repeated,
    check_signed_range,
    check_unit,
)
from appliance.tss.zk.aff_g import (
    AffGPublic,
    AffGWitness,
    _affine_commit,
    _affine_respond,
    _c_powers,
    _check_affine_group,
    _check_affine_paillier,
    _check_affine_public,
    _check_witness,
    _encryptor,
)

DOMAIN = b"pi-aff-g-star"

#: the statement and witness are Π^aff-g's (without the setup); ``rho_y`` is the paper's μ
AffGStarPublic = AffGPublic
AffGStarWitness = AffGWitness


@dataclass(frozen=True)
class AffGStarProof:
    """m commitments (A_j, R_j, B_j) and m responses (z_j, z'_j, w_j, λ_j)."""

    A: tuple[int, ...]
    R: tuple[Point, ...]
    B: tuple[int, ...]
    z: tuple[int, ...]
    z_prime: tuple[int, ...]
    w: tuple[int, ...]
    lam: tuple[int, ...]


def _challenge(
    ctx: ProofContext, pub: AffGPublic, m: int, A: tuple, R: tuple, B: tuple
) -> list[int]:
    tr = Transcript(DOMAIN, ctx)
    tr.append_many(N0=pub.N0.N, N1=pub.N1.N, C=pub.C, D=pub.D, Y=pub.Y, X=pub.X)
    tr.append_many(A=A, R=R, B=B)
    return tr.challenge_bits("e", m)


def prove(
    ctx: ProofContext,
    pub: AffGPublic,
    wit: AffGWitness,
    params: SecurityParams,
    rng: RNG,
    *,
    paillier_sk: PaillierSecretKey | None = None,
) -> AffGStarProof:
    """``paillier_sk``, the prover's own key for N1, makes enc1 use CRT."""
    _check_witness(wit, params, "Π^aff-g*")
    enc1 = _encryptor(pub.N1, paillier_sk)
    c_pow = _c_powers(pub, params)
    rounds = [_affine_commit(rng, pub, params, c_pow, enc1) for _ in range(params.m)]
    A = tuple(int(a) for _, a, _, _ in rounds)
    R = tuple(r for _, _, r, _ in rounds)
    B = tuple(int(b) for _, _, _, b in rounds)
    e = _challenge(ctx, pub, params.m, A, R, B)
    responses = [_affine_respond(pub, wit, mask, e_j, rng) for (mask, *_), e_j in zip(rounds, e)]
    return AffGStarProof(
        A=A, R=R, B=B,
        z=tuple(int(r[0]) for r in responses),
        z_prime=tuple(int(r[1]) for r in responses),
        w=tuple(int(r[2]) for r in responses),
        lam=tuple(int(r[3]) for r in responses),
    )


def verify(
    ctx: ProofContext,
    pub: AffGPublic,
    proof: AffGStarProof,
    params: SecurityParams,
) -> None:
    """Raise ProofError unless every check in the module docstring holds."""
    if not isinstance(proof, AffGStarProof):
        raise ProofError("not a Π^aff-g* proof", check=1)
    ell, ellp, eps, m = params.ell, params.ell_prime, params.eps, params.m
    N0, N02, N1, N12 = pub.N0.N, pub.N0.N2, pub.N1.N, pub.N1.N2
    # 1. canonical ranges
    _check_affine_public(pub)
    A_in, R_in, B_in, w_in, lam_in, z_in, zp_in = (
        check_repeated(getattr(proof, name), m, name, check=1)
        for name in ("A", "R", "B", "w", "lam", "z", "z_prime")
    )
    A = tuple(check_unit(a, N02, f"A[{j}]", check=1) for j, a in enumerate(A_in))
    R = tuple(check_point(r, f"R[{j}]", check=1) for j, r in enumerate(R_in))
    B = tuple(check_unit(b, N12, f"B[{j}]", check=1) for j, b in enumerate(B_in))
    w = [check_unit(v, N0, f"w[{j}]", check=1) for j, v in enumerate(w_in)]
    lam = [check_unit(v, N1, f"λ[{j}]", check=1) for j, v in enumerate(lam_in)]
    # 2. the range checks
    z = [check_signed_range(v, ell + eps, f"z[{j}]", check=2) for j, v in enumerate(z_in)]
    zp = [check_signed_range(v, ellp + eps, f"z'[{j}]", check=2) for j, v in enumerate(zp_in)]

    e = _challenge(ctx, pub, m, A, R, B)
    for j in range(m):  # 3.
        _check_affine_group(pub, e[j], R[j], z[j], f"Π^aff-g*[{j}]")
    for j in range(m):  # 4., 5.
        _check_affine_paillier(pub, e[j], A[j], B[j], z[j], zp[j], w[j], lam[j], f"Π^aff-g*[{j}]")
