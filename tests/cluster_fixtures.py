"""Helpers for tests that run a real cluster (LocalCluster: node processes, SoftHSM2, HTTPS).

Each test module that needs a cluster defines a module-scoped fixture with
:func:`cluster_fixture` and marks itself with ``pytestmark = cluster_marks("name")`` so that
pytest-xdist (``--dist loadgroup``) keeps the module on one worker and its one cluster is
shared by all its tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import pytest_asyncio

from appliance import payloads as P
from appliance.payloads import samples
from appliance.policy import Policy, PolicyUpdate
from appliance.testing import LocalCluster

TEST_ONLY_PRIMES = Path(__file__).parent / "data" / "test-only-primes.json"


def cluster_marks(group: str) -> list:
    return [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group(group), pytest.mark.hsm]


def cluster_fixture(**kwargs):
    """A module-scoped async fixture yielding a started LocalCluster (2048-bit Paillier,
    prime pools seeded from the test-only prime file)."""
    params = dict(nodes=3, threshold=2, paillier_bits=2048, prime_file=TEST_ONLY_PRIMES,
                  round_timeout=20.0, job_timeout=120.0)
    params.update(kwargs)

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def cluster():
        async with LocalCluster(**params) as c:
            yield c

    return cluster


def digest_of(text: str | bytes) -> bytes:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).digest()


def check_signature(public_key_hex: str, digest: bytes, sig: dict) -> None:
    """The signature verifies with libsecp256k1 (coincurve) and with OpenSSL (cryptography),
    is low-S, and its recovery id recovers the public key."""
    import coincurve
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    pk = bytes.fromhex(public_key_hex)
    der = bytes.fromhex(sig["der"])
    r, s = int(sig["r"], 16), int(sig["s"], 16)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    assert s <= n // 2, "not low-S"
    assert coincurve.PublicKey(pk).verify(der, digest, hasher=None), "libsecp256k1 rejects it"
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pk)
    key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # raises if invalid
    rec = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([sig["recovery_id"]])
    assert coincurve.PublicKey.from_signature_and_message(rec, digest, hasher=None).format() == pk


async def signed_policy_update(cluster: LocalCluster, signers: list[str], change) -> dict:
    """The cluster's current policy with ``change(mapping)`` applied and the version moved
    on, as a policy update signed by ``signers`` (its JSON, for ``update_policy``)."""
    cur = await cluster.client("admin").policy(refresh=True)
    old = Policy.from_mapping(cur["policy"])
    m = old.canonical()
    m["policy"]["version"] = old.version + 1
    change(m)
    upd = PolicyUpdate(Policy.from_mapping(m), old.hash)
    for who in signers:
        upd = upd.signed_by(who, cluster.user_keys[who])
    return upd.to_json()


def two_input_psbt(kc, dest: str) -> str:
    """A regtest PSBT spending two P2WPKH inputs of key context ``kc`` (m: 60,000 sat, m/0/5:
    45,000 sat): 80,000 sat to ``dest`` and 23,500 sat of change to m/1/0 (derivation given)."""
    child, ch = kc.derive("m/0/5"), kc.derive("m/1/0")
    return samples.sample_psbt(
        [(kc.public_key, 60_000), (child.public_key, 45_000)],
        [(dest, 80_000), (P.p2wpkh_address(ch.public_key, "regtest"), 23_500)],
        network="regtest", derivations=[None, (kc.fingerprint, "m/0/5")],
        output_derivations=[None, (ch.public_key, kc.fingerprint, "m/1/0")])
