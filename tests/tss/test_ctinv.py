"""The constant-time inverses of appliance/tss/ctinv.py agree with gmpy2's extended GCD."""

from __future__ import annotations

import gmpy2
import pytest
from gmpy2 import mpz

from appliance.errors import ParameterError
from appliance.tss.ctinv import crt_inverses, inv_by_swap, inv_mod_prime, lift_inverse, n_inverse_mod_phi
from appliance.tss.group import SeededRNG
from appliance.tss.primes import random_blum_prime


@pytest.mark.parametrize("bits", [64, 512])
def test_inverses_match_the_extended_gcd(bits):
    rng = SeededRNG(f"ctinv-{bits}")
    for _ in range(10):
        p, q = mpz(random_blum_prime(bits, rng)), mpz(random_blum_prime(bits, rng))
        if p == q:
            continue
        N, phi = p * q, (p - 1) * (q - 1)
        x = mpz(1 + rng.randbelow(int(p) - 1))
        assert inv_mod_prime(x, p) == gmpy2.invert(x, p)
        u, v = crt_inverses(p, q)
        assert (u, v) == (gmpy2.invert(q, p), gmpy2.invert(p, q))
        assert lift_inverse(q, u, p) == gmpy2.invert(q, p * p)
        if gmpy2.gcd(N, phi) == 1:
            assert n_inverse_mod_phi(p, q, u) == gmpy2.invert(N, phi)
            assert inv_by_swap(N, phi, gmpy2.invert(phi, N)) == gmpy2.invert(N, phi)


def test_no_inverse_is_an_error_not_a_wrong_value():
    # 5 divides 11 - 1, so gcd(55, φ(55) = 40) = 5
    with pytest.raises(ParameterError, match="gcd"):
        n_inverse_mod_phi(5, 11, gmpy2.invert(11, 5))
    with pytest.raises(ParameterError, match="distinct primes"):
        crt_inverses(7, 7)
    with pytest.raises(ParameterError, match="odd prime"):
        inv_mod_prime(2, 3)
    assert inv_mod_prime(14, 7) == 0
