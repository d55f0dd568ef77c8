"""Π^fac: completeness, single-field soundness, binding to the context and setup, and moduli
with small factors (the BitForge construction) or false factorizations."""

from __future__ import annotations

import dataclasses
from math import prod

import gmpy2
import pytest
from gmpy2 import mpz

from appliance.errors import ParameterError
from appliance.tss.group import SeededRNG
from appliance.tss.paillier import PaillierPublicKey, PaillierSecretKey, in_unit_group
from appliance.tss.params import security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import fac
from tests.mutation import assert_rejected, mutations, rejected_by, signed, unit
from tests.zk_attacks import bitforge_modulus

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


@pytest.fixture
def instance(paillier_bits, paillier_keys, ring_pedersen):
    sk = paillier_keys[paillier_bits][0]
    rp = ring_pedersen[paillier_bits][1]  # the verifier's setup
    params = security_params(paillier_bits)
    proof = fac.prove(CTX, sk.public, sk, rp.params, params, SeededRNG(f"fac-{paillier_bits}"))
    return sk, rp, params, proof


def test_completeness(paillier_bits, paillier_keys, ring_pedersen, rng):
    params = security_params(paillier_bits)
    rp = ring_pedersen[paillier_bits][1]
    for sk in paillier_keys[paillier_bits]:
        for _ in range(2):
            proof = fac.prove(CTX, sk.public, sk, rp.params, params, rng)
            fac.verify(CTX, sk.public, proof, rp.params, params)
            fac.verify(CTX, sk.public, proof, rp.params, params, setup_secret=rp)
    # another party's secret is not used for CRT (and the proof still verifies)
    other = ring_pedersen[paillier_bits][0]
    fac.verify(CTX, sk.public, proof, rp.params, params, setup_secret=other)


def proof_checks(N0, Nh, params):
    """The check of fac's docstring that rejects a change of each proof field: out of its
    range, 2. (P, Q, A, B, T), 3. (σ, w1, w2, v) or 4. (z1, z2); else a commitment or σ
    changes the challenge and 6. fails, and a response fails the first equation it is in."""
    ell, eps = params.ell, params.eps
    root = gmpy2.isqrt(N0)
    return {
        **{name: unit(Nh, 2, 6) for name in ("P", "Q", "A", "B", "T")},
        "sigma": signed(ell, 3, 6, scale=N0 * Nh),
        "w1": signed(ell + eps + 1, 3, 6, scale=Nh), "w2": signed(ell + eps + 1, 3, 7, scale=Nh),
        "v": signed(ell + eps + 1, 3, 8, scale=N0 * Nh),
        "z1": signed(ell + eps, 4, 6, scale=root), "z2": signed(ell + eps, 4, 7, scale=root),
    }


def setup_checks(proof, setup):
    """The verifier's own modulus N̂ changed: not odd with s, t units, check 1; the proof's
    P, Q, A, B, T not units under it, 2.; else another challenge, 6."""

    def modulus(Nh):
        if Nh % 2 == 0 or not all(in_unit_group(int(v), int(Nh)) for v in (setup.s, setup.t)):
            return 1
        return 6 if all(in_unit_group(int(v), int(Nh)) for v in (proof.P, proof.Q, proof.A, proof.B, proof.T)) else 2

    return modulus


def test_proof_mutations_rejected(instance):
    sk, rp, params, proof = instance
    count = assert_rejected(mutations(proof, [sk.N, rp.params.N, sk.N * rp.params.N, gmpy2.isqrt(sk.N)]),
                            lambda bad: fac.verify(CTX, sk.public, bad, rp.params, params, setup_secret=rp),
                            proof_checks(sk.N, rp.params.N, params))
    assert count > 150


