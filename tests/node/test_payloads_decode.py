"""Strict decoding: malformed, truncated, wrong-type, oversized and unsafe payloads raise
PayloadError with a clear code (the API's 400); nothing else escapes. Addresses."""

from __future__ import annotations

import base64
import json
import random

import pytest
import rlp

from api.errors import error_status
from appliance import payloads as P
from appliance.payloads import samples
from appliance.payloads.ethereum import MAX_TX_BYTES
from appliance.payloads.psbt import MAX_PSBT_BYTES
from appliance.tss.group import Point

KEY = P.KeyContext(Point.generator_mul(0xC0FFEE).to_bytes(), bytes(range(32)))
OTHER = Point.generator_mul(777).to_bytes()
DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
ETH_TO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def code_of(payload_type, payload, key=KEY, **kw):
    with pytest.raises(P.PayloadError) as e:
        P.decode_payload(payload_type, payload, key, **kw)
    assert error_status(e.value) == 400  # what the API answers
    return e.value.code


def good_psbt(**kw):
    kw.setdefault("network", "regtest")
    return samples.sample_psbt([(KEY.public_key, 50_000)], [(DEST, 49_000)], **kw)


# ---------------------------------------------------------------------------------------
# PSBT


def test_psbt_good_one_decodes():
    d = P.decode_payload("psbt", good_psbt(), KEY, network="regtest")
    assert d.payload_type == "psbt" and len(d.items) == 1 and d.summary["fee"] == 1000


@pytest.mark.parametrize("payload,code", [
    (12345, "wrong_type"),
    (None, "wrong_type"),
    ({"psbt": "x"}, "wrong_type"),
    (["cHNidP8="], "wrong_type"),
    ("not base64 at all!", "malformed_psbt"),
    ("cHNidP8", "malformed_psbt"),  # bad padding
    (base64.b64encode(b"psbx\xff" + bytes(40)).decode(), "malformed_psbt"),  # magic
    (base64.b64encode(b"psbt\xff").decode(), "malformed_psbt"),  # no global map
    ("A" * (MAX_PSBT_BYTES * 2), "payload_too_large"),
    (b"psbt\xff" + bytes(MAX_PSBT_BYTES), "payload_too_large"),
])
def test_psbt_malformed(payload, code):
    assert code_of("psbt", payload, network="regtest") == code


def test_psbt_truncated_at_every_length_and_extended():
    raw = base64.b64decode(good_psbt())
    for n in range(len(raw)):
        assert code_of("psbt", base64.b64encode(raw[:n]).decode(), network="regtest") in (
            "malformed_psbt",)
    assert code_of("psbt", base64.b64encode(raw + b"\x00").decode(), network="regtest") == "malformed_psbt"


def test_psbt_random_corruptions_never_escape():
    """Flipped bytes either still decode (a change the format allows) or raise PayloadError."""
    raw = bytearray(base64.b64decode(good_psbt()))
    rnd = random.Random(7)
    for _ in range(400):
        mutated = bytearray(raw)
        for _ in range(rnd.randint(1, 3)):
            mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
        try:
            P.decode_payload("psbt", bytes(mutated), KEY, network="regtest")
        except P.PayloadError:
            pass


def test_psbt_not_ours_is_nothing_to_sign():
    psbt = samples.sample_psbt([(OTHER, 50_000)], [(DEST, 49_000)], network="regtest")
    assert code_of("psbt", psbt, network="regtest") == "nothing_to_sign"


def test_psbt_hardened_or_foreign_derivation_is_not_ours():
    child = KEY.derive("m/3")
    psbt = samples.sample_psbt([(child.public_key, 50_000)], [(DEST, 49_000)], network="regtest",
                               derivations=[(b"\x01\x02\x03\x04", "m/3")])
    assert code_of("psbt", psbt, network="regtest") == "nothing_to_sign"  # other master
    psbt = samples.sample_psbt([(child.public_key, 50_000)], [(DEST, 49_000)], network="regtest",
                               derivations=[(KEY.fingerprint, "m/3")])
    assert P.decode_payload("psbt", psbt, KEY, network="regtest").items[0].path == "m/3"
    # a record that lies about the path (our fingerprint, wrong index) does not match
    psbt = samples.sample_psbt([(child.public_key, 50_000)], [(DEST, 49_000)], network="regtest",
                               derivations=[(KEY.fingerprint, "m/4")])
    assert code_of("psbt", psbt, network="regtest") == "nothing_to_sign"
    # the request's own derivation path also makes the child ours
    assert P.decode_payload("psbt", good_psbt(), KEY, network="regtest").items[0].path == "m"
    kc = P.KeyContext(KEY.public_key, KEY.chain_code, "m/3")
    psbt = samples.sample_psbt([(child.public_key, 50_000)], [(DEST, 49_000)], network="regtest")
    assert P.decode_payload("psbt", psbt, kc, network="regtest").items[0].tweak == child.tweak


