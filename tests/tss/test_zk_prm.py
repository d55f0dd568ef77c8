"""Π^prm: completeness, single-field soundness, binding to the context, parameters with
s outside ⟨t⟩, and the fixed-base table the verifier uses."""

from __future__ import annotations

import dataclasses

import gmpy2
import pytest
from gmpy2 import mpz

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import SeededRNG
from appliance.tss.paillier import RingPedersenParams, RingPedersenSecret, in_unit_group
from appliance.tss.params import security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import prm
from appliance.tss.zk._numtheory import FixedBasePowers
from tests.mutation import assert_rejected, mutations, rejected_by, residue, unit

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


@pytest.fixture(scope="module")
def proof_2048(ring_pedersen):
    rp = ring_pedersen[2048][0]
    return rp, prm.prove(CTX, rp.params, rp, security_params(2048), SeededRNG("prm-2048"))


def test_completeness(paillier_bits, ring_pedersen, rng):
    rp = ring_pedersen[paillier_bits][0]
    params = security_params(paillier_bits)
    proof = prm.prove(CTX, rp.params, rp, params, rng)
    assert len(proof.A) == len(proof.z) == params.m == 128
    prm.verify(CTX, rp.params, proof, params)


def setup_checks(proof, setup, bits):
    """The check of prm's docstring that rejects a change of the parameters: N̂ of another
    size or even, 1.; s, t not non-trivial distinct units, 2.; the proof's A_i, z_i out of
    range under the new N̂, 3.; else the challenge changes and 5. fails."""

    def check(Nh, s, t):
        if Nh <= 0 or Nh.bit_length() != bits or Nh % 2 == 0:
            return 1
        if not (in_unit_group(int(s), int(Nh)) and in_unit_group(int(t), int(Nh))) or 1 in (s, t) or s == t:
            return 2
        in_range = all(in_unit_group(int(a), int(Nh)) for a in proof.A) and all(0 <= z < Nh for z in proof.z)
        return 5 if in_range else 3

    return {"N": lambda v: check(v, setup.s, setup.t), "s": lambda v: check(setup.N, v, setup.t),
            "t": lambda v: check(setup.N, setup.s, v)}


def test_proof_mutations_rejected(proof_2048):
    rp, proof = proof_2048
    params = security_params(2048)
    Nh = rp.params.N
    # out of range, check 3; else A_i changes the challenge and z_i its equation: 5.
    count = assert_rejected(mutations(proof, [Nh]), lambda bad: prm.verify(CTX, rp.params, bad, params),
                            {"A": unit(Nh, 3, 5), "z": residue(Nh, 3, 5)})
    assert count > 60
    for field in ("A", "z"):
        v = getattr(proof, field)
        # a list one entry short or long, check 3; rotated, 5.
        for bad_list, check in ((v[:-1], 3), (v + (v[0],), 3), (v[1:] + (v[0],), 5)):
            with rejected_by(check):
                prm.verify(CTX, rp.params, dataclasses.replace(proof, **{field: bad_list}), params)


def test_public_input_mutations_rejected(proof_2048, ring_pedersen):
    rp, proof = proof_2048
    params = security_params(2048)
    N = rp.params.N
    assert_rejected(mutations(rp.params, [N]), lambda bad: prm.verify(CTX, bad, proof, params),
                    setup_checks(proof, rp.params, 2048))
    s, t = rp.params.s, rp.params.t
    for bad, check in (
        (RingPedersenParams(N, t, t), 2),  # s = t
        (RingPedersenParams(N, s, 1), 2),  # t = 1
        (RingPedersenParams(N, 1, t), 2),  # s = 1
        (RingPedersenParams(N, s, rp.p), 2),  # t not a unit
        (RingPedersenParams(N, t, s), 5),  # swapped: another challenge
        (ring_pedersen[2048][1].params, 5),
    ):
        with rejected_by(check):
            prm.verify(CTX, bad, proof, params)
    with rejected_by(1):
        prm.verify(CTX, rp.params, proof, security_params(3072))


def test_bound_to_context(proof_2048):
    rp, proof = proof_2048
    params = security_params(2048)
    prm.verify(CTX, rp.params, proof, params)
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
    ):
        with rejected_by(5):
            prm.verify(other, rp.params, proof, params)


def test_prove_refuses_foreign_secret(ring_pedersen, rng):
    a, b = ring_pedersen[2048]
    params = security_params(2048)
    with pytest.raises(ParameterError, match="not the secret"):
        prm.prove(CTX, a.params, b, params, rng)
    wrong_lambda = RingPedersenSecret(a.p, a.q, a.lam + 1, a.params)
    with pytest.raises(ParameterError, match="t\\^λ"):
        prm.prove(CTX, a.params, wrong_lambda, params, rng)


# --------------------------------------------------------------------------------------
# s outside ⟨t⟩: the prover knows P, Q but no λ exists


