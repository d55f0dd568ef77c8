"""Transaction rules over decoded payloads: each refusal with its reason code."""

from __future__ import annotations

import pytest

from appliance import payloads as P
from appliance.payloads import samples
from appliance.tss.group import Point

KEY = P.KeyContext(Point.generator_mul(0xBEEF).to_bytes(), bytes(32))
DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
DEST_SCRIPT = bytes.fromhex("0014751e76e8199196d454941c45d1b3a323f1433bd6")  # DEST on any network
ETH_TO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
TOKEN = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
ETHER = 10**18


def eth(**kw):
    kw.setdefault("to", ETH_TO)
    kw.setdefault("value", ETHER // 10)
    return P.decode_payload("eth_tx", samples.sample_eth_tx(**kw), KEY)


def psbt(amount=40_000, fee=1_000, network="regtest", change=True, **kw):
    ch = KEY.derive("m/1/0")
    outs = [(DEST_SCRIPT, amount)]
    derivs = None
    if change:
        outs.append((P.p2wpkh_address(ch.public_key, network), 9_000))
        derivs = [None, (ch.public_key, KEY.fingerprint, "m/1/0")]
    total = amount + fee + (9_000 if change else 0)
    b64 = samples.sample_psbt([(KEY.public_key, total)], outs, network=network,
                              output_derivations=derivs, **kw)
    return P.decode_payload("psbt", b64, KEY, network=network,
                            require_non_witness_utxo=kw.get("non_witness_utxo", True))


def decide(decoded, usage=None, **rules):
    return P.evaluate_tx_rules(decoded, P.TxRules(**rules), usage)


def refused(decoded, code, usage=None, **rules):
    d = decide(decoded, usage, **rules)
    assert not d.allowed and d.code == code, d
    return d


def test_no_rules_allow_a_transaction():
    d = decide(eth())
    assert d.allowed and d.code == "ok" and d.to_dict()["violations"] == []


def test_raw_digest_forbidden_by_default_allowed_when_permitted():
    digest = P.decode_digest(b"\x07" * 32, KEY)
    refused(digest, "raw_digest_forbidden")
    assert P.evaluate_tx_rules(digest, P.TxRules.permissive()).allowed
    assert P.TxRules().allow_raw_digest is False


def test_destination_allow_list():
    d = refused(eth(), "destination_not_allowed", allowed_destinations=["0x" + "11" * 20])
    assert ETH_TO in d.message
    assert decide(eth(), allowed_destinations=[ETH_TO.lower()]).allowed  # any case matches
    # an ERC-20 transfer's destination is the recipient, not the token contract
    tx = eth(to=TOKEN, value=0, data=samples.erc20_transfer_data(ETH_TO, 5))
    assert decide(tx, allowed_destinations=[ETH_TO]).allowed
    refused(tx, "destination_not_allowed", allowed_destinations=[TOKEN])
    # a contract creation has no destination: an allow-list refuses it
    refused(eth(to=None, data=b"\x00"), "destination_not_allowed", allowed_destinations=[ETH_TO])
    # Bitcoin: change back to our own key is not a destination
    assert decide(psbt(), allowed_destinations=[DEST]).allowed
    refused(psbt(change=False, amount=49_000), "destination_not_allowed",
            allowed_destinations=["bcrt1q" + "q" * 38])


def test_destination_deny_list():
    refused(eth(), "destination_denied", denied_destinations=[ETH_TO])
    refused(psbt(), "destination_denied", denied_destinations=[DEST.upper()])


def test_amount_limits_per_transaction_and_window():
    limits = {"ETH": {"per_transaction": ETHER // 20}}
    d = refused(eth(), "amount_over_limit", limits=limits)
    assert "per-transaction" in d.message
    assert decide(eth(value=ETHER // 20), limits=limits).allowed
    window = {"ETH": {"per_window": ETHER}}
    assert decide(eth(), {"ETH": ETHER - ETHER // 10}, limits=window).allowed
    refused(eth(), "window_limit_exceeded", {"ETH": ETHER - ETHER // 10 + 1}, limits=window)
    # per asset: a token limit counts the token, not the (zero) ether value
    tx = eth(to=TOKEN, value=0, data=samples.erc20_transfer_data(ETH_TO, 10**9))
    refused(tx, "amount_over_limit", limits={f"erc20:{TOKEN.lower()}": {"per_transaction": 10**6}})
    approve = eth(to=TOKEN, value=0, data=samples.erc20_approve_data(ETH_TO, 2**256 - 1))
    refused(approve, "amount_over_limit", limits={f"ERC20:{TOKEN}": {"per_transaction": 10**6}})
    # Bitcoin: only what leaves (not change) counts
    assert decide(psbt(amount=40_000), limits={"BTC": {"per_transaction": 40_000}}).allowed
    refused(psbt(amount=40_001), "amount_over_limit", limits={"btc": {"per_transaction": 40_000}})
    refused(psbt(), "window_limit_exceeded", {"BTC": 60_001}, limits={"BTC": {"per_window": 100_000}})


def test_permit_typed_data_counts_as_an_approval():
    permit = samples.sample_permit(chain_id=1, token=TOKEN, owner=P.eth_address(KEY.public_key),
                                   spender=ETH_TO, value=10**12)
    decoded = P.decode_payload("eip712", permit, KEY)
    refused(decoded, "amount_over_limit", limits={f"ERC20:{TOKEN}": {"per_transaction": 10**6}})
    refused(decoded, "destination_not_allowed", allowed_destinations=[TOKEN])


def test_chain_and_network_rules():
    refused(eth(chain_id=5), "chain_not_allowed", allowed_chain_ids=[1])
    assert decide(eth(chain_id=1), allowed_chain_ids=[1]).allowed
    mail = P.decode_payload("eip712", samples.sample_mail(chain_id=137), KEY)
    refused(mail, "chain_not_allowed", allowed_chain_ids=[1])
    no_chain = samples.sample_mail()
    del no_chain["domain"]["chainId"]
    no_chain["types"]["EIP712Domain"] = [f for f in no_chain["types"]["EIP712Domain"]
                                         if f["name"] != "chainId"]
    refused(P.decode_payload("eip712", no_chain, KEY), "chain_not_allowed", allowed_chain_ids=[1])
    refused(psbt(network="testnet"), "chain_not_allowed", allowed_networks=["mainnet"])
    assert decide(psbt(network="mainnet"), allowed_networks=["mainnet"], allowed_chain_ids=[1]).allowed


def test_fee_rules():
    tx = eth(gas=21_000, max_fee_per_gas=100 * 10**9)  # 0.0021 ETH at most
    refused(tx, "fee_too_high", max_fee={"ETH": 2 * 10**15})
    assert decide(tx, max_fee={"ETH": 21_000 * 100 * 10**9}).allowed
    refused(psbt(fee=5_000), "fee_too_high", max_fee={"BTC": 4_999})
    assert decide(psbt(fee=5_000), max_fee={"BTC": 5_000}).allowed
    # a foreign input without its previous output: the fee is unknown, a fee cap refuses
    b64 = samples.sample_psbt([(KEY.public_key, 10_000), (Point.generator_mul(5).to_bytes(), 10_000)],
                              [(DEST, 19_000)], network="regtest")
    from bitcointx.core.psbt import PartiallySignedTransaction

    p = PartiallySignedTransaction.from_base64(b64)
    p.inputs[1].set_utxo(None, p.unsigned_tx)
    decoded = P.decode_payload("psbt", p.to_base64(), KEY, network="regtest")
    assert decoded.facts.fee is None and decoded.summary["warnings"]
    refused(decoded, "fee_unknown", max_fee={"BTC": 10_000})


def test_payload_type_asset_and_contract_call_rules():
    refused(eth(), "payload_type_not_allowed", allowed_payload_types=["psbt"])
    refused(eth(), "asset_not_allowed", allowed_assets=["BTC"])
    tx = eth(to=TOKEN, value=0, data=bytes.fromhex("deadbeef") + bytes(32))
    refused(tx, "contract_call_not_allowed", allow_contract_calls=False)
    assert decide(tx).allowed


def test_every_violation_is_listed():
    d = refused(eth(chain_id=5), "chain_not_allowed", allowed_chain_ids=[1],
                allowed_destinations=[TOKEN], limits={"ETH": {"per_transaction": 1}},
                max_fee={"ETH": 1})
    assert [v.code for v in d.violations] == [
        "chain_not_allowed", "destination_not_allowed", "amount_over_limit", "fee_too_high"]


def test_rules_from_and_to_dict():
    conf = {"allow_raw_digest": False, "allowed_destinations": [ETH_TO.lower(), DEST],
            "limits": {"eth": {"per_transaction": "1000", "per_window": 5000}},
            "allowed_chain_ids": [1, 11155111], "allowed_networks": ["mainnet"],
            "max_fee": {"BTC": 20_000}, "window_seconds": 3600}
    rules = P.TxRules.from_dict(conf)
    assert ETH_TO in rules.allowed_destinations and rules.limits["ETH"].per_transaction == 1000
    assert P.TxRules.from_dict(rules.to_dict()) == rules
    assert P.TxRules.from_dict(None) == P.TxRules()
    for bad in ({"allow_raw": True}, {"limits": {"ETH": {"per_tx": 1}}},
                {"limits": {"ETH": {"per_transaction": -1}}}, {"allowed_networks": ["moon"]},
                {"allowed_chain_ids": [0]}, {"allowed_destinations": "0xabc"},
                {"allowed_destinations": ["0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]},
                {"allowed_payload_types": ["digest"]}, {"allow_raw_digest": "yes"},
                {"window_seconds": 0}, {"limits": {"ERC20:0x12": {}}}, []):
        with pytest.raises(P.RulesError):
            P.TxRules.from_dict(bad)


def test_policy_facts_are_json_ready():
    import json

    facts = P.policy_facts(eth(to=TOKEN, value=0, data=samples.erc20_transfer_data(ETH_TO, 5)))
    out = json.loads(json.dumps(facts.to_dict()))
    assert out["chain_id"] == 1 and out["amounts"] == {f"ERC20:{TOKEN}": "5"}
    assert out["destinations"] == [ETH_TO] and out["method"] == "transfer"
    assert json.dumps(psbt().to_dict())
