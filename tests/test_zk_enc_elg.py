"""Π^enc-elg: completeness, single-field soundness, binding to the context, witness range."""

from __future__ import annotations

import pytest

from appliance.errors import ProofError
from appliance.tss.group import G, Q, random_scalar
from appliance.tss.params import security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import enc_elg
from tests.mutation import mutations

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


def test_proof_mutations_rejected(instance):
    pub, _, proof, rp, params, sk = instance
    count = 0
    for desc, bad in mutations(proof, [sk.N, sk.public.N2, rp.params.N]):
        with pytest.raises(ProofError):
            enc_elg.verify(CTX, pub, bad, rp.params, params, setup_secret=rp)
            pytest.fail(f"accepted mutated proof field {desc}")
        count += 1
    assert count > 80


def test_public_input_mutations_rejected(instance):
    pub, _, proof, rp, params, sk = instance
    for desc, bad in mutations(pub, [sk.N, sk.public.N2]):
        with pytest.raises(ProofError):
            enc_elg.verify(CTX, bad, proof, rp.params, params)
            pytest.fail(f"accepted mutated public input {desc}")


def test_bound_to_context(instance):
    pub, _, proof, rp, params, _ = instance
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
    ):
        with pytest.raises(ProofError):
            enc_elg.verify(other, pub, proof, rp.params, params)


def test_other_setup_rejected(instance, ring_pedersen, paillier_bits):
    pub, _, proof, rp, params, _ = instance
    other = ring_pedersen[paillier_bits][0]
    with pytest.raises(ProofError):
        enc_elg.verify(CTX, pub, proof, other.params, params)


def test_witness_out_of_range(paillier_keys, ring_pedersen, rng):
    sk = paillier_keys[2048][0]
    rp = ring_pedersen[2048][1]
    params = security_params(2048)
    x = 1 << (params.ell + params.eps + 2)
    pub, wit = make_instance(rng, sk, x)
    with pytest.raises(ProofError):
        enc_elg.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk)
    # a prover that skips its own check still cannot pass z1's range check
    import appliance.tss.zk.enc_elg as mod

    ell = params.ell
    params_cheat = type(params)(params.paillier_bits, ell + params.eps + 3, params.ell_prime, params.eps)
    rejected = 0
    for _ in range(5):
        proof = mod.prove(CTX, pub, wit, rp.params, params_cheat, rng, paillier_sk=sk)
        try:
            mod.verify(CTX, pub, proof, rp.params, params)
        except ProofError:
            rejected += 1
    assert rejected == 5
