"""Π^dec: completeness, single-field soundness, binding to the context, ranges.

As for Π^aff-g*, most tests run with a small m (``with_m``); one proof per modulus size runs
with the real m at 2048 bits. Public-input and context mutations rely on the challenge
changing, so they use m = 32."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.errors import ParameterError
from appliance.tss.group import G, Q, SeededRNG, random_scalar
from appliance.tss.paillier import in_unit_group
from appliance.tss.params import M_REPETITIONS, MAX_PARTIES_LOG2, security_params
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import dec
from tests.mutation import assert_rejected, mutations, point, rejected_by, same_mod_q, signed, unit

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


def with_m(bits, m):
    return dataclasses.replace(security_params(bits), m=m)


def make_instance(rng, sk, n=3, x=None, y=None, Gamma=None, y_claimed=None):
    """K under the prover's own key, D = enc0(y, ρ) K^-x, X = g^x, S = Γ^y (or Γ^y_claimed)."""
    params = security_params(sk.public.bits)
    y_bits, _ = dec.ranges(params, n)
    x = random_scalar(rng) if x is None else x
    y = rng.randbelow(1 << (y_bits + 1)) - (1 << y_bits) if y is None else y
    Gamma = G * random_scalar(rng) if Gamma is None else Gamma
    K = sk.encrypt(rng.randbelow(int(sk.N)), sk.public.random_rho(rng))
    rho = sk.public.random_rho(rng)
    D = sk.encrypt(y, rho) * sk.public.mul(K, -x) % sk.public.N2
    y_claimed = y if y_claimed is None else y_claimed
    pub = dec.DecPublic(sk.public, K, G * (x % Q), D, Gamma * (y_claimed % Q), Gamma, n)
    return pub, dec.DecWitness(x, y_claimed, rho)


@pytest.fixture(scope="module")
def instance(paillier_keys):
    rng = SeededRNG("dec instance")
    sk = paillier_keys[2048][0]
    params = with_m(2048, 32)
    pub, wit = make_instance(rng, sk)
    return pub, wit, dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk), params, sk


def test_ranges():
    for bits in (2048, 3072):
        params = security_params(bits)
        for n in (1, 2, 3, 4, 5, 100, 1 << MAX_PARTIES_LOG2):
            y_bits, w_bits = dec.ranges(params, n)
            log_n = (n - 1).bit_length()  # ⌈log2 n⌉
            assert y_bits == params.ell_prime + params.eps + 1 + log_n
            # hiding: at least 2^-128 after m repetitions; soundness: |y'| < N0/2
            assert w_bits - y_bits >= 128 + params.m.bit_length()
            assert w_bits + 4 <= bits
        for n in (0, (1 << MAX_PARTIES_LOG2) + 1):
            with pytest.raises(ParameterError):
                dec.ranges(params, n)


def test_completeness_full_m(paillier_bits, paillier_keys, rng):
    sk = paillier_keys[paillier_bits][0]
    # the real m = 128 at 2048 bits; at 3072 bits m = 16 keeps the suite fast (same code)
    params = security_params(2048) if paillier_bits == 2048 else with_m(3072, 16)
    assert paillier_bits != 2048 or params.m == M_REPETITIONS
    pub, wit = make_instance(rng, sk)
    proof = dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk)
    assert len(proof.A) == params.m
    dec.verify(CTX, pub, proof, params)


def test_completeness_edge_witnesses(paillier_bits, paillier_keys, rng):
    sk = paillier_keys[paillier_bits][0]
    params = with_m(paillier_bits, 2)
    ell = params.ell
    for n in (2, 3, 1 << MAX_PARTIES_LOG2):
        y_max = 1 << dec.ranges(params, n)[0]
        for x, y, Gamma in (
            (1, 1, G),
            (1 << ell, y_max, None),
            (-(1 << ell), -y_max, None),
            (Q - 1, -1, G),
        ):
            pub, wit = make_instance(rng, sk, n, x, y, Gamma)
            dec.verify(CTX, pub, dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk), params)
    pub, wit = make_instance(rng, sk)
    dec.verify(CTX, pub, dec.prove(CTX, pub, wit, params, rng), params)  # without the factors


