"""Π^aff-g: completeness, single-field soundness, binding to the context and setup, ranges."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.errors import ParameterError
from appliance.tss.paillier import in_unit_group
from appliance.tss.group import G, Q, random_scalar
from appliance.tss.params import security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import aff_g
from tests.mutation import assert_rejected, mutations, point, rejected_by, same_mod_q, signed, unit

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
    with rejected_by(1, match="X is not a curve point"):
        aff_g.verify(CTX, pub, proof, rp.params, params)


def test_wrong_prover_key_refused(keys, rng):
    sk0, sk1, rp, params = keys
    pub, wit = make_instance(rng, sk0, sk1)
    with pytest.raises(ValueError):
        aff_g.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk0)


def proof_checks(pub, proof, Nh, params):
    """The check of aff_g's docstring that rejects a change of each proof field: out of its
    range, check 1 (2. for z1, z2); a commitment changes the challenge, so 3. fails; a
    response fails the first equation it is in (z1 changed by a multiple of q, invisible in
    g^z1, fails 4.)."""
    ell, ellp, eps = params.ell, params.ell_prime, params.eps
    return {
        "A": unit(pub.N0.N2, 1, 3), "B_x": point(1, 3), "B_y": unit(pub.N1.N2, 1, 3),
        **{name: unit(Nh, 1, 3) for name in ("E", "S", "F", "T")},
        "z1": signed(ell + eps, 2, same_mod_q([proof.z1], 4, 3)), "z2": signed(ellp + eps, 2, 4),
        "z3": signed(ell + eps + 1, 1, 6, scale=Nh), "z4": signed(ell + eps + 1, 1, 7, scale=Nh),
        "w": unit(pub.N0.N, 1, 4), "w_y": unit(pub.N1.N, 1, 5),
    }


def public_checks(pub, n0_units, n1_units):
    """The check of aff_g's (and aff_g_star's) docstring that rejects a change of each public
    input: out of its range, check 1; else the challenge changes and 3. fails. Another key N0
    (N1) must keep the ciphertexts ``n0_units`` = (values mod N0², values mod N0) units, or
    check 1 fails."""

    def key(units):
        squares, plain = units
        return lambda k: 3 if (all(in_unit_group(int(v), int(k.N2)) for v in squares)
                               and all(in_unit_group(int(v), int(k.N)) for v in plain)) else 1

    return {
        "N0": key(n0_units), "N1": key(n1_units),
        "C": unit(pub.N0.N2, 1, 3), "D": unit(pub.N0.N2, 1, 3), "Y": unit(pub.N1.N2, 1, 3),
        "X": point(1, 3),
    }


def test_proof_mutations_rejected(instance):
    pub, _, proof, rp, params, sk0, sk1 = instance
    moduli = [sk0.N, sk0.public.N2, sk1.N, sk1.public.N2, rp.params.N]
    count = assert_rejected(mutations(proof, moduli),
                            lambda bad: aff_g.verify(CTX, pub, bad, rp.params, params, setup_secret=rp),
                            proof_checks(pub, proof, rp.params.N, params))
    assert count > 150
    with rejected_by(1):
        aff_g.verify(CTX, pub, object(), rp.params, params)


def test_public_input_mutations_rejected(instance):
    pub, _, proof, rp, params, sk0, sk1 = instance
    count = assert_rejected(mutations(pub, [sk0.N, sk0.public.N2, sk1.N, sk1.public.N2]), lambda bad: aff_g.verify(CTX, bad, proof, rp.params, params, setup_secret=rp),
                            public_checks(pub, ([pub.C, pub.D, proof.A], [proof.w]), ([pub.Y, proof.B_y], [proof.w_y])))
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
        with rejected_by(3):
            aff_g.verify(other, pub, proof, rp.params, params)


def test_other_setup_rejected(instance, ring_pedersen, paillier_bits):
    pub, _, proof, rp, params, _, _ = instance
    other = ring_pedersen[paillier_bits][0]
    # E, S, F, T must be units mod the other N̂ (check 1); then the challenge differs (3.)
    check = 3 if all(in_unit_group(v, other.params.N) for v in (proof.E, proof.S, proof.F, proof.T)) else 1
    with rejected_by(check):
        aff_g.verify(CTX, pub, proof, other.params, params)
    with rejected_by(check):
        aff_g.verify(CTX, pub, proof, other.params, params, setup_secret=other)
    # the other verifier's own secret does not help with parameters it does not own
    with rejected_by(check):
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
        with pytest.raises(ParameterError, match="witness . outside"):
            aff_g.prove(CTX, pub, wit, rp.params, params, rng, paillier_sk=sk1)
        # a prover that skips its own check still fails, with wider masks or honest-size ones
        for cheat_params in (cheat, honest_masks(params, x, y), cheat, honest_masks(params, x, y)):
            proof = aff_g.prove(CTX, pub, wit, rp.params, cheat_params, rng, paillier_sk=sk1)
            with rejected_by(1):
                aff_g.verify(CTX, pub, proof, rp.params, params, setup_secret=rp)


def test_wrong_witness_rejected(paillier_keys, ring_pedersen, rng):
    """D built with y + 1 (or Y with another y): the prover's algorithm gives a bad proof."""
    sk0, sk1 = paillier_keys[2048]
    rp = ring_pedersen[2048][1]
    params = security_params(2048)
    pub, wit = make_instance(rng, sk0, sk1)
    # each wrong witness value fails the first equation it is in
    for bad, check in (
        (dataclasses.replace(wit, y=wit.y + 1), 4),
        (dataclasses.replace(wit, x=wit.x + 1), 3),
        (dataclasses.replace(wit, rho=wit.rho + 1), 4),
        (dataclasses.replace(wit, rho_y=wit.rho_y + 1), 5),
    ):
        proof = aff_g.prove(CTX, pub, bad, rp.params, params, rng, paillier_sk=sk1)
        with rejected_by(check):
            aff_g.verify(CTX, pub, proof, rp.params, params, setup_secret=rp)
