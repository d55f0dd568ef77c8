"""Transaction-aware signing over HTTP, on a real 2-of-3 cluster (issue 7).

The cluster's policy forbids raw digests and has transaction rules for every key (regtest
PSBTs, chain id 1, an allow-list of destinations, per-transaction limits, maximum fees).
node-1 runs with the test-only coordinator faults. Covered: a PSBT spending two P2WPKH
outputs (root key and a derived child) comes back signed and its final transaction passes
python-bitcointx's script interpreter; an EIP-1559 transaction and EIP-712 typed data come
back signed by the key's address (recovered by eth-account); what the approver sees is what
the node decoded; over-limit amounts, destinations off the allow-list, a wrong chain id, a
fee too high and a raw digest are refused with their reason code on every node and audited
(also by the signers when a coordinator lets such a request through); a coordinator that
substitutes a digest is refused by the honest signers; malformed payloads get a 400 and
nothing is stored. Text messages (issue 15): ``eip191`` recovered by eth-account, ``message``
(SHA-256 of the text) verified by libsecp256k1, both shown to the approver as text, and
``appliance sign --message --message-format eip191``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import time

import pytest

from api.client import ApplianceAPIError
from appliance import payloads as P
from appliance.payloads import samples
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of

pytestmark = cluster_marks("payloads-http")

N = 3
DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # BIP173 regtest example
ETH_TO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SPENDER = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
TOKEN = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
ETHER = 10**18

cluster = cluster_fixture(
    policy={"signing": {"allow_raw_digest": False, "transactions": {
        "network": "regtest",
        "allowed_destinations": [DEST, ETH_TO, SPENDER],
        "allowed_chain_ids": [1],
        "max_fee": {"BTC": "5000", "ETH": str(10**16)},
        "limits": {"BTC": {"per_transaction": "150000"}, "ETH": {"per_transaction": str(ETHER)}},
    }}},
    faults={0: {"coordinator_faults": True}},
)
STATE: dict = {}


async def _key(cluster) -> dict:
    if "key" not in STATE:
        key = await cluster.client("admin").create_key(threshold=2)
        root = await cluster.client("auditor").derive(key["key_id"], "m")
        key["kc"] = P.KeyContext(bytes.fromhex(key["public_key"]), bytes.fromhex(root["chain_code"]))
        key["eth"] = (await cluster.client("auditor").address(key["key_id"], "eth"))["address"]
        STATE["key"] = key
    return STATE["key"]


async def _sign(cluster, key, node: int = 0, **kw) -> dict:
    ini, app = cluster.client("initiator", node=node), cluster.client("approver", node=node)
    req = await ini.request_signature(key["key_id"], **kw)
    assert req["status"] == "pending"
    shown = await app.get_sign_request(req["request_id"])  # what the approver sees
    await app.approve(req["request_id"])
    done = await ini.wait_signature(req["request_id"], timeout=120)
    return shown, done


def _psbt(kc, amount=80_000, change=23_500, fee=1_500):
    child = kc.derive("m/0/5")
    ch = kc.derive("m/1/0")
    first = 60_000
    second = amount + change + fee - first
    return samples.sample_psbt(
        [(kc.public_key, first), (child.public_key, second)],
        [(DEST, amount), (P.p2wpkh_address(ch.public_key, "regtest"), change)],
        network="regtest", derivations=[None, (kc.fingerprint, "m/0/5")],
        output_derivations=[None, (ch.public_key, kc.fingerprint, "m/1/0")])


def _verify_inputs(tx_hex: str, psbt_b64: str) -> None:
    from bitcointx.core import CTransaction
    from bitcointx.core.psbt import PartiallySignedTransaction
    from bitcointx.core.scripteval import SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS, VerifyScript

    P._bitcoin.ensure_bitcointx()
    tx = CTransaction.deserialize(bytes.fromhex(tx_hex))
    psbt = PartiallySignedTransaction.from_base64(psbt_b64)
    assert len(psbt.inputs) == len(tx.vin) == 2
    for i, inp in enumerate(psbt.inputs):
        prev = inp.witness_utxo or inp.utxo.vout[tx.vin[i].prevout.n]
        VerifyScript(tx.vin[i].scriptSig, prev.scriptPubKey, tx, i,
                     flags={SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS}, amount=prev.nValue,
                     witness=tx.wit.vtxinwit[i].scriptWitness)


async def test_psbt_two_p2wpkh_inputs_signed_and_final_tx_verifies(cluster):
    from bitcointx.core.psbt import PartiallySignedTransaction

    key = await _key(cluster)
    psbt = _psbt(key["kc"])
    shown, done = await _sign(cluster, key, payload=psbt, payload_type="psbt")
    # the approver saw the transaction, as the node decoded it itself
    summary = shown["decoded"]["summary"]
    assert shown["payload_type"] == "psbt" and shown["network"] == "regtest"
    assert summary["destinations"] == [{"address": DEST, "amount": 80_000}] and summary["fee"] == 1_500
    assert [o["change"] for o in summary["outputs"]] == [False, True]
    assert [i["path"] for i in summary["inputs"]] == ["m", "m/0/5"]
    result = done["result"]
    assert result["complete"] is True and len(done["signatures"]) == 2
    signed = PartiallySignedTransaction.from_base64(result["psbt"])
    assert all(len(inp.partial_sigs) == 1 for inp in signed.inputs)
    _verify_inputs(result["tx_hex"], psbt)
    # every node audited the decoded request (its payload hash as the entry's digest)
    entries = await cluster.client("auditor").audit()
    e = next(e for e in entries if e["action"] == "sign_request" and e["subject"] == done["request_id"])
    assert e["digest"] == shown["payload_hash"]
    # what the node decoded is in its audit log, and in each signer's
    d = next(e for e in entries if e["action"] == "payload_decoded" and e["subject"] == done["request_id"])
    assert DEST in d["reason"] and "80000 BTC" in d["reason"] and "fee 1500" in d["reason"], d
    for i in (1, 2):
        if cluster.node_ids[i] in done["signers"]:
            theirs = await cluster.client("auditor", node=i).audit()
            assert any(x["action"] == "payload_decoded" and DEST in x["reason"]
                       and x["digest"] == shown["payload_hash"] for x in theirs)


async def test_eip1559_transaction_sender_is_the_key_address(cluster):
    from eth_account import Account
    from eth_utils import keccak

    key = await _key(cluster)
    tx = samples.sample_eth_tx(chain_id=1, nonce=4, to=ETH_TO, value=ETHER // 4, gas=21_000,
                               max_fee_per_gas=40 * 10**9, max_priority_fee_per_gas=10**9)
    shown, done = await _sign(cluster, key, node=1, payload=tx, payload_type="eth_tx")
    facts = shown["decoded"]["facts"]
    assert facts["chain_id"] == 1 and facts["destinations"] == [ETH_TO]
    assert facts["amounts"] == {"ETH": str(ETHER // 4)} and facts["fee"] == str(21_000 * 40 * 10**9)
    raw = done["result"]["raw_tx"]
    assert Account.recover_transaction(raw) == key["eth"]
    assert done["result"]["tx_hash"].removeprefix("0x") == keccak(bytes.fromhex(raw.removeprefix("0x"))).hex()


async def test_eip712_signer_is_the_key_address(cluster):
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    key = await _key(cluster)
    typed = samples.sample_permit(chain_id=1, token=TOKEN, owner=key["eth"], spender=SPENDER, value=5 * 10**6)
    shown, done = await _sign(cluster, key, node=2, payload=typed, payload_type="eip712")
    assert shown["decoded"]["facts"]["method"] == "Permit"
    sig = bytes.fromhex(done["result"]["signature"].removeprefix("0x"))
    assert len(sig) == 65
    assert Account.recover_message(encode_typed_data(full_message=typed), signature=sig) == key["eth"]


async def test_text_messages_are_hashed_by_the_nodes_and_shown_to_approvers(cluster):
    """``eip191`` (personal_sign) recovered by eth-account to the key's address, ``message``
    (SHA-256 of the text) verified by libsecp256k1; the approver sees the text, the audit log
    its size and hash; the same nonce again is the same request, another text under it a 409."""
    import coincurve
    from eth_account import Account
    from eth_account.messages import encode_defunct

    key = await _key(cluster)
    text = "example.com wants you to sign in with your Ethereum account:\nNonce: 8f2c ♥"
    shown, done = await _sign(cluster, key, node=1, payload=text, payload_type="eip191")
    summary = shown["decoded"]["summary"]
    assert (summary["text"], summary["length"], summary["signer"]) == (text, len(text.encode()), key["eth"])
    res = done["result"]
    assert res["address"] == key["eth"] and res["v"] in (27, 28) and len(bytes.fromhex(res["signature"])) == 65
    assert Account.recover_message(encode_defunct(text=text), signature=bytes.fromhex(res["signature"])) == key["eth"]
    entries = await cluster.client("auditor", node=1).audit()
    assert [(e["reason"], e["digest"]) for e in entries
            if e["subject"] == shown["request_id"] and e["action"] == "payload_decoded"] \
        == [(f"eip191 text, {len(text.encode())} bytes, path m", summary["sha256"])]

    ini = cluster.client("initiator", node=2)
    nonce = f"msg-{time.time_ns()}"
    req = await ini.request_signature(key["key_id"], payload="pay invoice 42", payload_type="message", nonce=nonce)
    again = await cluster.client("initiator", node=0).request_signature(
        key["key_id"], payload="pay invoice 42", payload_type="message", nonce=nonce)
    assert again["request_id"] == req["request_id"]
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("initiator", node=0).request_signature(
            key["key_id"], payload="pay invoice 43", payload_type="message", nonce=nonce)
    assert (ei.value.status, ei.value.code) == (409, "nonce_reused")
    assert (await cluster.client("approver", node=2).get_sign_request(req["request_id"]))["decoded"]["summary"][
        "text"] == "pay invoice 42"
    await cluster.client("approver", node=2).approve(req["request_id"])
    done = await ini.wait_signature(req["request_id"], timeout=120)
    res = done["result"]
    assert res["message_sha256"] == hashlib.sha256(b"pay invoice 42").hexdigest()
    assert coincurve.PublicKey(bytes.fromhex(key["public_key"])).verify(bytes.fromhex(res["der"]),
                                                                         b"pay invoice 42")
    assert res["der"] == done["signature"]["der"]


async def test_cli_sign_message_eip191_waits_for_approval_and_prints_the_signature(cluster, tmp_path):
    """``appliance sign --message TEXT --message-format eip191`` (a real process): the request
    carries the text (no local hashing), the command waits for the approval and prints the
    result, whose 65-byte signature eth-account recovers to the key's address."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    key = await _key(cluster)
    (tmp_path / "n1.crt").write_text(cluster.server_cert(0))
    text = "I approve invoice 42\n\tamount: 12.50 EUR"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "sign", "--url", cluster.urls[0], "--user", "initiator",
        "--key", str(cluster.base_dir / "users" / "initiator.pem"), "--server-cert", str(tmp_path / "n1.crt"),
        "--key-id", key["key_id"], "--message", text, "--message-format", "eip191", "--timeout", "120",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(cluster._env()["PYTHONPATH"])))
    try:
        line = b""
        while not line.startswith(b"request "):  # "request ID waits for approval (...)"
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, "the CLI ended without creating the request"
        rid = line.split()[1].decode()
        shown = await cluster.client("approver").get_sign_request(rid)
        assert (shown["payload_type"], shown["decoded"]["summary"]["text"]) == ("eip191", text)
        await cluster.client("approver").approve(rid)
        out, err = await asyncio.wait_for(proc.communicate(), 150)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    res = json.loads(out)["result"]
    assert res["address"] == key["eth"]
    assert Account.recover_message(encode_defunct(text=text), signature=bytes.fromhex(res["signature"])) == key["eth"]