def test_witness_from_decryption(paillier_keys, rng):
    """As in identification: y and ρ recovered from K^x · D with the prover's key."""
    sk = paillier_keys[2048][0]
    params = with_m(2048, 4)
    x, y = random_scalar(rng), -12345
    K = sk.encrypt(rng.randbelow(int(sk.N)), sk.public.random_rho(rng))
    D = sk.encrypt(y, sk.public.random_rho(rng)) * sk.public.mul(K, -x) % sk.public.N2
    full = sk.public.mul(K, x) * D % sk.public.N2
    y_dec = int(sk.decrypt_signed(full))
    assert y_dec == y
    wit = dec.DecWitness(x, y_dec, sk.recover_rho(full, y_dec))
    pub = dec.DecPublic(sk.public, K, G * x, D, G * (y % Q), G, 3)
    dec.verify(CTX, pub, dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk), params)


def proof_checks(pub, proof, params):
    """The check of dec's docstring that rejects a change of one entry of each proof field:
    out of its range, check 1 (2. for z, w); a commitment changes the challenge bits, which
    fails check 3 for some repetition (all of 3. runs first; with m = 16 the bits stay the
    same with probability 2^-16); a response fails the first equation it is in, and one
    changed by a multiple of q (invisible in g^z_j, Γ^w_j) the Paillier one, 5."""
    _, w_bits = dec.ranges(params, pub.n_parties)
    ell, eps = params.ell, params.eps
    return {
        "A": unit(pub.N0.N2, 1, 3), "B": point(1, 3), "C": point(1, 3),
        "z": signed(ell + eps, 2, same_mod_q(proof.z, 5, 3)),
        "w": signed(w_bits, 2, same_mod_q(proof.w, 5, 4)),
        "nu": unit(pub.N0.N, 1, 5),
    }


def public_checks(pub, proof):
    """Out of its range, check 1; any other change of the statement alters the challenge: 3.
    Another N0 must keep K, D, A_j (mod N0²) and ν_j units, and not be smaller (check 1)."""

    def key(k):
        units = (all(in_unit_group(int(v), int(k.N2)) for v in (pub.K, pub.D, *proof.A))
                 and all(in_unit_group(int(v), int(k.N)) for v in proof.nu))
        return 3 if units and k.bits >= pub.N0.bits else 1

    return {
        "N0": key, "K": unit(pub.N0.N2, 1, 3), "D": unit(pub.N0.N2, 1, 3),
        "X": point(1, 3), "S": point(1, 3), "Gamma": point(1, 3),
        "n_parties": lambda n: 3 if 1 <= n <= 1 << MAX_PARTIES_LOG2 else 1,
    }


def test_proof_mutations_rejected(paillier_keys, rng):
    sk = paillier_keys[2048][0]
    params = with_m(2048, 16)
    pub, wit = make_instance(rng, sk)
    proof = dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk)
    count = assert_rejected(mutations(proof, [sk.N, sk.public.N2]), lambda bad: dec.verify(CTX, pub, bad, params),
                            proof_checks(pub, proof, params))
    assert count > 100
    for bad in (
        dataclasses.replace(proof, nu=proof.nu[:-1]),
        dataclasses.replace(proof, B=proof.B + proof.B[:1]),
        object(),
    ):
        with rejected_by(1):
            dec.verify(CTX, pub, bad, params)
    with rejected_by(1):
        dec.verify(CTX, pub, proof, with_m(2048, 3))


