"""Schnorr keys end to end over HTTPS (issue 16, "In the appliance"), on one real 2-of-3
cluster (node processes, a SoftHSM2 token each): a ``schnorr-bip340`` and an ``ed25519`` key
made through the client (FROST DKG, shares sealed by each node's HSM, committed two-phase);
digests signed by each after approval and verified by libsecp256k1 (coincurve, BIP340) and by
``cryptography`` and PyNaCl (Ed25519); the BIP340 key is shown as the Taproot output key Q
(python-bitcointx computes Q's P2TR address from the internal key on its own); an Ed25519
``message`` signs its UTF-8 text; ECDSA-only payloads and not-yet-supported operations are
refused with their exact codes; refresh and reshare (to a newcomer, away from a leaver) keep
the public key and destroy the old epoch's sealed shares; a BIP340 key's BIP32 child is derived
(python-bitcointx agrees), addressed and signed for; ``/v1/verify`` takes both schemes' ``{sig}``;
a coordinator changing the message (node-1, test-only ``coordinator_faults``) is refused by the
honest FROST signer; with ``[frost] pool = 4`` signatures are made in one online round over
pooled nonces, and a signer killed between spending its pooled pair and sending its share
(node-2, test-only crash point) never uses that pair again; the audit log has the key and
signing entries; and a signer
whose signature share is wrong (node-3, test-only ``tamper = ["bad_partial"]``, frames validly
signed by it) is named by every honest party's check (``protocol_abort``, culprits node-3).

Transactions (issue 16's acceptance; the cluster's policy allows paying BTC_DEST and SOL_DEST
only): a Taproot key-path spend (and a BIP32 child's) signed through the API and checked by
libsecp256k1, our BIP340 verifier and python-bitcointx; a mixed ECDSA/BIP340 PSBT completed by
its second request; a Solana transfer verified by solders and OpenSSL; an SPL transfer off the
allow-list refused."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import sqlite3
import time

import pytest
from bitcointx import ChainParams
from bitcointx.core import CTransaction
from bitcointx.core.key import XOnlyPubKey
from bitcointx.core.psbt import PartiallySignedTransaction
from bitcointx.core.script import CScript, SignatureHashSchnorr
from bitcointx.core.scripteval import SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS, VerifyScript
from bitcointx.wallet import CCoinExtPubKey
from bitcointx.wallet import P2TRCoinAddress
import coincurve
from coincurve import PublicKeyXOnly
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.signing import VerifyKey
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from api.client import ApplianceAPIError
from appliance.config import ClusterConfig, load_toml
from appliance.cli import main as cli_main
from appliance.key_import import build_bundle, parse_bundle, request_params, share_context
from appliance.payloads import samples
from appliance.payloads.solana import TOKEN_PROGRAM
from appliance.tss.frost import taproot
from hsm.transport import encrypt_to
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of
from tests.lifecycle_helpers import secret_epochs
from tests.signing_flow import approve_if_needed, sign

pytestmark = cluster_marks("schnorr-http")

BTC_DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # BIP173 regtest example
SOL_DEST = Pubkey.from_string("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM")
MINT = Pubkey.from_string("EPjFWrd5AufqSNqeM2qN1xzybapC8G4wEGGkZwyTDt1v")  # USDC's mint
# node-1 may act as a malicious coordinator (test-only, by request nonce); node-3 sends a wrong
# FROST signature share whenever it signs (only the last tests have it sign); transactions may
# pay BTC_DEST and SOL_DEST only (digests and texts have no destination); every node keeps 4
# pooled FROST nonce pairs per key for each coordinator ([frost] pool)
cluster = cluster_fixture(faults={0: {"coordinator_faults": True}, 2: {"tamper": ["bad_partial"]}},
                          policy={"signing": {"transactions": {
                              "network": "regtest", "allowed_destinations": [BTC_DEST, str(SOL_DEST)]}}},
                          node_extra={i: {"frost": {"pool": 4}} for i in range(3)})
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
    assert ei.value.message == "a schnorr-bip340 key cannot sign a eip712 payload (an Ethereum ECDSA construct)"
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.request_signature(ed["key_id"], payload="hello", payload_type="eip191")
    assert (ei.value.status, ei.value.code) == (409, "scheme_mismatch")
    # a transaction of the other scheme's chain: the decoder's own refusal
    sol = base64.b64encode(bytes(Message.new_with_blockhash(
        [transfer(TransferParams(from_pubkey=SOL_DEST, to_pubkey=SOL_DEST, lamports=1))], SOL_DEST,
        Hash.default()))).decode()
    psbt = samples.sample_psbt([(bytes.fromhex(tr["internal_key"]), 50_000, "p2tr-bip340")], [(BTC_DEST, 40_000)])
    for key, payload, payload_type, message in (
            (tr, sol, "sol_tx", "a sol_tx is signed by an ed25519 key, not a schnorr-bip340 key"),
            (ed, psbt, "psbt", "a PSBT is signed by a secp256k1 key, not an ed25519 key")):
        with pytest.raises(ApplianceAPIError) as ei:
            await ini.request_signature(key["key_id"], payload=payload, payload_type=payload_type)
        assert (ei.value.status, ei.value.code, ei.value.message) == (409, "scheme_mismatch", message)
    # ed25519 has no standard non-hardened derivation: derive, address and a child's signature
    for call in (cluster.client("auditor").derive(ed["key_id"], "m/0"),
                 cluster.client("auditor").address(ed["key_id"], "sol", "m/0"),
                 ini.request_signature(ed["key_id"], digest_of("child"), "m/0/1")):
        with pytest.raises(ApplianceAPIError) as ei:
            await call
        assert (ei.value.status, ei.value.code) == (409, "not_supported_for_scheme")
        assert ei.value.message == ("ed25519 keys have no standard non-hardened derivation (SLIP-0010 is "
                                    "hardened-only); create another key instead")
    # an ed25519 key's Solana account address is the key, base58 (as solders spells it)
    sol_addr = await cluster.client("auditor").address(ed["key_id"], "sol")
    assert sol_addr["address"] == str(Pubkey.from_bytes(bytes.fromhex(ed["public_key"])))
    assert (sol_addr["kind"], sol_addr["path"], sol_addr["public_key"]) == ("sol", "m", ed["public_key"])
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("auditor").address(ed["key_id"], "eth")
    assert (ei.value.status, ei.value.code, ei.value.message) == (400, "bad_kind", "kind must be sol for an ed25519 key")
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("auditor").address(tr["key_id"], "p2wpkh")
    assert (ei.value.status, ei.value.code, ei.value.message) == (400, "bad_kind",
                                                                  "kind must be p2tr for a schnorr-bip340 key")
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("auditor").derive(tr["key_id"], "m/0'")
    assert (ei.value.status, ei.value.code) == (400, "bad_derivation_path")


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


async def _holders_agree(cluster, key: dict, epoch: int, nodes: list[str]) -> None:
    """Every node in ``nodes`` shows the key at ``epoch`` with the unchanged public key and
    keeps sealed shares of that epoch only; any other node keeps none and does not show it."""
    for i in range(3):
        if f"node-{i + 1}" in nodes:
            view = await cluster.client("auditor", node=i).get_key(key["key_id"])
            assert (view["public_key"], view["epoch"], view["nodes"]) == (key["public_key"], epoch, nodes)
            assert secret_epochs(cluster, i, key["key_id"]) == {epoch}
        else:  # left the committee once every new member confirmed: its share is destroyed
            assert secret_epochs(cluster, i, key["key_id"]) == set()
            with pytest.raises(ApplianceAPIError) as ei:
                await cluster.client("auditor", node=i).get_key(key["key_id"])
            assert ei.value.status == 404


async def test_refresh_keeps_the_key_and_destroys_the_old_shares(cluster):
    """FROST zero-sharing refresh through the nodes (two-phase commit of epoch 1, epoch 0's
    sealed shares destroyed everywhere); the key signs as before."""
    tr = await _key(cluster, "schnorr-bip340")
    view = (await cluster.client("auditor").get_key(tr["key_id"]))
    out = await cluster.client("admin").refresh(tr["key_id"])
    assert out["status"] == "done" and out["result"]["finalized"] is True, out
    assert out["result"]["public_key"] == tr["public_key"] and out["result"]["epoch"] == view["epoch"] + 1
    await _holders_agree(cluster, tr, view["epoch"] + 1, ["node-1", "node-2", "node-3"])
    d = digest_of("after refresh")
    done = await _sign(cluster, tr, d)
    assert PublicKeyXOnly(bytes.fromhex(tr["public_key"])).verify(bytes.fromhex(done["signature"]["sig"]), d)


async def test_reshare_to_a_newcomer_and_away_from_a_leaver(cluster):
    """A BIP340 key of node-1 and node-2 (2-of-2) reshared to 2-of-3: node-3, a newcomer, checks
    the key's public state with the holders, gets a share and the chain code (its xpub equals
    the others'); an Ed25519 key reshared from 2-of-3 to 2-of-2 without node-3, whose share is
    destroyed. Both sign afterwards with the same public key."""
    admin = cluster.client("admin")
    tr = await admin.create_key(threshold=2, nodes=HONEST, scheme="schnorr-bip340")
    out = await admin.reshare(tr["key_id"], 2, ["node-1", "node-2", "node-3"])
    assert out["status"] == "done" and out["result"]["public_key"] == tr["public_key"], out
    await _holders_agree(cluster, tr, 1, ["node-1", "node-2", "node-3"])
    xpubs = {(await cluster.client("auditor", node=i).derive(tr["key_id"], "m/5"))["xpub"] for i in range(3)}
    assert len(xpubs) == 1
    d = digest_of("after reshare")
    done = await _sign(cluster, tr, d, signers=["node-2", "node-1"])
    assert PublicKeyXOnly(bytes.fromhex(tr["public_key"])).verify(bytes.fromhex(done["signature"]["sig"]), d)

    ed = await admin.create_key(threshold=2, scheme="ed25519")
    out = await admin.reshare(ed["key_id"], 2, HONEST)
    assert out["status"] == "done" and out["result"]["nodes"] == HONEST, out
    await _holders_agree(cluster, ed, 1, HONEST)
    done = await _sign(cluster, ed, d)
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(ed["public_key"])).verify(bytes.fromhex(done["signature"]["sig"]), d)


async def test_import_a_bip340_secret_and_an_ed25519_seed(cluster, tmp_path, capsys):
    """Keys split offline (``build_bundle``; the seed by ``appliance key import --scheme
    ed25519``): each node decrypts its share in its HSM, checks it in the scheme's group, seals
    it. The keys sign under the public keys computed from the secrets by libsecp256k1 /
    OpenSSL, not by us."""
    cfg = ClusterConfig.from_mapping(load_toml(cluster.data_dirs[0] / "cluster.toml"))
    admin = cluster.client("admin", node=1)
    d = hashlib.sha256(b"issue 16: a Taproot wallet moving in").digest()
    xp = coincurve.PrivateKey(d).public_key_xonly
    tag = hashlib.sha256(b"TapTweak").digest()
    internal = xp.format().hex()
    xp.tweak_add(hashlib.sha256(tag + tag + xp.format()).digest())  # BIP341 output key, in place
    res = await admin.import_key(build_bundle(d, cfg, 2, scheme="schnorr-bip340").to_json())
    assert (res["public_key"], res["epoch"]) == (xp.format().hex(), 0) and "refresh" in res["recommendation"]
    view = await cluster.client("auditor", node=2).get_key(res["key_id"])
    assert (view["scheme"], view["internal_key"], view["paillier_bits"]) == ("schnorr-bip340", internal, 0)
    digest = digest_of("imported taproot key")
    done = await _sign(cluster, {"key_id": res["key_id"]}, digest)
    assert PublicKeyXOnly(xp.format()).verify(bytes.fromhex(done["signature"]["sig"]), digest)

    seed = hashlib.sha256(b"issue 16: a Solana wallet's seed").digest()
    pk = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    (tmp_path / "seed.hex").write_text(seed.hex() + "\n")
    umask = os.umask(0o077)
    os.umask(umask)
    capsys.readouterr()
    try:  # the offline command, in this process (its umask put back after)
        code = await asyncio.to_thread(cli_main, ["key", "import", "--scheme", "ed25519", "--private-key",
                                                  str(tmp_path / "seed.hex"), "--cluster",
                                                  str(cluster.data_dirs[0] / "cluster.toml"), "--threshold", "2",
                                                  "--out", str(tmp_path / "bundle.json")])
    finally:
        os.umask(umask)
    out = json.loads(capsys.readouterr().out)
    pk_hex = pk.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    assert code == 0 and (out["scheme"], out["public_key"], out["shown_public_key"]) == ("ed25519", pk_hex, pk_hex)
    bundle = parse_bundle(json.loads((tmp_path / "bundle.json").read_text()), cfg)
    assert seed.hex() not in (tmp_path / "bundle.json").read_text()
    res = await admin.import_key(bundle.to_json(), refresh=True)  # the FROST refresh, right after
    assert (res["public_key"], res["refreshed"], res["epoch"]) == (pk_hex, True, 1)
    done = await _sign(cluster, {"key_id": res["key_id"]}, digest)
    pk.verify(bytes.fromhex(done["signature"]["sig"]), digest)  # OpenSSL; raises if invalid

    # a share that does not fit the commitments: node-2 refuses the job, naming the problem
    other = build_bundle(hashlib.sha256(b"issue 16: a bad dealer's seed").digest(), cfg, 2, scheme="ed25519")
    wrong = hashlib.sha512(b"not the share").digest()[:31] + b"\x00"  # a canonical scalar (< L)
    bad = dataclasses.replace(other, envelopes={**other.envelopes, "node-2": encrypt_to(
        cfg.node("node-2").transport_key, wrong, context=share_context(other.import_id, "node-2"))}).to_json()
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin", node=0).import_key(bad)
    assert (ei.value.code, ei.value.message) == (
        "import_share_rejected", "node-2 refused the job: node-2: the share does not match the dealer's commitments")
    assert other.public_key.hex() not in {k["public_key"] for k in await cluster.client("auditor", node=2).list_keys()}
    # the signed request must name the bundle's scheme
    unnamed = build_bundle(hashlib.sha256(b"issue 16: scheme left out").digest(), cfg, 2, scheme="schnorr-bip340")
    params = request_params(unnamed)
    assert params.pop("scheme") == "schnorr-bip340"  # what an ECDSA key's request would look like
    with pytest.raises(ApplianceAPIError) as ei:
        await admin._signed_post("/v1/keys/import", {"bundle": unnamed.to_json()}, action="import", params=params)
    assert (ei.value.status, ei.value.code) == (400, "request_mismatch")


async def test_bip32_child_of_a_bip340_key_derived_addressed_and_signed(cluster):
    """derive: the child C of the internal key P by BIP32 CKDpub (python-bitcointx derives the
    same C from the parent's xpub), shown as its Taproot output key Q_C; address p2tr is Q_C's
    (python-bitcointx computes it from C); a sign request with that derivation_path signs
    for Q_C (libsecp256k1 verifies)."""
    tr = await _key(cluster, "schnorr-bip340")
    aud = cluster.client("auditor")
    root, child = await aud.derive(tr["key_id"], "m"), await aud.derive(tr["key_id"], "m/0/7")
    assert (root["public_key"], root["internal_key"]) == (tr["public_key"], tr["internal_key"])
    assert child["path"] == "m/0/7" and child["depth"] == 2 and child["scheme"] == "schnorr-bip340"
    assert CCoinExtPubKey(root["xpub"]).derive_path("m/0/7").pub[1:].hex() == child["internal_key"]
    assert CCoinExtPubKey(child["xpub"]).pub[1:].hex() == child["internal_key"]
    with ChainParams(CHAINS[child["network"]]):
        want = str(P2TRCoinAddress.from_xonly_pubkey(XOnlyPubKey(bytes.fromhex(child["internal_key"]))))
    addr = await aud.address(tr["key_id"], "p2tr", "m/0/7")
    assert addr["address"] == child["p2tr"] == want and addr["public_key"] == child["public_key"]
    assert (await aud.address(tr["key_id"], "p2tr"))["address"] == tr["p2tr"]
    d = digest_of("child spend")
    done = await _sign(cluster, tr, d, derivation_path="m/0/7")
    assert done["public_key"] == child["public_key"] != tr["public_key"]
    assert PublicKeyXOnly(bytes.fromhex(child["public_key"])).verify(bytes.fromhex(done["signature"]["sig"]), d)


async def test_verify_schnorr_signatures(cluster):
    """POST /v1/verify with {sig}: BIP340 (by key_id, or public_key + scheme) and Ed25519
    (by key_id, or public_key + scheme, over a message's bytes), valid and not."""
    aud = cluster.client("auditor")
    tr, ed = await _key(cluster, "schnorr-bip340"), await _key(cluster, "ed25519")
    d = digest_of("verify me")
    sig_tr = (await _sign(cluster, tr, d))["signature"]
    sig_ed = (await _sign(cluster, ed, d))["signature"]
    bad_tr = {"sig": sig_tr["sig"][:-2] + ("00" if sig_tr["sig"][-2:] != "00" else "01")}
    for key, scheme, sig in ((tr, "schnorr-bip340", sig_tr), (ed, "ed25519", sig_ed)):
        assert await aud.verify_result(d, sig, key_id=key["key_id"]) == {"valid": True, "scheme": scheme,
                                                                          "digest": d.hex()}
        assert await aud.verify(d, sig, public_key=key["public_key"], scheme=scheme)
        assert not await aud.verify(digest_of("another"), sig, key_id=key["key_id"])
    assert not await aud.verify(d, bad_tr, key_id=tr["key_id"])
    assert not await aud.verify(d, sig_ed, public_key=tr["public_key"], scheme="schnorr-bip340")
    # an Ed25519 `message` is verified over its bytes (the message request signed the text)
    text = b"ed25519 message"
    req = await cluster.client("initiator").request_signature(ed["key_id"], payload=text.decode(),
                                                              payload_type="message", signers=HONEST)
    await approve_if_needed(cluster.client("approver"), req)
    sig = (await cluster.client("initiator").wait_signature(req["request_id"]))["signature"]
    assert await aud.verify(None, sig, key_id=ed["key_id"], message=text)
    with pytest.raises(ApplianceAPIError) as ei:  # both schemes have 32-byte keys: never guessed
        await aud.verify(d, sig_tr, public_key=tr["public_key"])
    assert (ei.value.status, ei.value.code) == (400, "bad_scheme")
    with pytest.raises(ApplianceAPIError) as ei:
        await aud.verify(d, sig_tr, key_id=tr["key_id"], scheme="ed25519")
    assert (ei.value.status, ei.value.code) == (409, "scheme_mismatch")
    assert ei.value.message == "the key is a schnorr-bip340 key, not ed25519"


async def _sign_payload(cluster, key: dict, payload: str, payload_type: str, **kw) -> tuple[dict, dict]:
    """Request, what the approver is shown (GET /v1/sign-requests/{id}), approve, the result."""
    ini, app = cluster.client("initiator"), cluster.client("approver")
    req = await ini.request_signature(key["key_id"], payload=payload, payload_type=payload_type,
                                      signers=HONEST, **kw)
    assert req["status"] == "pending"
    shown = await app.get_sign_request(req["request_id"])
    await app.approve(req["request_id"])
    return shown, await ini.wait_signature(req["request_id"], timeout=120)


def _check_spend(tx_hex: str, psbt_b64: str, taproot_inputs: list[int]) -> CTransaction:
    """The finalized transaction spends every input of the PSBT: each P2TR key-path witness is
    a BIP340 signature, checked by libsecp256k1 (coincurve) and by our own BIP340 verifier over
    the BIP341 sighash python-bitcointx computes, under the output key in the spent script; and
    python-bitcointx's script interpreter accepts every input (it checks P2WPKH fully; it does
    not evaluate witness v1 programs, hence the checks above)."""
    tx = CTransaction.deserialize(bytes.fromhex(tx_hex))
    psbt = PartiallySignedTransaction.from_base64(psbt_b64)
    assert tx.GetTxid() == psbt.unsigned_tx.GetTxid()
    spent = [inp.witness_utxo or inp.utxo.vout[txin.prevout.n] for txin, inp in zip(tx.vin, psbt.inputs)]
    for i in taproot_inputs:
        stack = tx.wit.vtxinwit[i].scriptWitness.stack
        spk = bytes(spent[i].scriptPubKey)
        assert len(stack) == 1 and len(stack[0]) == 64 and spk[:2] == b"\x51\x20"
        sighash = bytes(SignatureHashSchnorr(tx, i, spent))
        assert PublicKeyXOnly(spk[2:]).verify(bytes(stack[0]), sighash)  # libsecp256k1
        assert taproot.verify(spk[2:], sighash, bytes(stack[0]))  # ours, a second implementation
        assert not PublicKeyXOnly(spk[2:]).verify(bytes(stack[0]), bytes([sighash[0] ^ 1]) + sighash[1:])
    for i, out in enumerate(spent):
        VerifyScript(tx.vin[i].scriptSig, CScript(out.scriptPubKey), tx, i, amount=out.nValue,
                     witness=tx.wit.vtxinwit[i].scriptWitness, flags={SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS})
    return tx


async def test_taproot_key_path_spend_signed_and_verified_independently(cluster):
    """A PSBT spending the BIP340 key's P2TR output (output_key(P, b"") = the key's
    public_key), approved after the approver saw it decoded, signed by FROST for the input's
    BIP341 sighash, finalized by the node; the spend verifies in libsecp256k1, our BIP340
    verifier and python-bitcointx's interpreter."""
    tr = await _key(cluster, "schnorr-bip340")
    psbt = samples.sample_psbt([(bytes.fromhex(tr["internal_key"]), 100_000, "p2tr-bip340")], [(BTC_DEST, 90_000)],
                               seed=b"taproot spend")
    shown, done = await _sign_payload(cluster, tr, psbt, "psbt")
    dec = shown["decoded"]
    assert dec["facts"]["transfers"] == [{"asset": "BTC", "amount": "90000", "destination": BTC_DEST,
                                          "kind": "transfer"}]
    assert (dec["summary"]["key_scheme"], dec["summary"]["fee"], dec["summary"]["signing_inputs"]) == (
        "schnorr-bip340", 10_000, [0])
    assert [(i["key_scheme"], i["ours"], i["merkle_root"]) for i in dec["summary"]["inputs"]] == [
        ("schnorr-bip340", True, "")]
    assert dec["items"][0]["output_key"] == tr["public_key"] == done["public_key"]
    result = done["result"]
    assert result["complete"] is True and set(result) >= {"psbt", "tx_hex"}
    tx = _check_spend(result["tx_hex"], psbt, [0])
    assert bytes(tx.wit.vtxinwit[0].scriptWitness.stack[0]).hex() == done["signature"]["sig"]
    entries = await cluster.client("auditor").audit()
    assert any(e["action"] == "payload_decoded" and e["subject"] == done["request_id"] and e["reason"] ==
               f"psbt; bitcoin regtest; transfer 90000 BTC to {BTC_DEST}; fee 10000 BTC; 1 signature(s)"
               for e in entries)
    # a BIP32 child C's output (the request's derivation_path): signed for output_key(C, b"")
    child = await cluster.client("auditor").derive(tr["key_id"], "m/0/7")
    psbt = samples.sample_psbt([(bytes.fromhex(child["internal_key"]), 30_000, "p2tr-bip340")], [(BTC_DEST, 25_000)],
                               seed=b"child spend")
    shown, done = await _sign_payload(cluster, tr, psbt, "psbt", derivation_path="m/0/7")
    assert [(i["ours"], i["path"]) for i in shown["decoded"]["summary"]["inputs"]] == [(True, "m/0/7")]
    assert done["public_key"] == child["public_key"] and done["result"]["complete"] is True
    _check_spend(done["result"]["tx_hex"], psbt, [0])


async def test_mixed_psbt_ecdsa_and_bip340_inputs_completed_by_the_second_request(cluster):
    """One PSBT, a P2WPKH input of an ECDSA key and a P2TR input of the BIP340 key: one request
    per key; the first (ECDSA) returns it incomplete, the second (FROST) completes it (tx_hex),
    and both inputs verify (the P2WPKH one in python-bitcointx's interpreter)."""
    tr = await _key(cluster, "schnorr-bip340")
    ec = await cluster.client("admin").create_key(threshold=2)
    psbt = samples.sample_psbt([(bytes.fromhex(ec["public_key"]), 60_000, "p2wpkh"),
                                (bytes.fromhex(tr["internal_key"]), 70_000, "p2tr-bip340")],
                               [(BTC_DEST, 120_000)], seed=b"mixed")
    _, first = await _sign_payload(cluster, ec, psbt, "psbt")
    assert first["result"]["complete"] is False and "tx_hex" not in first["result"]
    shown, second = await _sign_payload(cluster, tr, first["result"]["psbt"], "psbt")
    assert [(i["key_scheme"], i["final"], i["signing"]) for i in shown["decoded"]["summary"]["inputs"]] == [
        ("ecdsa-secp256k1", False, False), ("schnorr-bip340", False, True)]
    assert second["result"]["complete"] is True
    _check_spend(second["result"]["tx_hex"], psbt, [1])


def _sol_key(ed: dict) -> Pubkey:
    return Pubkey(bytes.fromhex(ed["public_key"]))


async def test_solana_transfer_signed_and_verified_by_solders_and_openssl(cluster):
    """A System transfer paid by the ed25519 key, shown decoded to the approver, signed (the
    message bytes themselves) and returned as a wire transaction that solders verifies
    (ed25519-dalek) and OpenSSL (cryptography) checks."""
    ed = await _key(cluster, "ed25519")
    me = _sol_key(ed)
    msg = Message.new_with_blockhash([transfer(TransferParams(from_pubkey=me, to_pubkey=SOL_DEST, lamports=1_500_000))],
                                     me, Hash.new_unique())
    shown, done = await _sign_payload(cluster, ed, base64.b64encode(bytes(msg)).decode(), "sol_tx")
    summary = shown["decoded"]["summary"]
    assert (summary["fee_payer"], summary["signers"], summary["fee"]) == (str(me), [str(me)], 5000)
    assert summary["transfers"] == [{"asset": "SOL", "amount": "1500000", "destination": str(SOL_DEST),
                                     "kind": "transfer"}]
    result = done["result"]
    sig = bytes.fromhex(result["signature_hex"])
    assert sig.hex() == done["signature"]["sig"] and (result["signer"], result["complete"]) == (str(me), True)
    tx = Transaction.from_bytes(base64.b64decode(result["transaction"]))
    tx.verify()  # solders: every signature over the message (raises if one does not verify)
    assert tx.message == msg and str(tx.signatures[0]) == result["signature"]
    Ed25519PublicKey.from_public_bytes(bytes(me)).verify(sig, bytes(msg))  # OpenSSL
    entries = await cluster.client("auditor").audit()
    # the address by its ends: a whole base58 address reads as key material to the audit filter
    assert any(e["action"] == "payload_decoded" and e["subject"] == done["request_id"] and e["reason"] ==
               "sol_tx; solana; transfer 1500000 SOL to 9WzDXwBb..9zYtAWWM; fee 5000 SOL; 1 signature(s)"
               for e in entries)


async def test_spl_transfer_to_a_destination_off_the_allow_list_is_refused(cluster):
    ed = await _key(cluster, "ed25519")
    me, elsewhere = _sol_key(ed), Pubkey.new_unique()
    token = Instruction(Pubkey.from_string(TOKEN_PROGRAM), bytes([12]) + (2_500_000).to_bytes(8, "little") + bytes([6]),
                        [AccountMeta(Pubkey.new_unique(), False, True), AccountMeta(MINT, False, False),
                         AccountMeta(elsewhere, False, True), AccountMeta(me, True, False)])
    payload = base64.b64encode(bytes(Message.new_with_blockhash([token], me, Hash.new_unique()))).decode()
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("initiator").request_signature(ed["key_id"], payload=payload, payload_type="sol_tx")
    assert (ei.value.status, ei.value.code, ei.value.message) == (
        403, "destination_not_allowed", f"{elsewhere} is not on the allow-list")


async def test_coordinator_changing_the_message_is_refused_by_frost_signers(cluster):
    """node-1, as a lying coordinator (test-only ``coordinator_faults``), sends node-2 a FROST
    sign job whose message is not the one the signed request gives: node-2 decodes the request
    itself, refuses (digest_mismatch), audits node-1 as the job's sender, and signs nothing."""
    tr = await _key(cluster, "schnorr-bip340")
    ini, app = cluster.client("initiator", node=0), cluster.client("approver", node=0)
    before = len(await cluster.client("auditor", node=1).audit())
    req = await ini.request_signature(tr["key_id"], digest_of("changed by the coordinator"), signers=HONEST,
                                      nonce=f"testfault.substitute-digest.{time.time_ns()}")
    await approve_if_needed(app, req)
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.wait_signature(req["request_id"], timeout=60)
    assert (ei.value.status, ei.value.code) == (409, "digest_mismatch"), ei.value
    assert ei.value.message == ("node-2 refused the job: the coordinator's digests or tweaks are not the ones "
                                "this node computed from the request")
    entries = (await cluster.client("auditor", node=1).audit())[before:]
    refused = [e for e in entries if e["action"] == "sign_job_refused"]
    assert [(e["actor"], e["reason"], e["key"]) for e in refused] == [("node-1", "digest_mismatch", tr["key_id"])]
    assert not [e for e in entries if e["action"] == "join_sign"]


def _rows(cluster, i: int, sql: str, args=()) -> list[tuple]:
    con = sqlite3.connect(f"file:{cluster.data_dirs[i] / 'node.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _offered(cluster, i: int, key_id: str, party: int) -> dict[bytes, str]:
    """Node ``i``'s view, as a coordinator, of ``party``'s pooled commitments for it."""
    return {bytes(n): st for n, st in _rows(cluster, i, "SELECT nonce_id, state FROM frost_commitments "
                                            "WHERE key_id = ? AND party = ?", (key_id, party))}


def _own(cluster, i: int, key_id: str) -> dict[bytes, tuple]:
    return {bytes(n): (st, d) for n, st, d in _rows(cluster, i, "SELECT nonce_id, state, hsm_key_destroyed "
                                                    "FROM frost_nonces WHERE key_id = ?", (key_id,))}


def _log_since(cluster, i: int, mark: int) -> str:
    with open(cluster.data_dirs[i] / "node.log", "rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace")


def _pool_ready(cluster, key_id: str, other: int) -> bool:
    """node-1 can coordinate {node-1, other} in one round: a pair of its own and one of other's."""
    own = _rows(cluster, 0, "SELECT count(*) FROM frost_nonces WHERE key_id = ? AND holder = 0 AND "
                "state = 'available' AND picked = 0", (key_id,))[0][0]
    return own >= 1 and "available" in _offered(cluster, 0, key_id, other).values()


async def _until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_kill_9_between_spending_a_pooled_nonce_and_sending_never_reuses_it(cluster):
    """FROST signs in ONE online round over pooled commitments; node-2 dies (test-only crash
    point, a power cut) after marking its pooled nonce pair spent durably and destroying its HSM
    key, before its share leaves; after its restart that pair is never offered or used again,
    and node-1 and node-2 keep signing from the pool (the key, then a BIP32 child)."""
    tr = await _key(cluster, "schnorr-bip340")
    kid = tr["key_id"]
    await cluster.stop_node(1)
    cluster.configure_faults(1, crash_points=["frost_nonce:spent"])
    await cluster.start_node(1)
    await _until(lambda: _pool_ready(cluster, kid, 1), 60, "pooled nonces at node-1")
    before = _offered(cluster, 0, kid, 1)
    req = await cluster.client("initiator").request_signature(kid, digest_of("power cut after the nonce is spent"),
                                                              signers=HONEST)
    await approve_if_needed(cluster.client("approver"), req)
    assert await asyncio.to_thread(cluster.procs[1].wait, 30) == 70  # node-2 died at the crash point
    burnt = [n for n, st in _offered(cluster, 0, kid, 1).items() if st == "used" and before.get(n) == "available"]
    assert len(burnt) == 1, "node-1 handed out exactly one of node-2's commitments"
    assert _own(cluster, 1, kid)[burnt[0]] == ("spent", 1), "spent durably, its HSM key destroyed, before sending"
    cluster.configure_faults(1)
    await cluster.start_node(1)
    child = await cluster.client("auditor").derive(kid, "m/0/7")
    for n, path in enumerate(("m", "m/0/7")):  # one online round each: the key, then a BIP32 child
        # (a commitment node-2 published while node-1 was busy may have been dropped at node-2
        # when the publication timed out there, yet kept at node-1: node-2 then refuses it, the
        # request signs in two rounds, and the next one is pooled; so up to 3 tries)
        for attempt in range(3):
            await _until(lambda: _pool_ready(cluster, kid, 1), 60, "pooled nonces at node-1")
            mark = (cluster.data_dirs[1] / "node.log").stat().st_size
            d = digest_of(f"pooled after restart {n}/{attempt}")
            done = await _sign(cluster, tr, d, **({} if path == "m" else {"derivation_path": path}))
            pk = tr["public_key"] if path == "m" else child["public_key"]
            assert done["public_key"] == pk
            assert PublicKeyXOnly(bytes.fromhex(pk)).verify(bytes.fromhex(done["signature"]["sig"]), d)
            # node-2 ran the one-round protocol (its log's protocol_round lines since the mark)
            if '"protocol": "frost-sign-pooled", "round": 1' in _log_since(cluster, 1, mark):
                break
        else:
            raise AssertionError(f"no pooled one-round signature for {path} in 3 requests")
        assert _own(cluster, 1, kid)[burnt[0]] == ("spent", 1) and _offered(cluster, 0, kid, 1)[burnt[0]] == "used"
    # (no check that node-2's spent pairs are all ones node-1 handed out: a batch whose
    # publication failed at node-2, e.g. timed out while node-1 was busy, is spent unused there
    # and shows as spent too; each pair's single use is what the state machine guarantees and
    # tests/node/test_frost_nonce_pool.py checks)


async def test_a_signer_refusing_its_pooled_pair_leaves_the_request_signable_in_two_rounds(cluster):
    """node-2's pairs for node-1 are gone (marked spent in its database while it was stopped, as
    after a restore or a lost publication) while node-1 still holds their commitments. node-2
    refuses its pair when the job opens, before node-1's own part runs (a pooled job's own part
    waits for every party's acceptance), so no node marks the request signed and node-1's
    two-round retry signs it."""
    tr = await _key(cluster, "schnorr-bip340")
    kid = tr["key_id"]
    await _until(lambda: _pool_ready(cluster, kid, 1), 60, "pooled nonces at node-1")
    await cluster.stop_node(1)
    con = sqlite3.connect(cluster.data_dirs[1] / "node.db", timeout=10)
    try:
        with con:
            con.execute("UPDATE frost_nonces SET state = 'spent' WHERE key_id = ? AND holder = 0 AND "
                        "state = 'available'", (kid,))
    finally:
        con.close()
    await cluster.start_node(1)
    mark = (cluster.data_dirs[0] / "node.log").stat().st_size
    d = digest_of("a stale pooled commitment")
    done = await _sign(cluster, tr, d)
    assert PublicKeyXOnly(bytes.fromhex(tr["public_key"])).verify(bytes.fromhex(done["signature"]["sig"]), d)
    log = _log_since(cluster, 0, mark)
    assert '"outcome": "nonce_unavailable"' in log, "node-1 offered a commitment node-2 refused"
    assert "request_already_signed" not in log


async def test_a_bad_signature_share_names_its_signer(cluster):
    tr = await _key(cluster, "schnorr-bip340")
    with pytest.raises(ApplianceAPIError) as ei:
        await _sign(cluster, tr, digest_of("cheater"), signers=["node-1", "node-3"])
    assert ei.value.code == "protocol_abort" and ei.value.culprits == ["node-3"]
    assert "check 6: signature share does not verify" in ei.value.message
    q = await cluster.client("admin").quarantined()
    assert [e["node_id"] for e in q] == ["node-3"]
