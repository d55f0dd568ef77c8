"""Write the session keys the tests share to tests/data/test-only-keys (TEST ONLY: made from
the test-only primes with a seeded generator; their secrets are in this repository).

    python -m tests.make_test_keys

Run it after a change to the key share's encoding (a stale file fails every test that uses
the key, in :meth:`KeyShare.from_bytes`)."""

from __future__ import annotations

from tests.conftest import TEST_KEYS, build_test_key

SESSION_KEYS = ((3, 2, 2048), (5, 3, 2048), (3, 3, 2048))  # (n, t, Paillier bits)


def main() -> None:
    TEST_KEYS.mkdir(parents=True, exist_ok=True)
    for n, t, bits in SESSION_KEYS:
        path = TEST_KEYS / f"key-{n}-{t}-{bits}.cbor"
        path.write_bytes(build_test_key(n, t, bits))
        print(path, path.stat().st_size)


if __name__ == "__main__":
    main()
