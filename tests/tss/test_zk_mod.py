"""Π^mod: completeness, single-field soundness, binding to the context, and known attacks
(BitForge moduli, non-Blum primes, w = 0 / w = N / w not coprime / (w|N) = +1, N prime)."""

from __future__ import annotations

import dataclasses

import gmpy2
import pytest
from gmpy2 import mpz

from appliance.errors import ParameterError
from appliance.tss.paillier import PaillierPublicKey, PaillierSecretKey, in_unit_group
from appliance.tss.params import security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import mod
from tests.mutation import assert_rejected, bit, mutations, rejected_by, unit
from tests.zk_attacks import bitforge_modulus, cheat_mod_proof, jacobi_minus_one, prime_1_mod_4

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


@pytest.fixture(scope="module")
def proof_2048(paillier_keys):
    from appliance.tss.group import SeededRNG

    sk = paillier_keys[2048][0]
    return sk, mod.prove(CTX, sk.public, sk, security_params(2048), SeededRNG("mod-2048"))


def test_completeness(paillier_bits, paillier_keys, rng):
    sk = paillier_keys[paillier_bits][0]
    params = security_params(paillier_bits)
    proof = mod.prove(CTX, sk.public, sk, params, rng)
    mod.verify(CTX, sk.public, proof, params)
    assert len(proof.x) == len(proof.z) == params.m == 128
    N = sk.N
    assert gmpy2.jacobi(proof.w, N) == -1
    # x_i is ± the principal 4th root (a square modulo p and modulo q), below N/2
    for x in proof.x[:16]:
        assert 2 * x < N
        principal = x if gmpy2.legendre(x, sk.p) == 1 else N - x
        assert gmpy2.legendre(principal, sk.p) == 1 and gmpy2.legendre(principal, sk.q) == 1


def proof_checks(N):
    """The check of mod's docstring that rejects a change of each proof field (of one entry
    of a list): w not a unit with Jacobi symbol -1, check 2 (else the challenge changes and
    5. fails); x_i not a canonical root, a_i, b_i not bits, z_i not a unit, 3.; else x_i,
    a_i, b_i fail 5. and z_i fails 6."""
    canonical_root = lambda x: in_unit_group(int(x), int(N)) and 2 * x < N and gmpy2.jacobi(x, N) == 1  # noqa: E731
    return {
        "w": lambda w: 5 if in_unit_group(int(w), int(N)) and gmpy2.jacobi(w, N) == -1 else 2,
        "x": lambda x: 5 if canonical_root(x) else 3,
        "a": bit(3, 5), "b": bit(3, 5), "z": unit(N, 3, 6),
    }


def modulus_checks(proof, bits):
    """N changed: of another size, even, prime or a power, check 1; w no longer a unit with
    Jacobi symbol -1 under it, 2.; an x_i or z_i no longer a canonical unit, 3.; else 5."""

    def check(N):
        N = mpz(N)
        if N <= 0 or N.bit_length() != bits or N % 2 == 0 or gmpy2.is_prime(N) or gmpy2.is_power(N):
            return 1
        if not (in_unit_group(int(proof.w), int(N)) and gmpy2.jacobi(proof.w, N) == -1):
            return 2
        roots = all(in_unit_group(int(x), int(N)) and 2 * x < N and gmpy2.jacobi(x, N) == 1 for x in proof.x)
        return 5 if roots and all(in_unit_group(int(z), int(N)) for z in proof.z) else 3

    return {"N": check}


def test_proof_mutations_rejected(proof_2048):
    sk, proof = proof_2048
    params = security_params(2048)
    count = assert_rejected(mutations(proof, [sk.N]), lambda bad: mod.verify(CTX, sk.public, bad, params),
                            proof_checks(sk.N))
    assert count > 120
    # lists of the wrong length, a bool for a bit
    for field in ("x", "a", "b", "z"):
        v = getattr(proof, field)
        for bad_list in (v[:-1], v + (v[0],), list(v)[:-1]):
            with rejected_by(3):
                mod.verify(CTX, sk.public, dataclasses.replace(proof, **{field: bad_list}), params)
    bad_a = tuple(bool(v) for v in proof.a)
    with rejected_by(3):
        mod.verify(CTX, sk.public, dataclasses.replace(proof, a=bad_a), params)


def test_public_input_mutations_rejected(proof_2048, paillier_keys):
    sk, proof = proof_2048
    params = security_params(2048)
    assert_rejected(mutations(sk.public, [sk.N]), lambda bad: mod.verify(CTX, bad, proof, params),
                    modulus_checks(proof, 2048))
    with rejected_by(2):
        mod.verify(CTX, paillier_keys[2048][1].public, proof, params)
    with rejected_by(1):  # the modulus size is part of the statement
        mod.verify(CTX, sk.public, proof, security_params(3072))


def test_bound_to_context(proof_2048):
    sk, proof = proof_2048
    params = security_params(2048)
    mod.verify(CTX, sk.public, proof, params)
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
        ProofContext(b"session-1", 1, b"rid-1", b"extra"),
    ):
        with rejected_by(5):
            mod.verify(other, sk.public, proof, params)


