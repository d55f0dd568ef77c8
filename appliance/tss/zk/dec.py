"""Π^dec: Paillier special decryption in the exponent, i.e. decryption modulo q (2024
revision, Section A.6, Fig. 28, with the errata of synedrion's PAPER.md and one correction
of ours to the range of the masks, explained below).

Used in the identification step of presigning (Fig. 9, Section 4.3.1): party i shows that
its announced δ_i (or χ_i) is the decryption, reduced mod q, of K_i^γ_i · D (or
K_i^x_i · D̂) under its own key. Like Π^aff-g* the proof goes to every party at once, so
there is no ring-Pedersen setup: it repeats m times (``params.m``) with one-bit challenges.

Public inputs: the prover's own Paillier key N0; K, D ∈ Z*_{N0²} with enc0(y, ρ) = K^x · D
mod N0² (Fig. 28 writes (1+N)^z: a typo for y); X = g^x; S = Γ^y; the base point Γ (the
"fifth public parameter" that Fig. 28 leaves implicit: g in Fig. 8 and 9, Γ in Section
4.3.1); the number of parties n; the proof context.
Witness: x ∈ ±2^ℓ, y ∈ ±2^y_bits, ρ ∈ Z*_{N0}.

Ranges (``ranges(params, n)``; b = params.paillier_bits, the size of N0):
  y_bits = ℓ' + ε + 1 + ⌈log2 n⌉. Fig. 28 asks y ∈ ±2^ℓ', but δ_i (and χ_i) adds k_i·γ_i
    to n-1 terms α_{i,j} + β_{i,j}, each only proven within ±2^(ℓ'+ε) by Π^aff-g
    (PAPER.md, "Range of delta_i"): hence the number of parties n is a public input.
  w_bits = y_bits + ε_d with ε_d = min(ε, b - 4 - y_bits) = ℓ - 5 - ⌈log2 n⌉ here (231 bits
    or more for up to 2^20 parties): the masks β_j hide y to within m·2^-ε_d.
    Why not ε_d = ε as PAPER.md has it: then w_bits = ℓ' + 2ε + 1 + ⌈log2 n⌉ > b, and the
    y' = w_j(e_j=1) - w_j(e_j=0) that soundness extracts is pinned only mod N0, so a prover
    can run the protocol with y* = y + k·N0 for any k and "prove" S = Γ^y* for any δ mod q
    (tests/tss/test_zk_dec.py shows such a forgery). With w_bits <= b - 4,
    |y'| <= 2^(w_bits+1) < N0/2: y' is the decryption itself, and y' mod q is log_Γ S.

Prover, for j = 1..m:
  α_j ← ±2^(ℓ+ε), β_j ← ±2^w_bits, r_j ← Z*_{N0};
  A_j = K^(-α_j) · enc0(β_j, r_j) mod N0², B_j = Γ^β_j, C_j = g^α_j;
  e = (e_1..e_m) ← {0,1}^m from the transcript (ctx, N0, K, X, D, S, Γ, n, A, B, C);
  z_j = α_j + e_j·x, w_j = β_j + e_j·y, ν_j = r_j·ρ^e_j mod N0.

Verifier checks (every field in its canonical range first; the first that fails raises
``ProofError(check=n)``):
  1. The proof is a Π^dec proof; n ∈ [1, 2^20]; N0 of at least ``params.paillier_bits`` bits (so N0 ≥ 2^(w_bits+3));
     A, B, C, z, w, ν have m entries each;
     A_j ∈ Z*_{N0²}; B_j, C_j curve points; ν_j ∈ Z*_{N0}; the public K, D ∈ Z*_{N0²} and
     X, S, Γ curve points.
  2. z_j ∈ ±2^(ℓ+ε) and w_j ∈ ±2^w_bits for every j  (the range checks).
  3. g^z_j = C_j · X^e_j for every j.
  4. Γ^w_j = B_j · S^e_j for every j.
  5. enc0(w_j, ν_j) · K^(-z_j) = A_j · D^e_j mod N0² for every j.
  (3. runs for every j, then 4. for every j, then 5., the costly one: a changed challenge
  fails 3. whichever commitment changed it.)
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import RNG, Point
from appliance.tss.paillier import PaillierPublicKey, PaillierSecretKey, pow_pub
from appliance.tss.params import MAX_PARTIES_LOG2, SecurityParams
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk._checks import (
    SignedSecretPowers,
    check_int,
    check_point,
    check_repeated,
    check_signed_range,
    check_unit,
    require,
    sample_signed,
    sample_unit,
)

DOMAIN = b"pi-dec"

#: the masks hide y to within m·2^-ε_d; refuse parameters that would give less than 2^-128
_MIN_HIDING_BITS = 128


@dataclass(frozen=True)
class DecPublic:
    N0: PaillierPublicKey
    K: int
    X: Point
    D: int
    S: Point
    Gamma: Point
    n_parties: int


@dataclass(frozen=True)
class DecWitness:
    x: int
    y: int
    rho: int

    def __repr__(self) -> str:
        return "DecWitness(<hidden>)"


@dataclass(frozen=True)
class DecProof:
    """m commitments (A_j, B_j, C_j) and m responses (z_j, w_j, ν_j)."""

    A: tuple[int, ...]
    B: tuple[Point, ...]
    C: tuple[Point, ...]
    z: tuple[int, ...]
    w: tuple[int, ...]
    nu: tuple[int, ...]


def ranges(params: SecurityParams, n_parties: int) -> tuple[int, int]:
    """(y_bits, w_bits): y ∈ ±2^y_bits (the witness), w_j ∈ ±2^w_bits (the responses)."""
    if not 1 <= n_parties <= 1 << MAX_PARTIES_LOG2:
        raise ParameterError(f"Π^dec: number of parties outside [1, 2^{MAX_PARTIES_LOG2}]")
    y_bits = params.ell_prime + params.eps + 1 + (n_parties - 1).bit_length()
    # |w_j(e=1) - w_j(e=0)| <= 2^(w_bits+1) < N0/2 for any N0 of at least paillier_bits bits
    slack = min(params.eps, params.paillier_bits - 4 - y_bits)
    if slack < _MIN_HIDING_BITS + params.m.bit_length():
        raise ParameterError("Π^dec: the Paillier modulus leaves too little room for the masks")
    return y_bits, y_bits + slack


def _challenge(
    ctx: ProofContext, pub: DecPublic, m: int, A: tuple, B: tuple, C: tuple
) -> list[int]:
    tr = Transcript(DOMAIN, ctx)
    tr.append_many(N0=pub.N0.N, K=pub.K, X=pub.X, D=pub.D, S=pub.S, Gamma=pub.Gamma)
    tr.append("n", pub.n_parties)
    tr.append_many(A=A, B=B, C=C)
    return tr.challenge_bits("e", m)


def prove(
    ctx: ProofContext,
    pub: DecPublic,
    wit: DecWitness,
    params: SecurityParams,
    rng: RNG,
    *,
    paillier_sk: PaillierSecretKey | None = None,
) -> DecProof:
    """``paillier_sk``, the prover's own key for N0, makes K^-α_j and enc0 use CRT."""
    ell, eps, m = params.ell, params.eps, params.m
    y_bits, w_bits = ranges(params, pub.n_parties)
    if not -(1 << ell) <= wit.x <= (1 << ell):
        raise ParameterError("Π^dec: witness x outside ±2^ℓ")
    if not -(1 << y_bits) <= wit.y <= (1 << y_bits):
        raise ParameterError("Π^dec: witness y outside ±2^(ℓ'+ε+1+⌈log2 n⌉)")
    N0 = pub.N0.N
    if paillier_sk is not None and paillier_sk.N != N0:
        raise ValueError("paillier_sk is not the prover's key N0")
    enc0 = paillier_sk.encrypt if paillier_sk is not None else pub.N0.encrypt
    k_pow = SignedSecretPowers(pub.K, pub.N0.N2, ell + eps + 1, paillier_sk)

    alpha = [sample_signed(rng, ell + eps) for _ in range(m)]
    beta = [sample_signed(rng, w_bits) for _ in range(m)]
    r = [sample_unit(rng, N0) for _ in range(m)]
    A = tuple(int(k_pow(-a) * enc0(b, r_j) % pub.N0.N2) for a, b, r_j in zip(alpha, beta, r))
    B = tuple(pub.Gamma * b for b in beta)
    C = tuple(Point.generator_mul(a) for a in alpha)

    e = _challenge(ctx, pub, m, A, B, C)
    rho = wit.rho % N0
    return DecProof(
        A=A, B=B, C=C,
        z=tuple(a + e_j * wit.x for a, e_j in zip(alpha, e)),
        w=tuple(b + e_j * wit.y for b, e_j in zip(beta, e)),
        nu=tuple(int(r_j * rho % N0) if e_j else int(r_j) for r_j, e_j in zip(r, e)),
    )


