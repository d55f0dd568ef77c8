"""Our non-hardened derivation equals an independent BIP32 implementation."""

from __future__ import annotations

import hashlib

import pytest
from bip32 import BIP32

from appliance.tss import simulate
from appliance.tss.bip32 import DerivationError, derive, parse_path
from appliance.tss.ecdsa import verify_with_libsecp256k1
from appliance.tss.group import G, SeededRNG, random_scalar


@pytest.mark.parametrize("path", ["m", "m/0", "m/0/1", "m/44/0/0/0/5", "m/2147483647/7"])
def test_matches_bip32_package(path):
    rng = SeededRNG(path)
    X = G * random_scalar(rng)
    chain = rng.token_bytes(32)
    ours = derive(X, chain, path)
    root = derive(X, chain, "m").xpub()
    ref = BIP32.from_xpub(root)
    assert ref.get_pubkey_from_path(path) == ours.public_key.to_bytes()
    assert ref.get_xpub_from_path(path) == ours.xpub()
    assert X + G * ours.tweak == ours.public_key


def test_hardened_and_malformed_paths_refused():
    for bad in ("m/0'", "m/1h", "0/1", "m/x", "m/2147483648", "m//1"):
        with pytest.raises(DerivationError):
            parse_path(bad)


def test_threshold_signature_on_derived_key(key_2of3):
    child = derive(key_2of3[0].public_key_point, key_2of3[0].chain_code, "m/0/1")
    d = hashlib.sha256(b"child").digest()
    sig = simulate.sign(key_2of3[1:], d, tweak=child.tweak, rng=SeededRNG("child"))
    assert verify_with_libsecp256k1(child.public_key.to_bytes(), d, sig)