def test_public_input_mutations_rejected(instance):
    pub, _, proof, params, sk = instance
    dec.verify(CTX, pub, proof, params)
    count = assert_rejected(mutations(pub, [sk.N, sk.public.N2]), lambda bad: dec.verify(CTX, bad, proof, params), public_checks(pub, proof))
    assert count > 40
    # the number of parties is bound even where ⌈log2 n⌉ (and so every range) stays the same
    with rejected_by(3):
        dec.verify(CTX, dataclasses.replace(pub, n_parties=4), proof, params)
    # a modulus below the parameters' size is refused
    with rejected_by(1):
        dec.verify(CTX, pub, proof, with_m(3072, params.m))


def test_bound_to_context(instance):
    pub, _, proof, params, _ = instance
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
        CTX.with_extra(b"round-5"),
    ):
        with rejected_by(3):
            dec.verify(other, pub, proof, params)


def test_witness_out_of_range(paillier_keys, rng):
    sk = paillier_keys[2048][0]
    params = with_m(2048, 16)
    ell, eps = params.ell, params.eps
    y_bits, w_bits = dec.ranges(params, 3)
    cheat = dataclasses.replace(params, ell=ell + eps + 3)
    # x beyond what z_j can hide
    pub, wit = make_instance(rng, sk, 3, x=1 << (ell + eps + 2))
    with pytest.raises(ParameterError, match="witness x outside"):
        dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk)
    with rejected_by(2):
        dec.verify(CTX, pub, dec.prove(CTX, pub, wit, cheat, rng, paillier_sk=sk), params)
    # y beyond the bumped range (and beyond what w_j can hide)
    pub, wit = make_instance(rng, sk, 3, y=1 << (w_bits + 1))
    with pytest.raises(ParameterError, match="witness y outside"):
        dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk)


def test_decryption_plus_n0_forgery(paillier_keys, rng, monkeypatch):
    """The prover claims y* = y + N0 (the same ciphertext, another δ mod q).

    Refused by the prover, rejected by the verifier; with PAPER.md's masks (ε_d = ε, so
    w_j ranges beyond N0) the same forgery would verify: the reason for ε_d."""
    sk = paillier_keys[2048][0]
    params = with_m(2048, 16)
    y = 777
    y_star = y + int(sk.N)
    assert y_star % Q != y % Q
    pub, wit = make_instance(rng, sk, 3, y=y, y_claimed=y_star)
    with pytest.raises(ParameterError, match="witness y outside"):
        dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk)

    real_ranges = dec.ranges

    def paper_ranges(params, n):
        y_bits, _ = real_ranges(params, n)
        return y_bits, y_bits + params.eps

    forger_bits = paper_ranges(params, 3)[1]
    monkeypatch.setattr(dec, "ranges", lambda params, n: (forger_bits, forger_bits))
    forged = dec.prove(CTX, pub, wit, params, rng, paillier_sk=sk)
    monkeypatch.setattr(dec, "ranges", paper_ranges)
    dec.verify(CTX, pub, forged, params)  # accepted under PAPER.md's ranges
    monkeypatch.setattr(dec, "ranges", real_ranges)
    with rejected_by(2, match=r"w\[\d+\] outside"):
        dec.verify(CTX, pub, forged, params)


def test_wrong_witness_rejected(paillier_keys, rng):
    sk = paillier_keys[2048][0]
    params = with_m(2048, 8)
    pub, wit = make_instance(rng, sk)
    # each wrong witness value fails the first equation it is in
    for bad, check in (
        (dataclasses.replace(wit, y=wit.y + 1), 4),
        (dataclasses.replace(wit, x=wit.x + 1), 3),
        (dataclasses.replace(wit, rho=wit.rho + 1), 5),
    ):
        with rejected_by(check):
            dec.verify(CTX, pub, dec.prove(CTX, pub, bad, params, rng, paillier_sk=sk), params)
    with pytest.raises(ValueError):
        dec.prove(CTX, pub, wit, params, rng, paillier_sk=paillier_keys[2048][1])
