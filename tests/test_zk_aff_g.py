"""Π^aff-g: completeness, single-field soundness, binding to the context and setup, ranges."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.errors import ProofError
from appliance.tss.group import G, Q, random_scalar
from appliance.tss.params import security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import aff_g
from tests.mutation import mutations

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


def make_instance(rng, sk0, sk1, x=None, y=None):
    """C under the verifier's key N0, D = C^x enc0(-y, ρ), Y = enc1(y, ρ_y), X = g^x."""
    params = security_params(sk0.public.bits)
    x = random_scalar(rng) if x is None else x
    y = rng.randbelow(1 << params.ell_prime) if y is None else y
    C = sk0.encrypt(random_scalar(rng), sk0.public.random_rho(rng))
    rho, rho_y = sk0.public.random_rho(rng), sk1.public.random_rho(rng)
    N02 = sk0.public.N2
    D = sk0.public.mul(C, x) * sk0.public.encrypt(-y, rho) % N02
    Y = sk1.encrypt(y, rho_y)
    pub = aff_g.AffGPublic(sk0.public, sk1.public, C, D, Y, G * (x % Q))
    return pub, aff_g.AffGWitness(x, y, rho, rho_y)


def edge_witnesses(params):
    ell, ellp = params.ell, params.ell_prime
    return [
        (1, 0),
        (1 << ell, 1 << ellp),
        (-(1 << ell), -(1 << ellp)),
        (Q - 1, -1),
        (-1, (1 << ellp) - 1),
    ]


def honest_masks(params, x, y):
    """Parameters whose witness check admits (x, y) while the masks keep their honest sizes
    ±2^(ℓ+ε), ±2^(ℓ'+ε): ℓ and ℓ' go up by as much as ε goes down."""
    bump = max(abs(x).bit_length() - params.ell, abs(y).bit_length() - params.ell_prime, 0) + 1
    return dataclasses.replace(
        params, ell=params.ell + bump, ell_prime=params.ell_prime + bump, eps=params.eps - bump
    )


@pytest.fixture
def keys(paillier_bits, paillier_keys, ring_pedersen):
    sk0, sk1 = paillier_keys[paillier_bits]
    return sk0, sk1, ring_pedersen[paillier_bits][1], security_params(paillier_bits)


@pytest.fixture
def instance(keys, rng):
    sk0, sk1, rp, params = keys
    pub, wit = make_instance(rng, sk0, sk1)
    proof = aff_g.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk1)
    return pub, wit, proof, rp, params, sk0, sk1


def test_completeness(keys, rng):
    sk0, sk1, rp, params = keys
    for x, y in edge_witnesses(params):
        pub, wit = make_instance(rng, sk0, sk1, x, y)
        proof = aff_g.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk1)
        aff_g.verify(CTX, pub, proof, rp.params, params)
        aff_g.verify(CTX, pub, proof, rp.params, params, setup_secret=rp)
    # without the prover's factors too
    pub, wit = make_instance(rng, sk0, sk1)
    proof = aff_g.prove(CTX, pub, wit, rp.params, params, rng)
    aff_g.verify(CTX, pub, proof, rp.params, params, setup_secret=rp)


def test_x_zero_means_identity_public_point(keys, rng):
    """x = 0 makes X the point at infinity, which no party may send: a rejected statement."""
    sk0, sk1, rp, params = keys
    pub, wit = make_instance(rng, sk0, sk1, 0, 5)
    proof = aff_g.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk1)
    with pytest.raises(ProofError, match="X is not a curve point"):
        aff_g.verify(CTX, pub, proof, rp.params, params)


def test_wrong_prover_key_refused(keys, rng):
    sk0, sk1, rp, params = keys
    pub, wit = make_instance(rng, sk0, sk1)
    with pytest.raises(ValueError):
        aff_g.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk0)