@pytest.mark.parametrize("sighash", [2, 3, 0x81, 0x83])
def test_psbt_sighash_other_than_all_refused(sighash):
    assert code_of("psbt", good_psbt(sighash_type=sighash), network="regtest") == "sighash_not_allowed"


def test_psbt_sighash_all_explicit_is_fine():
    assert P.decode_payload("psbt", good_psbt(sighash_type=1), KEY, network="regtest").items


def test_psbt_segwit_without_previous_tx_refused_unless_relaxed():
    psbt = good_psbt(non_witness_utxo=False)
    assert code_of("psbt", psbt, network="regtest") == "missing_utxo"
    d = P.decode_payload("psbt", psbt, KEY, network="regtest", require_non_witness_utxo=False)
    assert d.summary["fee"] == 1000


def test_psbt_taproot_key_path_of_our_key_refused():
    psbt = samples.sample_psbt([(KEY.public_key, 50_000)], [(DEST, 49_000)], network="regtest",
                               script_type="p2tr")
    assert code_of("psbt", psbt, network="regtest") == "taproot_unsupported"


def test_psbt_taproot_output_to_our_key_is_a_destination_with_a_warning():
    psbt = samples.sample_psbt([(KEY.public_key, 50_000)],
                               [(samples.p2tr_script(KEY.public_key), 49_000)], network="regtest")
    d = P.decode_payload("psbt", psbt, KEY, network="regtest")
    assert d.summary["outputs"][0]["change"] is False
    assert d.facts.amounts == {"BTC": 49_000}
    assert any("cannot spend" in w for w in d.summary["warnings"])


def test_psbt_bad_network():
    assert code_of("psbt", good_psbt(), network="litecoin") == "bad_network"


def test_psbt_change_needs_proof_of_ownership():
    change = KEY.derive("m/1/9")
    outs = [(DEST, 40_000), (P.p2wpkh_address(change.public_key, "regtest"), 9_000)]
    plain = samples.sample_psbt([(KEY.public_key, 50_000)], outs, network="regtest")
    marked = samples.sample_psbt([(KEY.public_key, 50_000)], outs, network="regtest",
                                 output_derivations=[None, (change.public_key, KEY.fingerprint, "m/1/9")])
    # without a derivation record we cannot know the output is ours: it is a destination
    assert P.decode_payload("psbt", plain, KEY, network="regtest").facts.amounts == {"BTC": 49_000}
    d = P.decode_payload("psbt", marked, KEY, network="regtest")
    assert d.facts.amounts == {"BTC": 40_000}
    # a record that names our fingerprint but a key we do not derive is ignored
    liar = samples.sample_psbt([(KEY.public_key, 50_000)], outs, network="regtest",
                               output_derivations=[None, (change.public_key, KEY.fingerprint, "m/1/8")])
    assert P.decode_payload("psbt", liar, KEY, network="regtest").facts.amounts == {"BTC": 49_000}


