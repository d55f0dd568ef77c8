"""Schnorr keys end to end over HTTPS (issue 16, "In the appliance"), on one real 2-of-3
cluster (node processes, a SoftHSM2 token each): a ``schnorr-bip340`` and an ``ed25519`` key
made through the client (FROST DKG, shares sealed by each node's HSM, committed two-phase);
digests signed by each after approval and verified by libsecp256k1 (coincurve, BIP340) and by
``cryptography`` and PyNaCl (Ed25519); the BIP340 key is shown as the Taproot output key Q
(python-bitcointx computes Q's P2TR address from the internal key on its own); an Ed25519
``message`` signs its UTF-8 text; ECDSA-only payloads and not-yet-supported operations are
refused with their exact codes; the audit log has the key and signing entries; and a signer
whose signature share is wrong (node-3, test-only ``tamper = ["bad_partial"]``, frames validly
signed by it) is named by every honest party's check (``protocol_abort``, culprits node-3)."""

from __future__ import annotations

import json

import pytest
from bitcointx import ChainParams
from bitcointx.core.key import XOnlyPubKey
from bitcointx.wallet import P2TRCoinAddress
from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import VerifyKey

from api.client import ApplianceAPIError
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of
from tests.signing_flow import approve_if_needed, sign

pytestmark = cluster_marks("schnorr-http")

# node-3 sends a wrong FROST signature share whenever it signs (only the last test has it sign)
cluster = cluster_fixture(faults={2: {"tamper": ["bad_partial"]}})
HONEST = ["node-1", "node-2"]
STATE: dict = {}
CHAINS = {"mainnet": "bitcoin", "testnet": "bitcoin/testnet", "signet": "bitcoin/signet", "regtest": "bitcoin/regtest"}


async def _key(cluster, scheme: str) -> dict:
    if scheme not in STATE:
        STATE[scheme] = await cluster.client("admin").create_key(threshold=2, scheme=scheme)
    return STATE[scheme]


async def _sign(cluster, key: dict, digest: bytes, signers=HONEST, **kw) -> dict:
    return await sign(cluster.client("initiator"), cluster.client("approver"), key["key_id"], digest,
                      signers=signers, **kw)


async def test_schnorr_keys_are_made_and_shown(cluster):
    tr, ed = await _key(cluster, "schnorr-bip340"), await _key(cluster, "ed25519")
    for key, scheme in ((tr, "schnorr-bip340"), (ed, "ed25519")):
        assert key["scheme"] == scheme and len(bytes.fromhex(key["public_key"])) == 32
        assert key["paillier_bits"] == 0 and key["threshold"] == 2 and key["nodes"] == ["node-1", "node-2", "node-3"]
        for i in range(3):  # every node holds it, shown alike
            got = await cluster.client("auditor", node=i).get_key(key["key_id"])
            assert (got["scheme"], got["public_key"]) == (scheme, key["public_key"])
    listed = {k["key_id"]: k["scheme"] for k in await cluster.client("auditor").list_keys()}
    assert listed[tr["key_id"]] == "schnorr-bip340" and listed[ed["key_id"]] == "ed25519"
    # BIP340: public_key is Q = output_key(P, b""), never P; bitcointx tweaks P itself
    assert tr["internal_key"] != tr["public_key"]
    with ChainParams(CHAINS[tr["network"]]):
        assert str(P2TRCoinAddress.from_xonly_pubkey(XOnlyPubKey(bytes.fromhex(tr["internal_key"])))) == tr["p2tr"]
        assert str(P2TRCoinAddress.from_xonly_output_pubkey(XOnlyPubKey(bytes.fromhex(tr["public_key"])))) == tr["p2tr"]
    assert "addresses" not in ed and "p2tr" not in ed


