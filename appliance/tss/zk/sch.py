"""Π^sch: Schnorr proof of knowledge of a discrete logarithm (2024 revision, Fig. 22).

Public inputs: X ∈ G (not infinity); the proof context (session id, prover index, rid).
Witness: x ∈ F_q with X = g^x.

Prover: α ← F_q, A = g^α (the commitment, which keygen sends ahead of the proof),
e = H(ctx, X, A) ∈ F_q, z = α + e·x mod q.

Verifier checks (the first that fails raises ``ProofError(check=n)``):
1. The proof is a Π^sch proof; A and X are curve points (not infinity); z ∈ [0, q).
2. e is recomputed from the transcript (nothing to fail: any A gives some e).
3. g^z = A · X^e.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ProofError
from appliance.tss.group import RNG, Q, Point, random_scalar
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import check_point, check_scalar, require

DOMAIN = b"pi-sch"


@dataclass(frozen=True)
class SchCommitment:
    """The prover's first message A = g^α; α stays with the prover."""

    A: Point


@dataclass(frozen=True)
class SchSecret:
    alpha: int

    def __repr__(self) -> str:
        return "SchSecret(<hidden>)"


@dataclass(frozen=True)
class SchProof:
    A: Point
    z: int


def commit(rng: RNG) -> tuple[SchSecret, SchCommitment]:
    alpha = random_scalar(rng)
    return SchSecret(alpha), SchCommitment(Point.generator_mul(alpha))


def _challenge(ctx: ProofContext, X: Point, A: Point) -> int:
    return Transcript(DOMAIN, ctx).append("X", X).append("A", A).challenge_scalar("e")


def prove(
    ctx: ProofContext,
    X: Point,
    x: int,
    rng: RNG | None = None,
    *,
    precommitted: tuple[SchSecret, SchCommitment] | None = None,
) -> SchProof:
    """Prove knowledge of x with X = g^x; use ``precommitted`` when A was sent earlier."""
    if precommitted is None:
        if rng is None:
            raise ValueError("prove needs an RNG when no commitment was made earlier")
        precommitted = commit(rng)
    secret, commitment = precommitted
    e = _challenge(ctx, X, commitment.A)
    return SchProof(commitment.A, (secret.alpha + e * x) % Q)


def verify(ctx: ProofContext, X: Point, proof: SchProof) -> None:
    """Raise ProofError unless ``proof`` shows knowledge of log_g X under ``ctx``."""
    if not isinstance(proof, SchProof):
        raise ProofError("not a Π^sch proof", check=1)
    check_point(X, "X", check=1)
    A = check_point(proof.A, "A", check=1)
    z = check_scalar(proof.z, "z", check=1)
    e = _challenge(ctx, X, A)  # 2.
    require(Point.generator_mul(z) == A + X * e, "Π^sch: g^z != A·X^e", check=3)
