"""Key import of FROST keys (issue 16, "key import"): a known BIP340 secret key or Ed25519 seed
split by the dealer (appliance/tss/frost/dealer.py) signs under the public key computed
independently from the secret (libsecp256k1 through coincurve for BIP340 and its Taproot
tweak, OpenSSL through ``cryptography`` for Ed25519), through signing and a refresh; a share
that does not fit the commitments, commitments of another scheme and a non-FROST scheme are
refused with their exact messages."""

from __future__ import annotations

import hashlib

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.tss.dealer import ImportError_
from appliance.tss.frost import dealer, simulate
from appliance.tss.frost.dkg import identifiers
from appliance.tss.frost.suites import suite_for
from appliance.tss.group import Q, SeededRNG

MSG = hashlib.sha256(b"frost import").digest()
PARTIES = [1, 2, 3]
# RFC 8032 §7.1 TEST 1 (seed, public key); BIP340 test-vectors.csv index 1 (secret key)
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
BIP340_SECRET = bytes.fromhex("b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef")


def _ed25519_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _taproot_output_key(secret: bytes) -> bytes:
    """BIP341's key-path-only output key of d·G, by libsecp256k1 (xonly tweak_add) and hashlib."""
    xp = coincurve.PrivateKey(secret).public_key_xonly
    tag = hashlib.sha256(b"TapTweak").digest()
    xp.tweak_add(hashlib.sha256(tag + tag + xp.format()).digest())  # in place
    return xp.format()


def _import(scheme: str, secret: bytes, seed: str):
    split = dealer.split_key(scheme, secret, 2, PARTIES, SeededRNG(seed))
    return split, [dealer.accept_share(scheme, split.import_id, j, PARTIES, 2, split.commitments, split.shares[j])
                   for j in PARTIES]


@pytest.mark.parametrize("seed", [RFC8032_SEED, hashlib.sha256(b"another seed").digest(), bytes(32), b"\xff" * 32])
def test_ed25519_seed_gives_the_public_key_of_cryptography(seed):
    d = dealer.secret_scalar("ed25519", seed)
    split, shares = _import("ed25519", seed, "ed-seed")
    assert shares[0].public_key == split.commitments[0] == _ed25519_public(seed)
    assert int.from_bytes(d, "little") < 2**252 + 27742317777372353535851937790883648493
    if seed == RFC8032_SEED:
        assert shares[0].public_key == RFC8032_PUBLIC


def test_imported_ed25519_key_signs_and_refreshes_under_the_seeds_public_key():
    _, shares = _import("ed25519", RFC8032_SEED, "ed-sign")
    pk = Ed25519PublicKey.from_public_bytes(_ed25519_public(RFC8032_SEED))
    for pair in ([shares[0], shares[1]], [shares[1], shares[2]], [shares[0], shares[2]]):
        pk.verify(simulate.sign(pair, MSG), MSG)  # raises if invalid
    new = simulate.refresh(shares, rng=SeededRNG("ed-refresh"))
    assert new[0].group_public_key == shares[0].group_public_key and new[0].secret_share != shares[0].secret_share
    pk.verify(simulate.sign(new[1:], MSG), MSG)


def test_imported_bip340_key_keeps_d_and_signs_for_its_taproot_output_key():
    split, shares = _import("schnorr-bip340", BIP340_SECRET, "tr-sign")
    # the stored group key is P = d·G as given (odd or even Y), the x-only key is BIP340's
    assert split.commitments[0] == coincurve.PrivateKey(BIP340_SECRET).public_key.format()
    assert shares[0].public_key == coincurve.PrivateKey(BIP340_SECRET).public_key_xonly.format()
    Q_ = _taproot_output_key(BIP340_SECRET)
    for pair in ([shares[0], shares[1]], [shares[1], shares[2]]):
        assert coincurve.PublicKeyXOnly(Q_).verify(simulate.sign(pair, MSG, merkle_root=b""), MSG)
    new = simulate.refresh(shares, rng=SeededRNG("tr-refresh"))
    assert coincurve.PublicKeyXOnly(Q_).verify(simulate.sign(new[:2], MSG, merkle_root=b""), MSG)