def verify(
    ctx: ProofContext,
    pub: DecPublic,
    proof: DecProof,
    params: SecurityParams,
) -> None:
    """Raise ProofError unless every check in the module docstring holds."""
    if not isinstance(proof, DecProof):
        raise ProofError("not a Π^dec proof", check=1)
    ell, eps, m = params.ell, params.eps, params.m
    # 1. canonical ranges
    n = check_int(pub.n_parties, "n", check=1)
    require(1 <= n <= 1 << MAX_PARTIES_LOG2, "Π^dec: number of parties out of range", check=1)
    _, w_bits = ranges(params, n)
    N0, N02 = pub.N0.N, pub.N0.N2
    require(pub.N0.bits >= params.paillier_bits, "Π^dec: N0 smaller than the parameters' size", check=1)
    K = check_unit(pub.K, N02, "K", check=1)
    D = check_unit(pub.D, N02, "D", check=1)
    X, S = check_point(pub.X, "X", check=1), check_point(pub.S, "S", check=1)
    Gamma = check_point(pub.Gamma, "Γ", check=1)
    A_in, B_in, C_in, nu_in, z_in, w_in = (
        check_repeated(getattr(proof, name), m, name, check=1)
        for name in ("A", "B", "C", "nu", "z", "w")
    )
    A = tuple(check_unit(a, N02, f"A[{j}]", check=1) for j, a in enumerate(A_in))
    B = tuple(check_point(b, f"B[{j}]", check=1) for j, b in enumerate(B_in))
    C = tuple(check_point(c, f"C[{j}]", check=1) for j, c in enumerate(C_in))
    nu = [check_unit(v, N0, f"ν[{j}]", check=1) for j, v in enumerate(nu_in)]
    # 2. the range checks
    z = [check_signed_range(v, ell + eps, f"z[{j}]", check=2) for j, v in enumerate(z_in)]
    w = [check_signed_range(v, w_bits, f"w[{j}]", check=2) for j, v in enumerate(w_in)]

    e = _challenge(ctx, pub, m, A, B, C)
    for j in range(m):
        X_e = X if e[j] else Point.INFINITY
        require(Point.generator_mul(z[j]) == C[j] + X_e, f"Π^dec[{j}]: g^z != C X^e", check=3)
    for j in range(m):
        S_e = S if e[j] else Point.INFINITY
        require(Gamma * w[j] == B[j] + S_e, f"Π^dec[{j}]: Γ^w != B S^e", check=4)
    for j in range(m):
        lhs = pub.N0.encrypt(w[j], nu[j]) * pow_pub(K, -z[j], N02) % N02
        rhs = A[j] * D % N02 if e[j] else A[j]
        require(lhs == rhs, f"Π^dec[{j}]: enc0(w, ν) K^-z != A D^e", check=5)
