"""Π^prm: ring-Pedersen parameters are well formed, s ∈ ⟨t⟩ (2024 revision, Section 5.3,
Fig. 13 as synedrion cites it; Fig. 17 in the 2021 numbering).

Public inputs: the prover's ring-Pedersen parameters (N̂, s, t); the proof context;
m = params.m = 128.
Witness: λ with s = t^λ mod N̂, and φ(N̂) (a ``RingPedersenSecret``: the safe primes P, Q).

Prover, for i = 1..m:
  a_i ← Z_φ(N̂), A_i = t^a_i mod N̂ (by CRT over P, Q, in constant time);
  e_1..e_m ∈ {0, 1} from the transcript (ctx, N̂, s, t, A_1..A_m);
  z_i = a_i + e_i·λ mod φ(N̂).
  (The prover first checks t^λ = s, so it never answers for parameters it does not own.)

Verifier checks (the first that fails raises ``ProofError(check=n)``):
  1. The proof is a Π^prm proof; N̂ has params.paillier_bits bits and is odd.
  2. s, t ∈ Z*_N̂; t ≠ 1, s ≠ 1, s ≠ t.
  3. A and z have exactly m entries; every A_i ∈ Z*_N̂; every z_i ∈ [0, N̂).
  4. e_1..e_m are recomputed from the transcript (nothing to fail).
  5. t^z_i = A_i · s^e_i mod N̂ for every i.
Check 5 raises one public base t to m public exponents; it uses a fixed-base table
(``FixedBasePowers``), about four times faster than m separate exponentiations. Each
repetition is still checked on its own: no batching, since Z*_N̂ has elements of small order.
"""

from __future__ import annotations

from dataclasses import dataclass

from gmpy2 import mpz

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import RNG
from appliance.tss.paillier import RingPedersenParams, RingPedersenSecret
from appliance.tss.params import SecurityParams
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import (
    check_modulus,
    check_repeated,
    check_residue,
    check_unit,
    require,
)
from appliance.tss.zk._numtheory import FixedBasePowers

DOMAIN = b"pi-prm"


@dataclass(frozen=True)
class PrmProof:
    A: tuple[int, ...]
    z: tuple[int, ...]


def _challenge(
    ctx: ProofContext, setup: RingPedersenParams, A: tuple[int, ...], m: int
) -> list[int]:
    tr = Transcript(DOMAIN, ctx)
    tr.append_many(Nhat=setup.N, s=setup.s, t=setup.t)
    tr.append("A", A)
    return tr.challenge_bits("e", m)


def prove(
    ctx: ProofContext,
    setup: RingPedersenParams,
    secret: RingPedersenSecret,
    params: SecurityParams,
    rng: RNG,
) -> PrmProof:
    """Prove knowledge of λ with s = t^λ mod N̂ for one's own parameters ``setup``."""
    if secret.params != setup:
        raise ParameterError("Π^prm: the secret is not the secret of these parameters")
    if secret.commit_fast(1, 0) != setup.s % setup.N:
        raise ParameterError("Π^prm: s != t^λ")
    phi = secret.phi
    a = [mpz(rng.randbelow(int(phi))) for _ in range(params.m)]
    A = tuple(int(secret.commit_fast(0, ai)) for ai in a)
    e = _challenge(ctx, setup, A, params.m)
    z = tuple(int((ai + ei * secret.lam) % phi) for ai, ei in zip(a, e))
    return PrmProof(A=A, z=z)


def verify(
    ctx: ProofContext, setup: RingPedersenParams, proof: PrmProof, params: SecurityParams
) -> None:
    """Raise ProofError unless every check in the module docstring holds."""
    if not isinstance(proof, PrmProof):
        raise ProofError("not a Π^prm proof", check=1)
    m = params.m
    # 1, 2. the parameters
    Nh = check_modulus(setup.N, params.paillier_bits, "Π^prm: N̂", check=1)
    s = check_unit(setup.s, Nh, "s", check=2)
    t = check_unit(setup.t, Nh, "t", check=2)
    require(t != 1 and s != 1, "Π^prm: s or t is 1", check=2)
    require(s != t, "Π^prm: s = t", check=2)
    # 3. every field in its canonical range
    A_in = check_repeated(proof.A, m, "Π^prm: A", check=3)
    z_in = check_repeated(proof.z, m, "Π^prm: z", check=3)
    A = [check_unit(v, Nh, f"A[{i}]", check=3) for i, v in enumerate(A_in)]
    z = [check_residue(v, Nh, f"z[{i}]", check=3) for i, v in enumerate(z_in)]
    # 4. the challenge
    e = _challenge(ctx, setup, tuple(A), m)
    # 5. t^z_i = A_i s^e_i
    t_pow = FixedBasePowers(t, Nh, Nh.bit_length())
    for i in range(m):
        rhs = A[i] * s % Nh if e[i] else A[i]
        require(t_pow(z[i]) == rhs, f"Π^prm: t^z[{i}] != A s^e", check=5)