def test_an_odd_y_bip340_key_signs_too():
    d = next(k for k in (hashlib.sha256(bytes([i])).digest() for i in range(64))
             if coincurve.PrivateKey(k).public_key.format()[0] == 3)
    _, shares = _import("schnorr-bip340", d, "tr-odd")
    assert coincurve.PublicKeyXOnly(_taproot_output_key(d)).verify(simulate.sign(shares[1:], MSG, merkle_root=b""), MSG)


def test_identifiers_are_the_dkgs_of_the_import_id():
    """x_j = HX("id", import_id || j), as the DKG derives them from its session id, on every node."""
    split, shares = _import("schnorr-bip340", BIP340_SECRET, "ids")
    S = suite_for("schnorr-bip340")
    want = {j: S.G.serialize_scalar(x) for j, x in identifiers(S, split.import_id, PARTIES).items()}
    assert all(s.identifiers == want for s in shares) and sorted(want) == PARTIES
    assert len({s.public_fingerprint() for s in shares}) == 1


def _refused(*args) -> tuple[str, str]:
    with pytest.raises(ImportError_) as ei:
        dealer.accept_share(*args)
    return ei.value.code, str(ei.value)


def test_a_share_that_does_not_match_the_commitments_is_refused():
    split, _ = _import("ed25519", RFC8032_SEED, "bad")
    other = split.shares[3]
    assert _refused("ed25519", split.import_id, 2, PARTIES, 2, split.commitments, other) == (
        "bad_import", "the share does not match the dealer's commitments")
    assert _refused("ed25519", b"\x00" * 16, 2, PARTIES, 2, split.commitments, split.shares[2]) == (
        "bad_import", "the share does not match the dealer's commitments")
    assert _refused("ed25519", split.import_id, 2, PARTIES, 2, split.commitments, b"\xff" * 32) == (
        "bad_import", "the share is not a scalar: ed25519 scalar not below the group order")
    assert _refused("ed25519", split.import_id, 2, PARTIES, 2, split.commitments[:1], split.shares[2]) == (
        "bad_import", "the commitment vector must have exactly t entries")
    assert split.shares[2].hex() not in repr(split)


def test_commitments_of_another_scheme_and_a_non_frost_scheme_are_refused():
    ed, _ = _import("ed25519", RFC8032_SEED, "scheme-ed")
    tr, _ = _import("schnorr-bip340", BIP340_SECRET, "scheme-tr")
    assert _refused("schnorr-bip340", ed.import_id, 2, PARTIES, 2, ed.commitments, ed.shares[2]) == (
        "bad_import", "a commitment is not a schnorr-bip340 group element: point must be 33 bytes of compressed SEC1")
    assert _refused("ed25519", tr.import_id, 2, PARTIES, 2, tr.commitments, tr.shares[2]) == (
        "bad_import", "a commitment is not a ed25519 group element: ed25519 element must be 32 bytes")
    assert _refused("ecdsa-secp256k1", tr.import_id, 2, PARTIES, 2, tr.commitments, tr.shares[2]) == (
        "bad_import", "not a FROST import scheme: 'ecdsa-secp256k1' (one of schnorr-bip340, ed25519)")


def test_bip340_secret_outside_1_to_n_minus_1_is_refused():
    for bad in (bytes(32), Q.to_bytes(32, "big"), b"\xff" * 32):
        with pytest.raises(ImportError_) as ei:
            dealer.split_key("schnorr-bip340", bad, 2, PARTIES, SeededRNG("range"))
        assert str(ei.value) == "the BIP340 secret key must be in [1, n-1]"
    with pytest.raises(ImportError_) as ei:
        dealer.split_key("ed25519", RFC8032_SEED[:31], 2, PARTIES, SeededRNG("range"))
    assert str(ei.value) == "the secret must be 32 bytes"