def _cases(key):
    over = samples.sample_eth_tx(chain_id=1, to=ETH_TO, value=2 * ETHER)
    elsewhere = samples.sample_eth_tx(chain_id=1, to="0x" + "66" * 20, value=ETHER // 10)
    chain5 = samples.sample_eth_tx(chain_id=5, to=ETH_TO, value=ETHER // 10)
    pricey = samples.sample_eth_tx(chain_id=1, to=ETH_TO, value=ETHER // 10, max_fee_per_gas=10**12,
                                   max_priority_fee_per_gas=10**9)
    return [
        ("amount_over_limit", dict(payload=over, payload_type="eth_tx")),
        ("destination_not_allowed", dict(payload=elsewhere, payload_type="eth_tx")),
        ("chain_not_allowed", dict(payload=chain5, payload_type="eth_tx")),
        ("fee_too_high", dict(payload=pricey, payload_type="eth_tx")),
        ("raw_digest_forbidden", dict(digest=digest_of("blind"))),
        ("amount_over_limit", dict(payload=_psbt(key["kc"], amount=160_000, change=20_000), payload_type="psbt")),
    ]


async def test_rule_breaking_requests_refused_on_every_node_and_audited(cluster):
    key = await _key(cluster)
    for i in range(N):
        ini = cluster.client("initiator", node=i)
        before = len(await cluster.client("auditor", node=i).audit())
        for code, kw in _cases(key):
            with pytest.raises(ApplianceAPIError) as ei:
                await ini.request_signature(key["key_id"], **kw)
            assert (ei.value.status, ei.value.code) == (403, code), (i, ei.value)
        entries = (await cluster.client("auditor", node=i).audit())[before:]
        got = [e["reason"] for e in entries if e["action"] == "sign_request" and e["decision"] == "denied"]
        assert got == [c for c, _ in _cases(key)], (i, got)
        assert await ini.pending_requests() == []


@pytest.mark.parametrize("code", ["amount_over_limit", "destination_not_allowed", "chain_not_allowed",
                                  "fee_too_high", "raw_digest_forbidden"])
async def test_signers_enforce_the_rules_themselves(cluster, code):
    """node-1 (patched) skips its own checks and sends the approved request to node-2 and
    node-3: each refuses with the reason code and audits it."""
    key = await _key(cluster)
    kw = dict(_cases(key))[code]
    ini, app = cluster.client("initiator", node=0), cluster.client("approver", node=0)
    before = [len(await cluster.client("auditor", node=i).audit()) for i in (1, 2)]
    req = await ini.request_signature(key["key_id"], signers=["node-2", "node-3"],
                                      nonce=f"testfault.skip-checks.{time.time_ns()}", **kw)
    await app.approve(req["request_id"])
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.wait_signature(req["request_id"], timeout=60)
    assert ei.value.code == code
    for n, i in enumerate((1, 2)):
        entries = (await cluster.client("auditor", node=i).audit())[before[n]:]
        assert any(e["action"] == "sign_job_refused" and e["reason"] == code for e in entries), entries


async def test_coordinator_substituting_a_digest_is_refused(cluster):
    key = await _key(cluster)
    ini, app = cluster.client("initiator", node=0), cluster.client("approver", node=0)
    tx = samples.sample_eth_tx(chain_id=1, nonce=9, to=ETH_TO, value=ETHER // 100)
    before = [len(await cluster.client("auditor", node=i).audit()) for i in (1, 2)]
    req = await ini.request_signature(key["key_id"], payload=tx, payload_type="eth_tx",
                                      signers=["node-2", "node-3"],
                                      nonce=f"testfault.substitute-digest.{time.time_ns()}")
    await app.approve(req["request_id"])
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.wait_signature(req["request_id"], timeout=60)
    assert (ei.value.code, ei.value.status) == ("digest_mismatch", 409), ei.value
    for n, i in enumerate((1, 2)):
        entries = (await cluster.client("auditor", node=i).audit())[before[n]:]
        assert any(e["action"] == "sign_job_refused" and e["reason"] == "digest_mismatch" for e in entries)
        assert not any(e["action"] == "join_sign" for e in entries)


async def test_malformed_payloads_are_400_and_store_nothing(cluster):
    key = await _key(cluster)
    ini = cluster.client("initiator", node=1)
    good = base64.b64decode(_psbt(key["kc"]))
    before = await ini.pending_requests()
    audit_before = len(await cluster.client("auditor", node=1).audit())
    cases = [
        dict(payload=base64.b64encode(good[: len(good) // 2]).decode(), payload_type="psbt"),  # truncated
        dict(payload=base64.b64encode(b"psbt\xff" + b"\x00" * 3).decode(), payload_type="psbt"),
        dict(payload="!!not base64!!", payload_type="psbt"),
        dict(payload=12345, payload_type="psbt"),                                    # wrong type
        dict(payload="zz" * 40, payload_type="eth_tx"),
        dict(payload=samples.sample_eth_tx(to=ETH_TO)[:-6], payload_type="eth_tx"),  # truncated
        dict(payload="02" + "00" * 200_000, payload_type="eth_tx"),                  # huge
        dict(payload=["not", "typed", "data"], payload_type="eip712"),
        dict(payload={"types": {}, "primaryType": "X", "domain": {}, "message": {"a": "b" * 70_000}},
             payload_type="eip712"),                                                 # huge
        dict(payload="ring the bell\x07", payload_type="message"),                 # not plain text
        dict(payload="x" * 4097, payload_type="eip191"),                             # too long
        dict(payload=base64.b64encode(b"psbt\xff" + b"\x01" * 1_200_000).decode(), payload_type="psbt"),
    ]
    codes = []
    for kw in cases:
        with pytest.raises(ApplianceAPIError) as ei:
            await ini.request_signature(key["key_id"], **kw)
        assert ei.value.status == 400 and ei.value.message, (kw["payload_type"], ei.value)
        codes.append(ei.value.code)
    # each named by the payload decoder (not a generic statement error)
    assert all(c not in ("bad_request_statement", "missing_request", "request_mismatch") for c in codes), codes
    assert "payload_too_large" in codes and codes[-3:-1] == ["malformed_message", "payload_too_large"]
    assert await ini.pending_requests() == before
    after = await cluster.client("auditor", node=1).audit()
    assert not [e for e in after[audit_before:] if e["action"] == "sign_request"]
