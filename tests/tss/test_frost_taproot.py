"""BIP340 verification against the BIP's test-vectors.csv (ours and libsecp256k1's), the BIP341
key-path tweak against the BIP's wallet vectors and python-bitcointx, and threshold BIP340
signatures (tweaked and untweaked) verified by libsecp256k1 (coincurve) and python-bitcointx."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import coincurve
import pytest
from bitcointx.core.key import XOnlyPubKey, tap_tweak_pubkey

from appliance.tss.frost import simulate, taproot
from appliance.tss.frost.groups import SECP256K1
from appliance.tss.group import SeededRNG

DATA = Path(__file__).resolve().parents[1] / "data" / "frost"
BIP340 = list(csv.DictReader((DATA / "bip340-test-vectors.csv").open()))
BIP341 = json.loads((DATA / "bip341-wallet-test-vectors.json").read_text())


def _coincurve_verify(pk: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        return coincurve.PublicKeyXOnly(pk).verify(sig, msg)
    except ValueError:
        return False


@pytest.mark.parametrize("row", BIP340, ids=[r["index"] for r in BIP340])
def test_bip340_vectors(row):
    pk, msg, sig = (bytes.fromhex(row[k]) for k in ("public key", "message", "signature"))
    expected = row["verification result"] == "TRUE"
    assert taproot.verify(pk, msg, sig) is expected
    assert _coincurve_verify(pk, msg, sig) is expected


def test_bip341_tweak_vectors():
    cases = BIP341["scriptPubKey"]
    assert len(cases) == 7
    for case in cases:
        internal = bytes.fromhex(case["given"]["internalPubkey"])
        root_hex = case["intermediary"]["merkleRoot"]
        root = bytes.fromhex(root_hex) if root_hex else b""
        P = taproot.lift_x(internal)
        assert taproot.taptweak(P, root).to_bytes(32, "big").hex() == case["intermediary"]["tweak"]
        Qk = taproot.output_key(P, root)
        assert Qk.to_bytes()[1:].hex() == case["intermediary"]["tweakedPubkey"]
        ref, _parity = tap_tweak_pubkey(XOnlyPubKey(internal), merkle_root=root)
        assert bytes(ref) == Qk.to_bytes()[1:]
    # the share-side tweak of a 1-share "group" is BIP341's tweaked private key
    for inp in BIP341["keyPathSpending"][0]["inputSpending"]:
        sk = bytes.fromhex(inp["given"]["internalPrivkey"])
        root = bytes.fromhex(inp["given"]["merkleRoot"]) if inp["given"]["merkleRoot"] else b""
        X = SECP256K1.base_mul(sk)
        sk_t, _, Qk = taproot.tweak_key(sk, X, X, root)
        assert SECP256K1.base_mul(sk_t) == Qk
        # BIP341 signs with the tweaked key negated if Q is odd; compare up to that sign
        want = bytes.fromhex(inp["intermediary"]["tweakedPrivkey"])
        assert want in (sk_t, SECP256K1.neg(sk_t))


@pytest.fixture(scope="module")
def bip340_shares():
    return simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(b"frost-taproot"))


@pytest.mark.parametrize("root", [None, b"", bytes(range(32))], ids=["untweaked", "keypath", "scripttree"])
def test_threshold_bip340_verified_by_libsecp256k1_and_bitcointx(bip340_shares, root):
    msg = bytes(range(32))
    P = bip340_shares[0].PK()
    key = P.to_bytes()[1:] if root is None else taproot.output_key(P, root).to_bytes()[1:]
    if root is not None:
        ref, _ = tap_tweak_pubkey(XOnlyPubKey(P.to_bytes()[1:]), merkle_root=root)
        assert bytes(ref) == key
    for signers in ([0, 1], [1, 2], [0, 2]):
        sig = simulate.sign([bip340_shares[i] for i in signers], msg, merkle_root=root)
        assert len(sig) == 64
        assert coincurve.PublicKeyXOnly(key).verify(sig, msg)
        assert XOnlyPubKey(key).verify_schnorr(msg, sig)
        assert taproot.verify(key, msg, sig)
        assert not coincurve.PublicKeyXOnly(key).verify(sig, msg[::-1])


def test_odd_group_key_is_negated_for_signing():
    """Keys with odd Y (about half of all) sign for lift_x(x(P)), as BIP340 requires."""
    seen = set()
    for seed in range(8):
        shares = simulate.keygen(2, 2, "schnorr-bip340", rng=SeededRNG(seed))
        P = shares[0].PK()
        seen.add(P.y_is_odd)
        sig = simulate.sign(shares, b"odd or even", merkle_root=None)
        assert coincurve.PublicKeyXOnly(P.to_bytes()[1:]).verify(sig, b"odd or even")
        if seen == {True, False}:
            break
    assert seen == {True, False}
