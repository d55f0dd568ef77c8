"""Key import: a known private key split by a dealer signs under the original public key."""

from __future__ import annotations

import hashlib

import pytest

from appliance.tss import simulate
from appliance.tss.dealer import ImportError_, accept_share, split_key
from appliance.tss.ecdsa import verify_with_openssl
from appliance.tss.group import G, Q, SeededRNG
from tests.conftest import prime_pool_from_test_file


def test_imported_key_signs_under_original_public_key():
    sk = 0xC0FFEE1234567890ABCDEF % Q
    shares = simulate.import_key(sk, 3, 2, paillier_bits=2048, rng=SeededRNG("import"),
                                 primes=prime_pool_from_test_file("import"))
    assert shares[0].public_key == (G * sk).to_bytes()
    d = hashlib.sha256(b"imported").digest()
    sig = simulate.sign(shares[1:], d, rng=SeededRNG("imp-sign"))
    assert verify_with_openssl((G * sk).to_bytes(), d, sig)


def test_share_not_matching_commitments_is_refused():
    b = split_key(12345, 2, [0, 1, 2], SeededRNG("dealer"))
    accept_share(b.import_id, 1, [0, 1, 2], 2, b.commitments, b.chain_code, b.shares[1])
    with pytest.raises(ImportError_, match="commitments"):
        accept_share(b.import_id, 1, [0, 1, 2], 2, b.commitments, b.chain_code, (b.shares[1] + 1) % Q)
    with pytest.raises(ImportError_, match="exactly t"):
        accept_share(b.import_id, 1, [0, 1, 2], 2, b.commitments[:1], b.chain_code, b.shares[1])
    assert str(b.shares[1]) not in repr(b)
