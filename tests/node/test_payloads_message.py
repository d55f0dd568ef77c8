"""Text messages the node hashes itself (issue 15 item 3): ``message`` (SHA-256 of the UTF-8
text) and ``eip191`` (personal_sign), decoded, assembled and allowed by the policy only where
a rule names them."""

from __future__ import annotations

import hashlib

import coincurve
import pytest

from appliance import payloads as P
from appliance.payloads.eth_typed import load_encoder
from appliance.payloads.message import MAX_MESSAGE_BYTES
from appliance.policy import Policy, evaluate, make_approval, payload_hash
from appliance.signing.reading import summary_text
from appliance.tss import ecdsa
from appliance.tss.group import Q
from tests.node.fakes import Users

# eth-account's own example (Account.sign_message / recover_message docstrings, 0.14.0)
DOC_KEY = bytes.fromhex("b25c7db31feed9122727bf0939dc769a96564b2de4c4726d035b36ecf1e5b364")
DOC_TEXT = "I♥SF"
DOC_HASH = "1476abb745d423bf09273f1afd887d951181d25adc66c4834a70491911b7f750"
DOC_R = 0xE6CA9BBA58C88611FAD66A6CE8F996908195593807C4B38BD528D2CFF09D4EB3
DOC_S = 0x3E5BFBBF4D3E39B1A2FD816A7680C19EBEBAF3A141B239934AD43CB33FCEC8CE
DOC_SIGNATURE = ("e6ca9bba58c88611fad66a6ce8f996908195593807c4b38bd528d2cff09d4eb3"
                 "3e5bfbbf4d3e39b1a2fd816a7680c19ebebaf3a141b239934ad43cb33fcec8ce1c")
DOC_ADDRESS = "0x5ce9454909639D2D17A3F753ce7d93fa0b9aB12E"
DOC_PUB = coincurve.PrivateKey(DOC_KEY).public_key.format(compressed=True)
KEY = P.KeyContext(DOC_PUB, bytes(32))


def _sign(digest: bytes, secret: bytes = DOC_KEY) -> ecdsa.Signature:
    raw = coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)
    return ecdsa.Signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64])


def test_eip191_digest_and_signature_are_eth_accounts_documented_example():
    dec = P.decode_payload("eip191", DOC_TEXT, KEY)
    assert dec.digests == [bytes.fromhex(DOC_HASH)]
    assert dec.summary["text"] == DOC_TEXT and dec.summary["length"] == 6  # "♥" is 3 bytes
    assert dec.summary["signer"] == DOC_ADDRESS and dec.summary["message_hash"] == "0x" + DOC_HASH
    assert dec.facts.transfers == () and dec.facts.chain is None and dec.facts.chain_id is None
    result = P.assemble(dec, [ecdsa.Signature(DOC_R, DOC_S)])  # the recovery id is found
    assert result == {"signature": DOC_SIGNATURE, "r": f"{DOC_R:064x}", "s": f"{DOC_S:064x}", "v": 28,
                      "address": DOC_ADDRESS}
    load_encoder()  # eth_account without moving the recursion limit (appliance/payloads/eth_typed.py)
    from eth_account import Account
    from eth_account.messages import encode_defunct

    assert Account.recover_message(encode_defunct(text=DOC_TEXT), signature=bytes.fromhex(DOC_SIGNATURE)) \
        == DOC_ADDRESS
    # and a fresh signature of a SIWE-like text with line breaks, from a derived key
    child = P.KeyContext(DOC_PUB, bytes(32), "m/0/7")
    text = "example.com wants you to sign in\n\nNonce: 42\r\n\tIssued At: 2025-01-01"
    dec = P.decode_payload("eip191", text, child)
    secret = (int.from_bytes(DOC_KEY, "big") + child.signer.tweak) % Q
    out = P.assemble(dec, [_sign(dec.digests[0], secret.to_bytes(32, "big"))])
    assert Account.recover_message(encode_defunct(text=text), signature=bytes.fromhex(out["signature"])) \
        == out["address"] == P.eth_address(child.signer.public_key)