def test_psbt_mainnet_addresses():
    psbt = samples.sample_psbt([(KEY.public_key, 50_000)],
                               [("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 49_000)], network="mainnet")
    d = P.decode_payload("psbt", psbt, KEY)
    assert d.summary["inputs"][0]["address"] == P.p2wpkh_address(KEY.public_key)
    assert d.facts.destinations == ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",)


# ---------------------------------------------------------------------------------------
# Ethereum transactions


def good_tx(**kw):
    kw.setdefault("to", ETH_TO)
    kw.setdefault("value", 10**16)
    return samples.sample_eth_tx(**kw)


def test_eth_good_ones_decode():
    for t in (0, 1, 2):
        d = P.decode_payload("eth_tx", good_tx(tx_type=t), KEY)
        assert d.facts.chain_id == 1 and d.facts.amounts == {"ETH": 10**16}
    assert P.decode_payload("eth_tx", "0x" + good_tx(), KEY).digests == \
        P.decode_payload("eth_tx", bytes.fromhex(good_tx()), KEY).digests


def _typed(items, t=2):
    return (bytes([t]) + rlp.encode(items)).hex() if t else rlp.encode(items).hex()


def test_eth_malformed():
    raw = bytes.fromhex(good_tx())
    fields = rlp.decode(raw[1:])
    cases = {
        "wrong_type": [123, None, ["02"], {"tx": "02"}],
        "malformed_eth_tx": [
            "", "0x", "zz", "abc", "0x02c0",  # not hex / odd / empty list
            raw[:-1].hex(), (raw + b"\x00").hex(),  # truncated / trailing
            "05" + raw[1:].hex(),  # unknown type
            _typed(fields[:-1]),  # missing field
            _typed(fields + [b"", b"\x01", b"\x01"]),  # already signed
            _typed([b"\x01", b"\x00\x01"] + fields[2:]),  # non-minimal integer
            _typed(fields[:5] + [b"\x11" * 19] + fields[6:]),  # 19-byte address
            _typed(fields[:8] + [[b"x"]]),  # bad access list
            _typed([b"\x01", b""] + [b"\x05", b"\x04"] + fields[4:]),  # priority fee > max fee
            _typed(fields[:1] + [b"\xff" * 9] + fields[2:]),  # nonce > 2^64
            _typed(fields[:6] + [b"\x01" * 33] + fields[7:]),  # value > 2^256
            (b"\x02\x81\x05").hex(),  # not a list, non-canonical
            _typed([b"\x01", b"", b"\x01", b"\x01", b"\x52\x08", b"", b"", b"", []] + [], t=0),
        ],
        "unsupported_tx_type": ["03" + raw[1:].hex(), "04" + raw[1:].hex()],
        "chain_id_required": [
            _typed([b"", b"\x01", b"\x52\x08", b"\x11" * 20, b"\x01", b""], t=0),  # pre-EIP-155
            _typed([b""] + fields[1:]),  # chain id 0
        ],
        "payload_too_large": ["00" * (MAX_TX_BYTES + 1), b"\x02" + bytes(MAX_TX_BYTES)],
    }
    for code, payloads in cases.items():
        for payload in payloads:
            assert code_of("eth_tx", payload) == code, payload


def test_eth_legacy_signed_is_refused():
    raw = bytes.fromhex(good_tx(tx_type=0))
    items = rlp.decode(raw)
    items[7], items[8] = b"\x01", b"\x02"
    assert code_of("eth_tx", rlp.encode(items).hex()) == "malformed_eth_tx"


def test_eth_truncated_at_every_length_and_random_corruptions():
    raw = bytes.fromhex(good_tx(data=samples.erc20_transfer_data(ETH_TO, 5)))
    for n in range(len(raw)):
        with pytest.raises(P.PayloadError):
            P.decode_payload("eth_tx", raw[:n], KEY)
    rnd = random.Random(11)
    for _ in range(400):
        m = bytearray(raw)
        m[rnd.randrange(len(m))] = rnd.randrange(256)
        try:
            P.decode_payload("eth_tx", bytes(m), KEY)
        except P.PayloadError:
            pass


def test_eth_erc20_calls_are_read():
    token = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    d = P.decode_payload("eth_tx", good_tx(to=token, value=0,
                                           data=samples.erc20_transfer_data(ETH_TO, 7)), KEY)
    assert (d.facts.method, d.summary["call"]["recipient"]) == ("transfer", ETH_TO)
    assert d.facts.destinations == (ETH_TO,) and d.facts.amounts == {f"ERC20:{token}": 7}
    d = P.decode_payload("eth_tx", good_tx(to=token, value=0,
                                           data=samples.erc20_approve_data(ETH_TO, 2**256 - 1)), KEY)
    assert d.facts.method == "approve" and d.summary["call"]["unlimited"] is True
    assert d.facts.transfers[0].kind == "approval"
    # a transfer whose address word has dirty padding is not read as a transfer
    bad = bytearray(samples.erc20_transfer_data(ETH_TO, 7))
    bad[4] = 1
    d = P.decode_payload("eth_tx", good_tx(to=token, value=0, data=bytes(bad)), KEY)
    assert d.facts.method == "unknown" and d.facts.unknown_call and d.facts.destinations == (token,)
    # contract creation
    d = P.decode_payload("eth_tx", good_tx(to=None, data=b"\x60\x00"), KEY)
    assert d.facts.destinations == (None,) and d.facts.method == "create"


# ---------------------------------------------------------------------------------------
# EIP-712


def test_eip712_malformed():
    mail = samples.sample_mail()
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    cases = {
        "wrong_type": [123, None, ["x"], {**mail, "message": {"a": object()}}],
        "malformed_eip712": [
            "{not json", {k: v for k, v in mail.items() if k != "domain"},
            {**mail, "extra": 1}, {**mail, "primaryType": "Nope"},
            {**mail, "primaryType": "EIP712Domain"}, {**mail, "types": []},
            {**mail, "message": {**mail["message"], "contents": 1.5}},
            {**mail, "message": {**mail["message"], "from": {"name": "x", "wallet": "0x12"}}},
            {**mail, "domain": {**mail["domain"], "verifyingContract": "nope"}},
            {**mail, "domain": {**mail["domain"], "chainId": "one"}},
        ],
        "payload_too_large": [{**mail, "message": {**mail["message"], "contents": "x" * 70_000}},
                              {**mail, "message": deep}, "x" * 70_000],
    }
    for code, payloads in cases.items():
        for payload in payloads:
            assert code_of("eip712", payload) == code, str(payload)[:200]


def test_eip712_json_text_and_permit():
    mail = samples.sample_mail()
    assert P.decode_payload("eip712", json.dumps(mail), KEY).digests == \
        P.decode_payload("eip712", mail, KEY).digests
    token = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
    permit = samples.sample_permit(chain_id=1, token=token, owner=P.eth_address(KEY.public_key),
                                   spender=ETH_TO, value="1000")
    d = P.decode_payload("eip712", permit, KEY)
    assert d.facts.transfers == (P.Transfer(f"ERC20:{token}", 1000, ETH_TO, "approval"),)
    assert d.facts.chain_id == 1 and d.summary["permit"]["spender"] == ETH_TO


# ---------------------------------------------------------------------------------------
# digests, payload types, keys


def test_digest_and_payload_type_errors():
    assert P.decode_digest("00" * 32, KEY).payload_type == "digest"
    for bad in (b"\x00" * 31, "00" * 33, "zz" * 32, 5, None):
        with pytest.raises(P.PayloadError) as e:
            P.decode_digest(bad, KEY)
        assert e.value.code == "bad_digest"
    assert code_of("bitcoin", "x") == "bad_payload_type"
    with pytest.raises(P.PayloadError) as e:
        P.KeyContext(b"\x02" + bytes(32))
    assert e.value.code == "bad_key"
    with pytest.raises(P.PayloadError) as e:
        _ = P.KeyContext(KEY.public_key, KEY.chain_code, "m/0'").signer
    assert e.value.code == "bad_derivation_path"


def test_errors_serialize_for_the_api():
    err = P.PayloadError("malformed_psbt", "x" * 1000)
    assert err.to_dict()["code"] == "malformed_psbt" and len(str(err)) <= 300
    import pickle

    assert pickle.loads(pickle.dumps(err)).code == "malformed_psbt"
    assert pickle.loads(pickle.dumps(P.DigestMismatch("m"))).code == "digest_mismatch"


# ---------------------------------------------------------------------------------------
# addresses


def test_addresses_known_vectors():
    g = Point.generator_mul(1).to_bytes()  # BIP173's example key
    assert P.p2wpkh_address(g) == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    assert P.p2wpkh_address(g, "testnet") == "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
    assert P.p2wpkh_address(g, "regtest") == DEST
    assert P.p2pkh_address(g) == "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"
    assert P.eth_address(g) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"  # private key 1


def test_address_for_a_derived_key():
    from eth_account import Account

    kc = P.KeyContext(KEY.public_key, KEY.chain_code, "m/0/1")
    out = P.address_for("eth", kc)
    child = KEY.derive("m/0/1")
    assert out == {"kind": "eth", "address": P.eth_address(child.public_key),
                   "public_key": child.public_key.hex(), "path": "m/0/1", "network": None}
    secret = (0xC0FFEE + child.tweak).to_bytes(32, "big")
    assert Account.from_key(secret).address == out["address"]
    assert P.address_for("p2wpkh", kc, network="testnet")["address"].startswith("tb1q")
    with pytest.raises(P.PayloadError):
        P.address_for("p2tr", kc)
    assert P.normalize_address(ETH_TO.lower()) == ETH_TO
    with pytest.raises(P.PayloadError):
        P.normalize_address("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")  # bad checksum


@pytest.mark.parametrize("allowed,unlimited", [(True, True), ("yes", True), ("true", True), (1, True),
                                               (False, False), ("false", False), ("0", False), (0, False)])
def test_eip712_dai_permit_reads_allowed_as_eth_account_encodes_it(allowed, unlimited):
    from eth_account.messages import encode_typed_data

    dai = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
    permit = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}],
                  "Permit": [{"name": "holder", "type": "address"}, {"name": "spender", "type": "address"},
                             {"name": "nonce", "type": "uint256"}, {"name": "expiry", "type": "uint256"},
                             {"name": "allowed", "type": "bool"}]},
        "primaryType": "Permit",
        "domain": {"name": "Dai Stablecoin", "version": "1", "chainId": 1, "verifyingContract": dai},
        "message": {"holder": P.eth_address(KEY.public_key), "spender": ETH_TO, "nonce": 0,
                    "expiry": 0, "allowed": allowed},
    }
    d = P.decode_payload("eip712", permit, KEY)
    assert d.facts.transfers[0].amount == (2**256 - 1 if unlimited else 0)
    # and it is what eth-account hashes: the same digest as with a real bool
    real = {**permit, "message": {**permit["message"], "allowed": unlimited}}
    assert encode_typed_data(full_message=real).body == encode_typed_data(full_message=permit).body