def test_cheater_with_true_factors_passes(paillier_keys, rng):
    """The test-side cheating prover is competent: given a real Paillier-Blum modulus it
    produces accepted proofs, so its failures below are the verifier's doing."""
    sk = paillier_keys[2048][1]
    params = security_params(2048)
    w = jacobi_minus_one(rng, sk.N)
    proof = cheat_mod_proof(CTX, sk.N, [int(sk.p), int(sk.q)], w, params.m)
    mod.verify(CTX, sk.public, proof, params)


def test_bitforge_modulus_rejected(rng):
    """N = 16 small primes × one large prime (2048 bits): the cheater knows every factor and
    still cannot answer the challenges."""
    params = security_params(2048)
    bf = bitforge_modulus(rng)
    pub = PaillierPublicKey(bf.N)
    for _ in range(2):
        w = jacobi_minus_one(rng, bf.N)
        proof = cheat_mod_proof(CTX, bf.N, bf.primes, w, params.m)
        with rejected_by(5, match="x\\["):
            mod.verify(CTX, pub, proof, params)
    # the honest prover, handed a 'key' splitting N into two composite parts, refuses or fails
    fake = PaillierSecretKey(mpz(bf.N // bf.large), bf.large)
    with pytest.raises(ParameterError, match="Π\\^mod"):
        mod.prove(CTX, pub, fake, params, rng)


def test_non_blum_modulus_rejected(paillier_keys, rng):
    """p ≡ 1 (mod 4): square roots exist but 4th roots of the right kind do not, always."""
    params = security_params(2048)
    q = paillier_keys[2048][1].q
    p = prime_1_mod_4(rng, 1024)
    N = p * q
    assert N.bit_length() == 2048
    pub = PaillierPublicKey(N)
    fake = PaillierSecretKey(p, q)
    with pytest.raises(ParameterError, match="Blum"):
        mod.prove(CTX, pub, fake, params, rng)
    for _ in range(3):
        w = jacobi_minus_one(rng, N)
        proof = cheat_mod_proof(CTX, N, [int(p), int(q)], w, params.m)
        with rejected_by(3, match="x\\["):
            mod.verify(CTX, pub, proof, params)


def test_bad_w_rejected(paillier_keys, rng):
    sk = paillier_keys[2048][0]
    N, p, q = sk.N, int(sk.p), int(sk.q)
    params = security_params(2048)
    # w = 0 (or N ≡ 0): with b_i = 1 and x_i = 0 every x_i^4 = w^b y_i "holds" — the attack
    # that a missing w ∈ Z*_N check lets through
    honest = cheat_mod_proof(CTX, N, [p, q], 0, params.m)
    m = params.m
    zero_attack = mod.ModProof(w=0, x=(0,) * m, a=(0,) * m, b=(1,) * m, z=honest.z)
    with rejected_by(2, match="w"):
        mod.verify(CTX, sk.public, zero_attack, params)
    # w not in Z*_N: a best-effort proof for w = p (a factor), then other encodings of
    # non-units in place of w (the verifier stops at w before the challenge)
    proof = cheat_mod_proof(CTX, N, [p, q], p, params.m)
    for w in (p, q, 0, int(N), int(N) + 5, -1, 2 * int(N) + 1, q * 7):
        with rejected_by(2, match="w not in"):
            mod.verify(CTX, sk.public, dataclasses.replace(proof, w=w), params)
    # Jacobi +1: w a non-residue modulo both p and q; w a square; w = 1
    while True:
        nonres = 1 + rng.randbelow(int(N) - 1)
        if gmpy2.legendre(nonres, p) == -1 and gmpy2.legendre(nonres, q) == -1:
            break
    proof = cheat_mod_proof(CTX, N, [p, q], nonres, params.m)
    for w in (nonres, nonres * nonres % N, 1):
        assert gmpy2.jacobi(w, N) == 1
        with rejected_by(2, match="Jacobi"):
            mod.verify(CTX, sk.public, dataclasses.replace(proof, w=w), params)


def test_prime_even_and_power_moduli_rejected(paillier_keys, rng):
    params = security_params(2048)
    # a prime N ≡ 3 (mod 4) admits every root the proof asks for: only "N is not prime" stops it
    while True:
        P = gmpy2.next_prime(mpz(rng.randbelow(1 << 2048)) | (3 << 2046))
        if P % 4 == 3 and P.bit_length() == 2048:
            break
    w = jacobi_minus_one(rng, P)
    proof = cheat_mod_proof(CTX, P, [int(P)], w, params.m)
    with rejected_by(1, match="prime"):
        mod.verify(CTX, PaillierPublicKey(P), proof, params)
    # a perfect square of a Blum prime
    r = paillier_keys[2048][0].p
    with rejected_by(1, match="power"):
        mod.verify(CTX, PaillierPublicKey(r * r), proof, params)
    with rejected_by(1, match="even"):
        mod.verify(CTX, PaillierPublicKey(paillier_keys[2048][0].N + 1), proof, params)


def test_prove_refuses_foreign_key(paillier_keys, rng):
    a, b = paillier_keys[2048]
    with pytest.raises(ParameterError, match="not the key of N"):
        mod.prove(CTX, a.public, b, security_params(2048), rng)
