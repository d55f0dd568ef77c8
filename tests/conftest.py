"""Shared fixtures. Primes come from the test-only prime file, reached only from here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from appliance.payloads.eth_typed import load_encoder
from appliance.tss.group import SeededRNG
from appliance.tss.primes import FreshPrimes, PrimePool
from tests.schedule import costliest_files_first, load_file_seconds

# Tests import eth_account themselves (independent verifiers). Loaded first through our module,
# py_ecc has run without raising the recursion limit, so a Node started later in the same
# worker passes its start-up check (appliance.bounded.check_recursion_limit).
load_encoder()

TEST_ONLY_PRIMES = Path(__file__).parent / "data" / "test-only-primes.json"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """The costliest test files first, so that xdist's workers (``--dist loadfile``) do not end
    on one long file alone (tests/schedule.py)."""
    costliest_files_first(items, load_file_seconds())


def prime_pool_from_test_file(seed: str = "pool") -> PrimePool:
    """A fresh pool over the test-only primes (each pool hands each prime out once), in an
    order that depends on ``seed`` so that different pools rarely hand out the same primes."""
    return PrimePool.from_file(TEST_ONLY_PRIMES, fallback=FreshPrimes(SeededRNG(seed)),
                               shuffle_seed=seed.encode())


@pytest.fixture
def rng():
    return SeededRNG(os.environ.get("PYTEST_CURRENT_TEST", "rng"))


@pytest.fixture(scope="session")
def session_primes() -> PrimePool:
    return prime_pool_from_test_file("session")


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


def _cached(tmp_path_factory, name: str, build):
    """Build once per test run, shared by every xdist worker (a file under the run's temp root)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / f"{name}.bin"
    with FileLock(str(path) + ".lock"):
        if path.exists():
            return path.read_bytes()
        data = build()
        path.write_bytes(data)
        return data


TEST_KEYS = Path(__file__).parent / "data" / "test-only-keys"


def build_test_key(n: int, t: int, bits: int) -> bytes:
    """The session key ``t``-of-``n``: a DKG and aux-info run in memory over the test-only
    primes, seeded (so the same bytes every time), as CBOR of the parties' shares."""
    import cbor2

    from appliance.tss import simulate

    shares = simulate.keygen(n, t, paillier_bits=bits, rng=SeededRNG(f"key-{n}-{t}-{bits}"),
                             primes=prime_pool_from_test_file(f"key-{n}-{t}-{bits}"))
    return cbor2.dumps([s.to_bytes() for s in shares])


def _key_fixture(tmp_path_factory, n: int, t: int, bits: int):
    """The shares of a session key: read from tests/data/test-only-keys (made by
    ``python -m tests.make_test_keys``: :func:`build_test_key`'s bytes, so a run need not
    spend ~20 s of CPU on the same keygen), or built once per run if the file is absent.
    Every share is parsed and checked (:meth:`KeyShare.from_bytes`), so a stale file fails."""
    import cbor2

    from appliance.tss.keyshare import KeyShare

    name = f"key-{n}-{t}-{bits}"
    stored = TEST_KEYS / f"{name}.cbor"
    data = stored.read_bytes() if stored.exists() else _cached(
        tmp_path_factory, name, lambda: build_test_key(n, t, bits))
    return [KeyShare.from_bytes(b) for b in cbor2.loads(data)]


@pytest.fixture(scope="session")
def key_2of3(tmp_path_factory):
    """A 2-of-3 key (2048-bit Paillier) with aux info, shared by the whole run."""
    return _key_fixture(tmp_path_factory, 3, 2, 2048)


@pytest.fixture(scope="session")
def key_3of5(tmp_path_factory):
    return _key_fixture(tmp_path_factory, 5, 3, 2048)


@pytest.fixture(scope="session")
def key_3of3(tmp_path_factory):
    return _key_fixture(tmp_path_factory, 3, 3, 2048)


SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture(scope="session")
def softhsm_installed() -> None:
    """SoftHSM2 is installed (``make system-deps`` installs it): missing fails, never skips."""
    if not (os.path.exists(SOFTHSM_LIB) and shutil.which("softhsm2-util")):
        pytest.fail(f"SoftHSM2 is not installed ({SOFTHSM_LIB}, softhsm2-util): run `make system-deps`")