def test_decode_request_takes_exactly_one_of_digest_or_payload():
    class Share:  # what a node holds: public key and chain code
        public_key = KEY.public_key
        chain_code = KEY.chain_code

    d = P.decode_request(Share(), digest=b"\x01" * 32, derivation_path="m/2")
    assert d.payload_type == "digest" and d.items[0].tweak == KEY.derive("m/2").tweak
    d = P.decode_request(KEY, payload=samples.sample_mail(), payload_type="eip712", derivation_path="m/2")
    assert d.summary["signer"] == P.eth_address(KEY.derive("m/2").public_key)
    for kw in ({}, {"digest": b"\x01" * 32, "payload": "x", "payload_type": "psbt"},
               {"payload": "x"}, {"digest": b"\x01" * 32, "payload_type": "psbt"}):
        with pytest.raises(P.PayloadError) as e:
            P.decode_request(KEY, **kw)
        assert e.value.code == "bad_request"


def test_decoded_payloads_are_json_ready_for_the_audit_log():
    for d in (P.decode_payload("psbt", good_psbt(), KEY, network="regtest"),
              P.decode_payload("eth_tx", good_tx(), KEY),
              P.decode_payload("eip712", samples.sample_mail(), KEY),
              P.decode_digest(b"\x02" * 32, KEY)):
        out = json.loads(json.dumps(d.to_dict()))
        assert out["items"][0]["digest"] == d.digests[0].hex()
        assert out["payload_type"] == d.payload_type


def test_psbt_p2wpkh_sighash_matches_the_bip143_example():
    """BIP143's "native P2WPKH" example: our digest for input 1 is the specification's sigHash
    (an independent check of the digest, beside the script interpreter's verdict)."""
    from bitcointx.core import CTransaction, CTxOut
    from bitcointx.core.psbt import PartiallySignedTransaction
    from bitcointx.core.script import CScript

    unsigned = bytes.fromhex(
        "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffff"
        "ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206"
        "000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42db"
        "ee7e4dbe6a21b2d50ce2f0167faa815988ac11000000")
    pub = bytes.fromhex("025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357")
    psbt = PartiallySignedTransaction(unsigned_tx=CTransaction.deserialize(unsigned))
    psbt.set_utxo(CTxOut(600_000_000, CScript(bytes.fromhex("00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1"))), 1)
    d = P.decode_payload("psbt", psbt.to_base64(), P.KeyContext(pub), require_non_witness_utxo=False)
    assert [it.input_index for it in d.items] == [1]
    assert d.digests[0].hex() == "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
    assert d.summary["fee"] is None  # input 0 carries no previous output