def test_proof_mutations_rejected(instance):
    pub, _, proof, rp, params, sk0, sk1 = instance
    moduli = [sk0.N, sk0.public.N2, sk1.N, sk1.public.N2, rp.params.N]
    count = 0
    for desc, bad in mutations(proof, moduli):
        with pytest.raises(ProofError):
            aff_g.verify(CTX, pub, bad, rp.params, params, setup_secret=rp)
            pytest.fail(f"accepted mutated proof field {desc}")
        count += 1
    assert count > 150
    with pytest.raises(ProofError):
        aff_g.verify(CTX, pub, object(), rp.params, params)


def test_public_input_mutations_rejected(instance):
    pub, _, proof, rp, params, sk0, sk1 = instance
    count = 0
    for desc, bad in mutations(pub, [sk0.N, sk0.public.N2, sk1.N, sk1.public.N2]):
        with pytest.raises(ProofError):
            aff_g.verify(CTX, bad, proof, rp.params, params, setup_secret=rp)
            pytest.fail(f"accepted mutated public input {desc}")
        count += 1
    assert count > 50


def test_bound_to_context(instance):
    pub, _, proof, rp, params, _, _ = instance
    aff_g.verify(CTX, pub, proof, rp.params, params)
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
        CTX.with_extra(b"round-2"),
    ):
        with pytest.raises(ProofError):
            aff_g.verify(other, pub, proof, rp.params, params)


def test_other_setup_rejected(instance, ring_pedersen, paillier_bits):
    pub, _, proof, rp, params, _, _ = instance
    other = ring_pedersen[paillier_bits][0]
    with pytest.raises(ProofError):
        aff_g.verify(CTX, pub, proof, other.params, params)
    with pytest.raises(ProofError):
        aff_g.verify(CTX, pub, proof, other.params, params, setup_secret=other)
    # the other verifier's own secret does not help with parameters it does not own
    with pytest.raises(ProofError):
        aff_g.verify(CTX, pub, proof, other.params, params, setup_secret=rp)


def test_witness_out_of_range(paillier_keys, ring_pedersen, rng):
    sk0, sk1 = paillier_keys[2048]
    rp = ring_pedersen[2048][1]
    params = security_params(2048)
    ell, ellp, eps = params.ell, params.ell_prime, params.eps
    cheat = dataclasses.replace(params, ell=ell + eps + 3, ell_prime=ellp + eps + 3)
    big_x, big_y = 1 << (ell + eps + 2), 1 << (ellp + eps + 2)
    for x, y in ((big_x, 5), (5, big_y), (-big_x, 5)):
        pub, wit = make_instance(rng, sk0, sk1, x, y)
        with pytest.raises(ProofError):
            aff_g.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk1)
        # a prover that skips its own check still fails, with wider masks or honest-size ones
        for cheat_params in (cheat, honest_masks(params, x, y), cheat, honest_masks(params, x, y)):
            proof = aff_g.prove(CTX, pub, wit, rp.params, cheat_params, rng, paillier_sk=sk1)
            with pytest.raises(ProofError):
                aff_g.verify(CTX, pub, proof, rp.params, params, setup_secret=rp)


def test_wrong_witness_rejected(paillier_keys, ring_pedersen, rng):
    """D built with y + 1 (or Y with another y): the prover's algorithm gives a bad proof."""
    sk0, sk1 = paillier_keys[2048]
    rp = ring_pedersen[2048][1]
    params = security_params(2048)
    pub, wit = make_instance(rng, sk0, sk1)
    for bad in (
        dataclasses.replace(wit, y=wit.y + 1),
        dataclasses.replace(wit, x=wit.x + 1),
        dataclasses.replace(wit, rho=wit.rho + 1),
        dataclasses.replace(wit, rho_y=wit.rho_y + 1),
    ):
        proof = aff_g.prove(CTX, pub, bad, rp.params, params, rng, paillier_sk=sk1)
        with pytest.raises(ProofError):
            aff_g.verify(CTX, pub, proof, rp.params, params, setup_secret=rp)
