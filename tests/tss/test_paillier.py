"""Paillier, ring-Pedersen and prime generation."""

from __future__ import annotations

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import EncodingError, ParameterError
from appliance.tss.group import SeededRNG
from appliance.tss.paillier import pow_sec, pow_sec_signed, rp_commit_public
from appliance.tss.primes import is_blum_prime, is_safe_prime, random_blum_prime, random_safe_prime


@pytest.fixture(scope="module")
def sk(paillier_keys):
    return paillier_keys[2048][0]


@settings(max_examples=40, deadline=None)
@given(m=st.integers(min_value=-(1 << 2000), max_value=1 << 2000))
def test_round_trip_signed(sk, m):
    rng = SeededRNG(str(m))
    c = sk.encrypt(m, sk.public.random_rho(rng))
    assert sk.decrypt_signed(c) == m
    assert sk.decrypt(c) == m % sk.N
    # encryption with and without the factors agree
    rho = sk.public.random_rho(rng)
    assert sk.encrypt(m, rho) == sk.public.encrypt(m, rho)


@settings(max_examples=25, deadline=None)
@given(a=st.integers(-(1 << 300), 1 << 300), b=st.integers(-(1 << 300), 1 << 300),
       k=st.integers(-(1 << 256), 1 << 256))
def test_homomorphic_identities(sk, a, b, k):
    rng = SeededRNG(str(a ^ b))
    pk = sk.public
    ca, cb = sk.encrypt(a, pk.random_rho(rng)), sk.encrypt(b, pk.random_rho(rng))
    assert sk.decrypt_signed(pk.add(ca, cb)) == a + b
    assert sk.decrypt_signed(pk.mul(ca, k)) == a * k
    assert sk.decrypt_signed(pk.mul_secret(ca, k, 257)) == a * k


def test_recover_rho(sk):
    rng = SeededRNG("rho")
    rho = sk.public.random_rho(rng)
    c = sk.encrypt(-77, rho)
    assert sk.recover_rho(c, -77) == rho


def test_invalid_ciphertexts_rejected(sk):
    pk = sk.public
    for bad in (0, pk.N2, pk.N2 + 1, -1, sk.p, sk.q * 5, sk.p * sk.q):
        with pytest.raises(EncodingError):
            pk.check_ciphertext(bad)
        with pytest.raises(EncodingError):
            sk.decrypt(bad)


def test_secret_key_repr_hides_factors(sk):
    assert str(int(sk.p)) not in repr(sk) and "bits" in repr(sk)


def test_pow_sec_helpers():
    m = gmpy2.mpz(1000003) * 1000033
    for e in (0, 1, 5, 12345):
        assert pow_sec(7, e, m) == pow(7, e, int(m))
    for e in (-5, -1, 0, 1, 99):
        assert pow_sec_signed(7, e, m, 8) == pow(7, e, int(m))
    with pytest.raises(ParameterError):
        pow_sec_signed(7, 1 << 9, m, 8)


def test_ring_pedersen(ring_pedersen):
    rp = ring_pedersen[2048][0]
    P = rp.params
    P.check()
    for x, y in ((5, 7), (-5, 1 << 300), (0, -3)):
        c = P.commit(x, y, 64, 320)
        assert c == P.commit_public(x, y) == rp_commit_public(P, x, y, rp)
    assert P.s == pow(int(P.t), int(rp.lam), int(P.N))
    assert is_safe_prime(int(rp.p)) and is_safe_prime(int(rp.q))


def test_prime_generation_shapes():
    rng = SeededRNG("primes")
    p = random_safe_prime(256, rng)
    assert p.bit_length() == 256 and p >> 254 == 3 and is_safe_prime(p)
    b = random_blum_prime(256, rng)
    assert b.bit_length() == 256 and b % 4 == 3 and is_blum_prime(b)
    with pytest.raises(ParameterError):
        random_safe_prime(32, rng)


def test_paillier_keys_are_blum(paillier_keys):
    for sk in paillier_keys[2048] + paillier_keys[3072]:
        assert is_blum_prime(int(sk.p)) and is_blum_prime(int(sk.q))
        assert sk.N.bit_length() in (2048, 3072)