async def test_digests_signed_and_verified_independently(cluster):
    tr, ed = await _key(cluster, "schnorr-bip340"), await _key(cluster, "ed25519")
    d = digest_of("schnorr over https")
    done = await _sign(cluster, tr, d)
    sig = bytes.fromhex(done["signature"]["sig"])
    assert set(done["signature"]) == {"sig"} and done["public_key"] == tr["public_key"]
    assert sorted(done["signers"]) == HONEST
    assert PublicKeyXOnly(bytes.fromhex(tr["public_key"])).verify(sig, d)  # libsecp256k1 BIP340
    done = await _sign(cluster, ed, d)
    sig, pk = bytes.fromhex(done["signature"]["sig"]), bytes.fromhex(ed["public_key"])
    Ed25519PublicKey.from_public_bytes(pk).verify(sig, d)  # OpenSSL (raises if invalid)
    assert VerifyKey(pk).verify(d, sig) == d  # libsodium
    # Ed25519 `message`: the UTF-8 text itself is signed
    text = "pay 1 SOL to alice ✓"
    req = await cluster.client("initiator").request_signature(ed["key_id"], payload=text, payload_type="message",
                                                              signers=HONEST)
    await approve_if_needed(cluster.client("approver"), req)
    done = await cluster.client("initiator").wait_signature(req["request_id"])
    sig = bytes.fromhex(done["signature"]["sig"])
    assert done["result"] == {"sig": sig.hex(), "signed": text.encode().hex()}
    assert VerifyKey(pk).verify(text.encode(), sig) == text.encode()


async def test_what_a_schnorr_key_cannot_do_is_refused_with_its_code(cluster):
    tr, ed = await _key(cluster, "schnorr-bip340"), await _key(cluster, "ed25519")
    ini = cluster.client("initiator")
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.request_signature(tr["key_id"], payload={"types": {"EIP712Domain": []}, "primaryType": "EIP712Domain",
                                                           "domain": {}, "message": {}}, payload_type="eip712")
    assert (ei.value.status, ei.value.code) == (409, "scheme_mismatch")
    assert ei.value.message == ("a schnorr-bip340 key cannot sign a eip712 payload (an ECDSA construct, or not "
                                "decoded for Schnorr keys yet)")
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.request_signature(ed["key_id"], payload="hello", payload_type="eip191")
    assert (ei.value.status, ei.value.code) == (409, "scheme_mismatch")
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.request_signature(tr["key_id"], digest_of("child"), "m/0/1")
    assert (ei.value.status, ei.value.code) == (409, "not_supported_for_scheme")
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("auditor").derive(ed["key_id"], "m/0")
    assert (ei.value.status, ei.value.code) == (409, "not_supported_for_scheme")
    assert ei.value.message == "BIP32 derivation is not supported for a ed25519 key yet"
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin").refresh(tr["key_id"])
    assert (ei.value.status, ei.value.code) == (409, "not_supported_for_scheme")
    assert ei.value.message == "refresh is not supported for a schnorr-bip340 key yet"


async def test_audit_has_the_keys_and_signatures(cluster):
    tr, ed = await _key(cluster, "schnorr-bip340"), await _key(cluster, "ed25519")
    await _sign(cluster, tr, digest_of("audited"))
    entries = [json.dumps(e) for e in await cluster.client("auditor").audit()]
    for key in (tr, ed):
        mine = [e for e in entries if key["key_id"] in e]
        for action in ('"keygen_request"', '"keygen_done"', '"keygen_commit"', '"sign_request"', '"signed"'):
            assert any(action in e for e in mine), (key["scheme"], action)


async def test_disable_enable_delete_a_frost_key(cluster):
    admin = cluster.client("admin")
    key = await admin.create_key(threshold=2, scheme="ed25519")
    await admin.disable_key(key["key_id"])
    with pytest.raises(ApplianceAPIError) as ei:
        await _sign(cluster, key, digest_of("disabled"))
    assert (ei.value.status, ei.value.code) == (409, "key_disabled")
    await admin.enable_key(key["key_id"])
    done = await _sign(cluster, key, digest_of("enabled"))
    assert VerifyKey(bytes.fromhex(key["public_key"])).verify(digest_of("enabled"), bytes.fromhex(done["signature"]["sig"]))
    await admin.delete_key(key["key_id"])
    for i in range(3):  # every holder destroyed its sealed FROST share
        v = await cluster.client("auditor", node=i).key_versions(key["key_id"])
        assert v["status"] == "deleted" and v["versions"][0]["destroyed"] is not None


async def test_a_bad_signature_share_names_its_signer(cluster):
    tr = await _key(cluster, "schnorr-bip340")
    with pytest.raises(ApplianceAPIError) as ei:
        await _sign(cluster, tr, digest_of("cheater"), signers=["node-1", "node-3"])
    assert ei.value.code == "protocol_abort" and ei.value.culprits == ["node-3"]
    assert "check 6: signature share does not verify" in ei.value.message
    q = await cluster.client("admin").quarantined()
    assert [e["node_id"] for e in q] == ["node-3"]
