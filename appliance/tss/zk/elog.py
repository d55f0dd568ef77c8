"""Π^elog: El-Gamal commitment and discrete logarithm (2024 revision, Section A.1, Fig. 23).

Public inputs, in the order of Fig. 23 (presigning, Fig. 8, lists them in another order,
Γ_i, g, B_{i,1}, B_{i,2}, Y_i; synedrion's PAPER.md erratum: it means L = B_{i,1},
M = B_{i,2}, X = Y_i, Y = Γ_i, h = g): points L = g^λ, M = g^y · X^λ, X, Y = h^y and the
base h; the proof context.
Witness: y, λ ∈ F_q.

Prover:
  α, m ← F_q; A = g^α, N = g^m · X^α, B = h^m;
  e ← F_q from the transcript (ctx, L, M, X, Y, h, A, N, B);
  z = α + e·λ mod q, u = m + e·y mod q.

Everything here lives in the group, so the challenge is a scalar e ∈ F_q as in Fig. 23 and
Π^sch (the ±q of the Paillier proofs is for integer responses).

Verifier checks (every field in its canonical range first; the first that fails raises
``ProofError(check=n)``):
  1. The proof is a Π^elog proof; A, N, B curve points (not infinity); z, u ∈ [0, q); the public L, M, X, Y, h curve points.
  2. g^z = A · L^e.
  3. g^u · X^z = N · M^e.
  4. h^u = B · Y^e.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ProofError
from appliance.tss.group import RNG, Q, Point, random_scalar
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import check_point, check_scalar, require

DOMAIN = b"pi-elog"


@dataclass(frozen=True)
class ElogPublic:
    L: Point
    M: Point
    X: Point
    Y: Point
    h: Point


@dataclass(frozen=True)
class ElogWitness:
    y: int
    lam: int

    def __repr__(self) -> str:
        return "ElogWitness(<hidden>)"


@dataclass(frozen=True)
class ElogProof:
    A: Point
    N: Point
    B: Point
    z: int
    u: int


def _challenge(ctx: ProofContext, pub: ElogPublic, A: Point, N: Point, B: Point) -> int:
    tr = Transcript(DOMAIN, ctx)
    tr.append_many(L=pub.L, M=pub.M, X=pub.X, Y=pub.Y, h=pub.h)
    tr.append_many(A=A, N=N, B=B)
    return tr.challenge_scalar("e")


def prove(ctx: ProofContext, pub: ElogPublic, wit: ElogWitness, rng: RNG) -> ElogProof:
    alpha = random_scalar(rng)
    m = random_scalar(rng)
    A = Point.generator_mul(alpha)
    N = Point.generator_mul(m) + pub.X * alpha
    B = pub.h * m
    e = _challenge(ctx, pub, A, N, B)
    return ElogProof(A=A, N=N, B=B, z=(alpha + e * wit.lam) % Q, u=(m + e * wit.y) % Q)


def verify(ctx: ProofContext, pub: ElogPublic, proof: ElogProof) -> None:
    """Raise ProofError unless every check in the module docstring holds."""
    if not isinstance(proof, ElogProof):
        raise ProofError("not a Π^elog proof", check=1)
    # 1. canonical ranges
    L, M = check_point(pub.L, "L", check=1), check_point(pub.M, "M", check=1)
    X, Y, h = (check_point(pub.X, "X", check=1), check_point(pub.Y, "Y", check=1),
               check_point(pub.h, "h", check=1))
    A, N, B = (check_point(proof.A, "A", check=1), check_point(proof.N, "N", check=1),
               check_point(proof.B, "B", check=1))
    z = check_scalar(proof.z, "z", check=1)
    u = check_scalar(proof.u, "u", check=1)

    e = _challenge(ctx, pub, A, N, B)
    require(Point.generator_mul(z) == A + L * e, "Π^elog: g^z != A L^e", check=2)
    require(Point.generator_mul(u) + X * z == N + M * e, "Π^elog: g^u X^z != N M^e", check=3)
    require(h * u == B + Y * e, "Π^elog: h^u != B Y^e", check=4)
