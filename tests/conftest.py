"""Shared fixtures. Primes come from the test-only prime file, reached only from here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.tss.group import SeededRNG
from appliance.tss.primes import FreshPrimes, PrimePool

TEST_ONLY_PRIMES = Path(__file__).parent / "data" / "test-only-primes.json"


def test_prime_pool(seed: str = "pool") -> PrimePool:
    """A fresh pool over the test-only primes (each pool hands each prime out once)."""
    return PrimePool.from_file(TEST_ONLY_PRIMES, fallback=FreshPrimes(SeededRNG(seed)))


@pytest.fixture
def rng():
    return SeededRNG(os.environ.get("PYTEST_CURRENT_TEST", "rng"))


@pytest.fixture(scope="session")
def session_primes() -> PrimePool:
    return test_prime_pool("session")


@pytest.fixture(scope="session", params=[2048, 3072], ids=["N2048", "N3072"])
def paillier_bits(request) -> int:
    return request.param


@pytest.fixture(scope="session")
def paillier_keys(session_primes):
    """Two Paillier secret keys per modulus size (prover's and another party's)."""
    from appliance.tss.paillier import generate_paillier

    return {bits: [generate_paillier(bits, session_primes) for _ in range(2)] for bits in (2048, 3072)}


@pytest.fixture(scope="session")
def ring_pedersen(session_primes):
    """Two ring-Pedersen secrets per modulus size."""
    from appliance.tss.paillier import generate_ring_pedersen

    rng = SeededRNG("rp")
    return {bits: [generate_ring_pedersen(bits, session_primes, rng) for _ in range(2)] for bits in (2048, 3072)}