def test_public_input_mutations_rejected(instance, paillier_keys, ring_pedersen, paillier_bits):
    sk, rp, params, proof = instance
    # N0 of another size: check 1; else another challenge: 6.
    assert_rejected(mutations(sk.public, [sk.N]), lambda bad: fac.verify(CTX, bad, proof, rp.params, params),
                    {"N": lambda N: 6 if N > 0 and N.bit_length() == params.paillier_bits else 1})
    with rejected_by(6):
        fac.verify(CTX, paillier_keys[paillier_bits][1].public, proof, rp.params, params)
    # another verifier's setup, with or without that verifier's secret
    other = ring_pedersen[paillier_bits][0]
    check = setup_checks(proof, other.params)(other.params.N)
    with rejected_by(check):
        fac.verify(CTX, sk.public, proof, other.params, params)
    with rejected_by(check):
        fac.verify(CTX, sk.public, proof, other.params, params, setup_secret=other)
    N = rp.params.N
    assert_rejected(mutations(rp.params, [N]), lambda bad: fac.verify(CTX, sk.public, proof, bad, params),
                    {"N": setup_checks(proof, rp.params), "s": unit(N, 1, 6), "t": unit(N, 1, 6)})


def test_bound_to_context(instance):
    sk, rp, params, proof = instance
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
    ):
        with rejected_by(6):
            fac.verify(other, sk.public, proof, rp.params, params, setup_secret=rp)


def test_modulus_size_is_part_of_the_statement(paillier_keys, ring_pedersen, rng):
    sk = paillier_keys[2048][0]
    rp = ring_pedersen[3072][1]
    proof = fac.prove(CTX, sk.public, sk, rp.params, security_params(2048), rng)
    with rejected_by(1, match="bits"):
        fac.verify(CTX, sk.public, proof, rp.params, security_params(3072))


def test_bitforge_modulus_rejected(ring_pedersen, rng):
    """N0 = 16 ~16-bit primes × one large prime, 2048 bits. The honest prover refuses the
    'key'; the same algorithm without that refusal, run on every split of the factors into
    two parts (and on claimed factors that do not multiply to N0), is rejected."""
    params = security_params(2048)
    rp = ring_pedersen[2048][1]
    bf = bitforge_modulus(rng)
    pub = PaillierPublicKey(bf.N)
    small_product = mpz(prod(bf.small))
    assert small_product.bit_length() <= params.ell
    with pytest.raises(ParameterError, match="factor"):
        fac.prove(CTX, pub, PaillierSecretKey(small_product, bf.large), rp.params, params, rng)

    splits = []
    for k in range(0, len(bf.small) + 1, 2):
        p = mpz(prod(bf.small[:k]))  # k small primes on one side...
        q = bf.N // p  # ...the large prime and the rest on the other
        splits.append((p, q, 4))  # a factor beyond 2^ℓ·√N0: the range check
    root = gmpy2.isqrt(bf.N)
    # "balanced" factors that are not a factorization: in range, but the last equation fails
    splits.append((root, root, 8))
    splits.append((root, bf.N // root, 8))
    for p, q, check in splits:
        for ctx in (CTX, ProofContext(b"session-1", 1, b"rid-1", b"retry")):
            proof = fac._prove_with_factors(ctx, bf.N, p, q, rp.params, params, rng)
            with rejected_by(check):
                fac.verify(ctx, pub, proof, rp.params, params, setup_secret=rp)
            with rejected_by(check):
                fac.verify(ctx, pub, proof, rp.params, params)


def test_range_check_is_what_stops_small_factors(ring_pedersen, rng):
    """With the large factor committed as q, every equation holds but z2 is out of range:
    the range check alone carries the 'no small factor' guarantee."""
    params = security_params(2048)
    rp = ring_pedersen[2048][1]
    bf = bitforge_modulus(rng)
    p, q = mpz(prod(bf.small)), bf.large
    proof = fac._prove_with_factors(CTX, bf.N, p, q, rp.params, params, rng)
    with rejected_by(4, match="z2 outside"):
        fac.verify(CTX, PaillierPublicKey(bf.N), proof, rp.params, params, setup_secret=rp)


def test_prove_checks_its_witness(paillier_keys, ring_pedersen, rng):
    params = security_params(2048)
    a, b = paillier_keys[2048]
    rp = ring_pedersen[2048][1]
    with pytest.raises(ParameterError, match="not the key"):
        fac.prove(CTX, a.public, b, rp.params, params, rng)


def test_honest_proof_sizes(instance):
    sk, rp, params, proof = instance
    root = gmpy2.isqrt(sk.N)
    bound = root << (params.ell + params.eps)
    assert abs(proof.z1) <= bound and abs(proof.z2) <= bound
    # dataclass is frozen and the challenge is not part of the proof
    assert not any(f.name == "e" for f in dataclasses.fields(proof))