def _bad_setups(rp: RingPedersenSecret, rng) -> list[tuple[str, RingPedersenParams]]:
    P, Q = rp.p, rp.q
    N = P * Q
    out = []
    # t a random square (generating QR_N̂ w.h.p.), s with Jacobi symbol -1: not a power of t
    t = mpz(rng.randbelow(int(N))) ** 2 % N
    while True:
        s = mpz(rng.randbelow(int(N)))
        if gmpy2.jacobi(s, N) == -1:
            break
    out.append(("jacobi-1", RingPedersenParams(N, s, t)))
    # t in the subgroup of order P' = (P-1)/2 only; s a random square, in ⟨t⟩ w.p. 1/Q'
    tau = mpz(rng.randbelow(int(N)))
    t = gmpy2.powmod(tau, 2 * ((Q - 1) // 2), N)
    s = mpz(rng.randbelow(int(N))) ** 2 % N
    assert gmpy2.powmod(s, (P - 1) // 2, N) != 1  # s ∉ ⟨t⟩ (the subgroup killed by P')
    out.append(("square-not-power", RingPedersenParams(N, s, t)))
    return out


def _guessing_prover(ctx, setup: RingPedersenParams, phi: int, m: int, rng) -> prm.PrmProof:
    """Guesses each challenge bit: for a guessed 1 it picks z first and sets A = t^z / s."""
    N, s, t = setup.N, setup.s, setup.t
    s_inv = gmpy2.invert(s, N)
    A, z = [], []
    for _ in range(m):
        zi = mpz(rng.randbelow(int(phi)))
        Ai = gmpy2.powmod(t, zi, N)
        if rng.randbelow(2):
            Ai = Ai * s_inv % N
        A.append(int(Ai))
        z.append(int(zi))
    return prm.PrmProof(A=tuple(A), z=tuple(z))


def _fake_lambda_prover(
    ctx, setup: RingPedersenParams, rp: RingPedersenSecret, m: int, rng
) -> prm.PrmProof:
    """The honest algorithm run with a made-up λ (prove() itself refuses: it checks t^λ = s)."""
    phi = rp.phi
    lam = mpz(rng.randbelow(int(phi)))
    a = [mpz(rng.randbelow(int(phi))) for _ in range(m)]
    A = tuple(int(gmpy2.powmod(setup.t, ai, setup.N)) for ai in a)
    e = prm._challenge(ctx, setup, A, m)
    return prm.PrmProof(A=A, z=tuple(int((ai + ei * lam) % phi) for ai, ei in zip(a, e)))


def test_s_outside_subgroup_rejected(ring_pedersen, rng):
    rp = ring_pedersen[2048][1]
    params = security_params(2048)
    for name, setup in _bad_setups(rp, rng):
        fake = RingPedersenSecret(rp.p, rp.q, mpz(12345), setup)
        with pytest.raises(ParameterError, match="t\\^λ"):
            prm.prove(CTX, setup, fake, params, rng)
        for _ in range(2):
            proof = _guessing_prover(CTX, setup, rp.phi, params.m, rng)
            with rejected_by(5, match="t\\^z"):
                prm.verify(CTX, setup, proof, params)
            proof = _fake_lambda_prover(CTX, setup, rp, params.m, rng)
            with rejected_by(5, match="t\\^z"):
                prm.verify(CTX, setup, proof, params)


def test_guessing_prover_passes_when_guesses_match(ring_pedersen, rng):
    """The guessing prover's A_i are right for the bits it guessed: with the challenge forced
    to its guesses (a short m, brute-forced) it is accepted, so the rejections above come
    from wrong guesses, not from a broken cheater."""
    rp = ring_pedersen[2048][1]
    setup = _bad_setups(rp, rng)[0][1]
    params = dataclasses.replace(security_params(2048), m=4)
    for _ in range(200):
        proof = _guessing_prover(CTX, setup, rp.phi, params.m, rng)
        try:
            prm.verify(CTX, setup, proof, params)
            return
        except ProofError:
            continue
    pytest.fail("no guess out of 200 matched a 4-bit challenge")


# --------------------------------------------------------------------------------------
# the verifier's fixed-base table


@pytest.mark.parametrize("bits", [2048, 3072])
def test_fixed_base_powers(bits, ring_pedersen, rng):
    rp = ring_pedersen[bits][0]
    N, t = rp.params.N, rp.params.t
    table = FixedBasePowers(t, N, bits)
    exps = [0, 1, 2, 63, 64, 65, 127, 128, (1 << bits) - 1, int(N) - 1]
    exps += [rng.randbelow(1 << bits) for _ in range(20)]
    exps += [rng.randbelow(1 << 64) for _ in range(5)]
    for e in exps:
        assert table(e) == gmpy2.powmod(t, e, N), e
    for w in (2, 3, 5, 8):
        small = FixedBasePowers(t, N, bits, window=w)
        for e in exps[:12]:
            assert small(e) == gmpy2.powmod(t, e, N)
    with pytest.raises(ValueError):
        table(-1)
    with pytest.raises(ValueError):
        table(1 << bits)
