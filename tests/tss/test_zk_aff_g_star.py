"""Π^aff-g*: completeness, single-field soundness, binding to the context, ranges.

The proof repeats m times; the logic is the same for every m, so most tests run with a
small m (``with_m``) to stay fast, and one proof per modulus size runs with the real m.
Proof mutations fail on their own equations whatever m is; public-input and context
mutations rely on the challenge changing, so they use m = 32 (a 2^-32 chance per case
that the bits stay the same)."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.errors import ParameterError
from appliance.tss.params import M_REPETITIONS, security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import aff_g, aff_g_star
from tests.mutation import assert_rejected, mutations, point, rejected_by, same_mod_q, signed, unit
from tests.tss.test_zk_aff_g import edge_witnesses, honest_masks, make_instance, public_checks

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


def with_m(bits, m):
    return dataclasses.replace(security_params(bits), m=m)


@pytest.fixture(scope="module")
def instance(paillier_keys):
    from appliance.tss.group import SeededRNG

    rng = SeededRNG("aff-g-star instance")
    sk0, sk1 = paillier_keys[2048]
    params = with_m(2048, 32)
    pub, wit = make_instance(rng, sk0, sk1)
    proof = aff_g_star.prove(CTX, pub, wit, params, rng, paillier_sk=sk1)
    return pub, wit, proof, params, sk0, sk1


def test_statement_is_aff_g_statement():
    assert aff_g_star.AffGStarPublic is aff_g.AffGPublic
    assert aff_g_star.AffGStarWitness is aff_g.AffGWitness
    assert aff_g_star.DOMAIN != aff_g.DOMAIN


def test_completeness_full_m(paillier_bits, paillier_keys, rng):
    sk0, sk1 = paillier_keys[paillier_bits]
    # the real m = 128 at 2048 bits; at 3072 bits m = 16 keeps the suite fast (same code)
    params = security_params(2048) if paillier_bits == 2048 else with_m(3072, 16)
    assert paillier_bits != 2048 or params.m == M_REPETITIONS
    pub, wit = make_instance(rng, sk0, sk1)
    proof = aff_g_star.prove(CTX, pub, wit, params, rng, paillier_sk=sk1)
    assert len(proof.A) == params.m
    aff_g_star.verify(CTX, pub, proof, params)


def test_completeness_edge_witnesses(paillier_bits, paillier_keys, rng):
    sk0, sk1 = paillier_keys[paillier_bits]
    params = with_m(paillier_bits, 2)
    for x, y in edge_witnesses(params):
        pub, wit = make_instance(rng, sk0, sk1, x, y)
        proof = aff_g_star.prove(CTX, pub, wit, params, rng, paillier_sk=sk1)
        aff_g_star.verify(CTX, pub, proof, params)
    pub, wit = make_instance(rng, sk0, sk1)
    proof = aff_g_star.prove(CTX, pub, wit, params, rng)  # without the prover's factors
    aff_g_star.verify(CTX, pub, proof, params)


def proof_checks(pub, proof, params):
    """The check of aff_g_star's docstring that rejects a change of one entry of each field:
    out of its range, check 1 (2. for z, z'); a commitment changes the challenge bits, which
    fails check 3 for some repetition (all of 3. runs first; with m = 16 the bits stay the
    same with probability 2^-16); a response fails the first equation it is in, z_j changed
    by a multiple of q (invisible in g^z_j) the Paillier one."""
    ell, ellp, eps = params.ell, params.ell_prime, params.eps
    return {
        "A": unit(pub.N0.N2, 1, 3), "R": point(1, 3), "B": unit(pub.N1.N2, 1, 3),
        "z": signed(ell + eps, 2, same_mod_q(proof.z, 4, 3)),
        "z_prime": signed(ellp + eps, 2, 4), "w": unit(pub.N0.N, 1, 4), "lam": unit(pub.N1.N, 1, 5),
    }


def test_proof_mutations_rejected(paillier_keys, rng):
    sk0, sk1 = paillier_keys[2048]
    params = with_m(2048, 16)
    pub, wit = make_instance(rng, sk0, sk1)
    proof = aff_g_star.prove(CTX, pub, wit, params, rng, paillier_sk=sk1)
    moduli = [sk0.N, sk0.public.N2, sk1.N, sk1.public.N2]
    count = assert_rejected(mutations(proof, moduli), lambda bad: aff_g_star.verify(CTX, pub, bad, params),
                            proof_checks(pub, proof, params))
    assert count > 150
    # a proof with one repetition more or less
    for bad in (
        dataclasses.replace(proof, z=proof.z[:-1]),
        dataclasses.replace(proof, A=proof.A + proof.A[:1]),
    ):
        with rejected_by(1):
            aff_g_star.verify(CTX, pub, bad, params)
    with rejected_by(1):
        aff_g_star.verify(CTX, pub, proof, with_m(2048, 3))


def test_public_input_mutations_rejected(instance):
    pub, _, proof, params, sk0, sk1 = instance
    count = assert_rejected(mutations(pub, [sk0.N, sk0.public.N2, sk1.N, sk1.public.N2]), lambda bad: aff_g_star.verify(CTX, bad, proof, params),
                            public_checks(pub, ([pub.C, pub.D, *proof.A], proof.w), ([pub.Y, *proof.B], proof.lam)))
    assert count > 50


def test_bound_to_context(instance):
    pub, _, proof, params, _, _ = instance
    aff_g_star.verify(CTX, pub, proof, params)
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
        CTX.with_extra(b"round-5"),
    ):
        with rejected_by(3):
            aff_g_star.verify(other, pub, proof, params)


def test_not_an_aff_g_proof(paillier_keys, ring_pedersen, rng):
    """Π^aff-g and Π^aff-g* proofs are not interchangeable."""
    sk0, sk1 = paillier_keys[2048]
    params = with_m(2048, 4)
    pub, wit = make_instance(rng, sk0, sk1)
    proof = aff_g.prove(CTX, pub, wit, ring_pedersen[2048][1].params, params, rng)
    with rejected_by(1):
        aff_g_star.verify(CTX, pub, proof, params)


def test_witness_out_of_range(paillier_keys, rng):
    sk0, sk1 = paillier_keys[2048]
    params = with_m(2048, 16)
    ell, ellp, eps = params.ell, params.ell_prime, params.eps
    cheat = dataclasses.replace(params, ell=ell + eps + 3, ell_prime=ellp + eps + 3)
    big_x, big_y = 1 << (ell + eps + 2), 1 << (ellp + eps + 2)
    for x, y in ((big_x, 5), (5, big_y), (5, -big_y)):
        pub, wit = make_instance(rng, sk0, sk1, x, y)
        with pytest.raises(ParameterError, match="witness . outside"):
            aff_g_star.prove(CTX, pub, wit, params, rng, paillier_sk=sk1)
        # skipping the prover's check: the wide masks or the witness itself break the range
        proof = aff_g_star.prove(CTX, pub, wit, cheat, rng, paillier_sk=sk1)
        with rejected_by(2):
            aff_g_star.verify(CTX, pub, proof, params)
        # honest-size masks with an out-of-range witness
        proof = aff_g_star.prove(CTX, pub, wit, honest_masks(params, x, y), rng)
        with rejected_by(2):
            aff_g_star.verify(CTX, pub, proof, params)


def test_wrong_witness_rejected(paillier_keys, rng):
    sk0, sk1 = paillier_keys[2048]
    params = with_m(2048, 8)
    pub, wit = make_instance(rng, sk0, sk1)
    # each wrong witness value fails the first equation it is in
    for bad, check in (
        (dataclasses.replace(wit, y=wit.y + 1), 4),
        (dataclasses.replace(wit, x=wit.x + 1), 3),
        (dataclasses.replace(wit, rho=wit.rho + 1), 4),
        (dataclasses.replace(wit, rho_y=wit.rho_y + 1), 5),
    ):
        proof = aff_g_star.prove(CTX, pub, bad, params, rng, paillier_sk=sk1)
        with rejected_by(check):
            aff_g_star.verify(CTX, pub, proof, params)