def test_message_digest_is_sha256_of_the_utf8_text_and_verifies_with_coincurve():
    dec = P.decode_payload("message", "hello", KEY)
    # SHA-256("hello"), the FIPS 180 example everyone quotes
    assert dec.digests == [bytes.fromhex("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")]
    assert dec.summary == {"type": "message", "text": "hello", "length": 5, "sha256": dec.digests[0].hex(),
                           "public_key": DOC_PUB.hex(), "path": "m"}
    result = P.assemble(dec, [_sign(dec.digests[0])])
    assert result["message_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert set(result) == {"der", "r", "s", "recovery_id", "message_sha256"}
    assert coincurve.PublicKey(DOC_PUB).verify(bytes.fromhex(result["der"]), b"hello")  # hashes with SHA-256
    # the audit entry's reason (the entry's digest is the request's payload_hash: this SHA-256)
    assert summary_text(dec) == "message text, 5 bytes, path m"
    # the request statement's payload_hash is the same SHA-256 of the text's bytes
    assert payload_hash("message", "héllo") == hashlib.sha256("héllo".encode()).hexdigest()
    with pytest.raises(P.SignatureMismatch, match="does not verify for the message"):
        P.assemble(dec, [_sign(hashlib.sha256(b"other").digest())])


@pytest.mark.parametrize("payload_type", ["message", "eip191"])
@pytest.mark.parametrize("payload,code,message", [
    ("", "malformed_message", "message is empty"),
    ("pay\x1b[8m 1 BTC", "malformed_message",
     "message holds control character U+001B at position 3: only text, tab and line breaks are signed"),
    ("abc\u202eevil", "malformed_message",
     "message holds control character U+202E at position 3: only text, tab and line breaks are signed"),
    ("a\x00", "malformed_message",
     "message holds control character U+0000 at position 1: only text, tab and line breaks are signed"),
    ("\ud800", "malformed_message", "message is not valid Unicode text (a lone surrogate)"),
    ("x" * (MAX_MESSAGE_BYTES + 1), "payload_too_large", "message longer than 4096 bytes"),
    ("♥" * 1366, "payload_too_large", "message longer than 4096 bytes (UTF-8)"),  # 4098 bytes
    (b"hello", "wrong_type", "a message payload is a string (UTF-8 text)"),
    ({"text": "hello"}, "wrong_type", "a message payload is a string (UTF-8 text)"),
])
def test_what_is_not_plain_text_is_refused_with_its_code(payload_type, payload, code, message):
    with pytest.raises(P.PayloadError) as ei:
        P.decode_payload(payload_type, payload, KEY)
    assert (ei.value.code, ei.value.message) == (code, message)


def test_the_longest_message_is_accepted():
    assert P.decode_payload("message", "x" * MAX_MESSAGE_BYTES, KEY).summary["length"] == 4096
    assert P.decode_payload("eip191", "♥" * 1365, KEY).summary["length"] == 4095


def _decide(policy_map: dict, users: Users, payload_type: str):
    users.policy = Policy.from_mapping(policy_map)
    now = 1_700_000_000
    sr = users.request(now, key_id="key_" + "a" * 24, payload=DOC_TEXT, payload_type=payload_type,
                       derivation_path="m")
    a = make_approval(users.keys["approver"], sr.request, approver="approver", now=now, ttl_s=600)
    return evaluate(users.policy, sr, [a], now)


@pytest.mark.parametrize("payload_type", ["message", "eip191"])
def test_a_rule_signs_messages_only_where_its_payload_types_name_them(payload_type):
    users = Users()
    canon = users.policy.canonical()
    # LocalCluster's default policy (appliance.policy.default_policy) allows them
    assert _decide(canon, users, payload_type).allowed
    # a production policy that names no payload_types: the transactions only
    del canon["signing"]["payload_types"]
    decision = _decide(canon, users, payload_type)
    assert (decision.denied, decision.reason, decision.message) == (
        True, "payload_type_not_allowed", f"payload type {payload_type} is not allowed")
    assert users.policy.signing.payload_types == ("eip712", "eth_tx", "psbt", "sol_tx")
    canon["signing"]["payload_types"] = ["psbt", payload_type]
    assert _decide(canon, users, payload_type).allowed
    # every signer's own check of the key's transaction rules agrees
    dec = P.decode_payload(payload_type, DOC_TEXT, KEY)
    refused = P.evaluate_tx_rules(dec, P.TxRules(allowed_payload_types=["psbt", "eth_tx", "eip712"]))
    assert (refused.allowed, refused.code, refused.message) == (
        False, "payload_type_not_allowed", f"{payload_type} payloads are not allowed for this key")
    assert P.evaluate_tx_rules(dec, users.policy.tx_rules_for("key_" + "a" * 24)).allowed
    # a message moves nothing on no chain: destination and chain-id allow-lists do not stand in its way
    assert P.evaluate_tx_rules(dec, P.TxRules(allowed_destinations=[DOC_ADDRESS], allowed_chain_ids=[1],
                                              allowed_networks=["mainnet"])).allowed
