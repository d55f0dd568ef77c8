"""Π^enc-elg: completeness, single-field soundness, binding to the context, witness range."""

from __future__ import annotations

import pytest

from appliance.errors import ParameterError
from appliance.tss.paillier import in_unit_group
from appliance.tss.group import G, Q, random_scalar
from appliance.tss.params import security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import enc_elg
from tests.mutation import assert_rejected, mutations, point, rejected_by, scalar, signed, unit

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


def make_instance(rng, sk, x=None):
    a, b = random_scalar(rng), random_scalar(rng)
    x = random_scalar(rng) if x is None else x
    rho = sk.public.random_rho(rng)
    C = sk.encrypt(x, rho)
    pub = enc_elg.EncElgPublic(sk.public, C, G * a, G * b, G * ((a * b + x) % Q))
    return pub, enc_elg.EncElgWitness(x, rho, b)


@pytest.fixture
def instance(paillier_bits, paillier_keys, ring_pedersen, rng):
    sk = paillier_keys[paillier_bits][0]
    rp = ring_pedersen[paillier_bits][1]
    params = security_params(paillier_bits)
    pub, wit = make_instance(rng, sk)
    proof = enc_elg.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk)
    return pub, wit, proof, rp, params, sk


def test_completeness(paillier_bits, paillier_keys, ring_pedersen, rng):
    sk = paillier_keys[paillier_bits][0]
    rp = ring_pedersen[paillier_bits][1]
    params = security_params(paillier_bits)
    for x in (0, 1, Q - 1, 1 << 255, -(1 << 200)):
        pub, wit = make_instance(rng, sk, x)
        proof = enc_elg.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk)
        enc_elg.verify(CTX, pub, proof, rp.params, params)
        enc_elg.verify(CTX, pub, proof, rp.params, params, setup_secret=rp)
    # without the prover's factors too
    pub, wit = make_instance(rng, sk)
    proof = enc_elg.prove(CTX, pub, wit, rp.params, params, rng)
    enc_elg.verify(CTX, pub, proof, rp.params, params)


def proof_checks(pub, rp, params):
    """The check of enc_elg's docstring that rejects a change of each proof field: out of its
    range, check 1 (2. for z1); else a commitment changes the challenge and 3. fails, and a
    response fails the first equation it is in."""
    N0, N02, Nh = pub.N0.N, pub.N0.N2, rp.params.N
    ell, eps = params.ell, params.eps
    return {
        "S": unit(Nh, 1, 3), "T": unit(Nh, 1, 3), "D": unit(N02, 1, 3),
        "Y": point(1, 3), "Z": point(1, 3),
        "z1": signed(ell + eps, 2, 3), "w": scalar(1, 4), "z2": unit(N0, 1, 3),
        "z3": signed(ell + eps + 1, 1, 6, scale=Nh),
    }


def public_checks(pub, proof):
    """C out of Z*_{N0²} or an infinite point: check 1; any other change alters the
    challenge: check 3. Another N0 must still have C, D (mod N0²) and z2 as units."""

    def key(N0):
        units = (in_unit_group(pub.C, N0.N2) and in_unit_group(proof.D, N0.N2)
                 and in_unit_group(proof.z2, N0.N))
        return 3 if units else 1

    return {"N0": key, "C": unit(pub.N0.N2, 1, 3), "A": point(1, 3), "B": point(1, 3), "X": point(1, 3)}


def test_proof_mutations_rejected(instance):
    pub, _, proof, rp, params, sk = instance
    count = assert_rejected(mutations(proof, [sk.N, sk.public.N2, rp.params.N]), lambda bad: enc_elg.verify(CTX, pub, bad, rp.params, params, setup_secret=rp), proof_checks(pub, rp, params))
    assert count > 80


def test_public_input_mutations_rejected(instance):
    pub, _, proof, rp, params, sk = instance
    assert_rejected(mutations(pub, [sk.N, sk.public.N2]), lambda bad: enc_elg.verify(CTX, bad, proof, rp.params, params), public_checks(pub, proof))


def test_bound_to_context(instance):
    pub, _, proof, rp, params, _ = instance
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
    ):
        with rejected_by(3):  # another challenge
            enc_elg.verify(other, pub, proof, rp.params, params)


def test_other_setup_rejected(instance, ring_pedersen, paillier_bits):
    pub, _, proof, rp, params, _ = instance
    other = ring_pedersen[paillier_bits][0]
    # S, T are units mod the prover's N̂ (check 1 fails when they are not under the other);
    # otherwise the other setup gives another challenge (check 3)
    units = all(in_unit_group(v, other.params.N) for v in (proof.S, proof.T))
    with rejected_by(3 if units else 1):
        enc_elg.verify(CTX, pub, proof, other.params, params)


def test_witness_out_of_range(paillier_keys, ring_pedersen, rng):
    sk = paillier_keys[2048][0]
    rp = ring_pedersen[2048][1]
    params = security_params(2048)
    x = 1 << (params.ell + params.eps + 2)
    pub, wit = make_instance(rng, sk, x)
    with pytest.raises(ParameterError, match="witness x outside"):
        enc_elg.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk)
    # a prover that skips its own check (by claiming a larger ℓ) is still rejected: its
    # responses leave their ranges, and z3's (check 1) is checked before z1's (check 2)
    import appliance.tss.zk.enc_elg as mod

    ell = params.ell
    params_cheat = type(params)(params.paillier_bits, ell + params.eps + 3, params.ell_prime, params.eps)
    for _ in range(5):
        proof = mod.prove(CTX, pub, wit, rp.params, params_cheat, rng, paillier_sk=sk)
        with rejected_by(1, match="z3 outside"):
            mod.verify(CTX, pub, proof, rp.params, params)
