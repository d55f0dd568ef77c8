"""Key import: a known private key split by a dealer signs under the original public key."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.config import ClusterConfig, PeerInfo
from appliance.key_import import (Bundle, ImportBundleError, build_bundle, parse_bundle, parse_frost_secret,
                                  request_params, share_context)
from appliance.tss import simulate
from appliance.tss.frost import dealer as frost_dealer
from appliance.tss.frost import simulate as frost_simulate
from appliance.tss.dealer import ImportError_, accept_share, split_key
from appliance.tss.ecdsa import verify_with_openssl
from appliance.tss.group import G, Q, SeededRNG
from hsm.transport import open_with_shared_secret, parse_envelope
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


# -- bundles (appliance/key_import.py): v1 ECDSA, v2 with a FROST scheme ----------------------

def _cluster() -> tuple[ClusterConfig, dict[str, ec.EllipticCurvePrivateKey]]:
    """Three nodes whose transport keys are software P-256 keys (to open the envelopes here)."""
    keys = {f"node-{i}": ec.generate_private_key(ec.SECP256R1()) for i in (1, 2, 3)}
    return ClusterConfig(id="c", nodes=tuple(
        PeerInfo(id=nid, index=i, url="", tls_cert="", identity_key=b"",
                 transport_key=k.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
        for i, (nid, k) in enumerate(keys.items()))), keys


def _open(bundle: Bundle, cfg: ClusterConfig, keys: dict, nid: str) -> bytes:
    eph, _, _ = parse_envelope(bundle.envelopes[nid])
    z = keys[nid].exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), eph))
    return open_with_shared_secret(z, cfg.node(nid).transport_key, bundle.envelopes[nid],
                                   share_context(bundle.import_id, nid))


SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")  # RFC 8032 TEST 1


def _bad_bundle(obj: dict, cfg: ClusterConfig) -> str:
    with pytest.raises(ImportBundleError) as ei:
        parse_bundle(obj, cfg)
    assert ei.value.code == "bad_import_bundle"
    return str(ei.value)


def test_frost_bundles_are_v2_with_their_scheme_and_open_to_working_shares():
    cfg, keys = _cluster()
    b = build_bundle(parse_frost_secret("ed25519", SEED.hex()), cfg, 2, scheme="ed25519")
    j = b.to_json()
    assert (j["version"], j["scheme"], j["chain_code"], j["public_key"]) == (
        2, "ed25519", "", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert parse_bundle(json.loads(json.dumps(j)), cfg) == b
    assert request_params(b)["scheme"] == "ed25519" and request_params(b)["public_key"] == j["public_key"]
    shares = [frost_dealer.accept_share("ed25519", b.import_id, cfg.node(n).index, b.parties, 2, b.commitments,
                                        _open(b, cfg, keys, n)) for n in b.node_ids]
    sig = frost_simulate.sign(shares[:2], b"imported")
    Ed25519PublicKey.from_public_bytes(b.shown_public_key).verify(sig, b"imported")
    tr = build_bundle(bytes.fromhex("b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef"), cfg, 2,
                      ["node-1", "node-2"], scheme="schnorr-bip340", chain_code=b"\x07" * 32)
    assert (tr.to_json()["version"], tr.scheme, tr.chain_code, len(tr.public_key)) == (2, "schnorr-bip340", b"\x07" * 32, 33)


def test_ecdsa_bundles_stay_v1_and_a_scheme_is_read_only_in_v2():
    cfg, _ = _cluster()
    ecdsa = build_bundle(12345, cfg, 2).to_json()
    assert ecdsa["version"] == 1 and "scheme" not in ecdsa and "scheme" not in request_params(parse_bundle(ecdsa, cfg))
    assert _bad_bundle({**ecdsa, "scheme": "ed25519"}, cfg) == \
        "a v1 bundle is an ecdsa-secp256k1 bundle (a scheme is named in v2)"
    ed = build_bundle(SEED, cfg, 2, scheme="ed25519").to_json()
    assert _bad_bundle({**ed, "scheme": "ecdsa-secp256k1"}, cfg) == \
        "a v2 bundle's scheme must be one of schnorr-bip340, ed25519"
    # an ed25519 bundle relabelled BIP340: its commitments are not secp256k1 points
    assert _bad_bundle({**ed, "scheme": "schnorr-bip340"}, cfg) == \
        "malformed bundle: EncodingError: point must be 33 bytes of compressed SEC1"
    assert _bad_bundle({**ed, "chain_code": "00" * 32}, cfg) == "an ed25519 bundle has no chain code"
    with pytest.raises(ImportBundleError) as ei:
        build_bundle(SEED, cfg, 2, scheme="ed25519", chain_code=bytes(32))
    assert str(ei.value) == "an ed25519 key has no chain code (no derivation)"
    with pytest.raises(ImportBundleError) as ei:
        parse_frost_secret("schnorr-bip340", "00" * 32)
    assert str(ei.value) == "the BIP340 secret key must be in [1, n-1]"
