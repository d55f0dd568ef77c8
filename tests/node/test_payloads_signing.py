"""Transaction-aware signing end to end in memory: decode a payload, sign each digest with the
2-of-3 threshold key (simulate.sign with the BIP32 tweak), assemble, and let independent
software judge the result: python-bitcointx's script interpreter for Bitcoin, eth-account's
sender / signer recovery for Ethereum."""

from __future__ import annotations

import base64

import pytest

from appliance import payloads as P
from appliance.payloads import samples
from appliance.tss import simulate
from appliance.tss.ecdsa import Signature

DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # BIP173 regtest example
ETH_TO = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture(scope="module")
def shares(key_2of3):
    return key_2of3[:2]


def sign_all(shares, decoded):
    """What signer nodes do: one threshold signature per item, with the item's own tweak."""
    return [simulate.sign(shares, item.digest, tweak=item.tweak) for item in decoded.items]


def verify_inputs(tx_hex: str, psbt_b64: str, flags):
    """Run every input of the final transaction through python-bitcointx's interpreter."""
    from bitcointx.core import CTransaction
    from bitcointx.core.psbt import PartiallySignedTransaction
    from bitcointx.core.scripteval import VerifyScript

    tx = CTransaction.deserialize(bytes.fromhex(tx_hex))
    psbt = PartiallySignedTransaction.from_base64(psbt_b64)
    assert len(psbt.inputs) == len(tx.vin)
    for i, inp in enumerate(psbt.inputs):
        prev = inp.witness_utxo or inp.utxo.vout[tx.vin[i].prevout.n]
        witness = tx.wit.vtxinwit[i].scriptWitness if tx.has_witness() else None
        VerifyScript(tx.vin[i].scriptSig, prev.scriptPubKey, tx, i, flags=flags, amount=prev.nValue,
                     witness=witness)
    return tx


@pytest.fixture(scope="module")
def signed_psbt(key_2of3, shares):
    """A PSBT spending two P2WPKH outputs of the key: one to the root key, one to the child at
    m/0/5 (named by the input's BIP32 derivation record), paying DEST with change to m/1/0."""
    kc = P.KeyContext.of(key_2of3[0])
    child = kc.derive("m/0/5")
    change = kc.derive("m/1/0")
    psbt = samples.sample_psbt(
        [(kc.public_key, 60_000), (child.public_key, 45_000)],
        [(DEST, 80_000), (P.p2wpkh_address(change.public_key, "regtest"), 23_500)],
        network="regtest", derivations=[None, (kc.fingerprint, "m/0/5")],
        output_derivations=[None, (change.public_key, kc.fingerprint, "m/1/0")])
    decoded = P.decode_payload("psbt", psbt, kc, network="regtest")
    sigs = sign_all(shares, decoded)
    return kc, psbt, decoded, sigs, P.assemble(decoded, sigs)


def test_psbt_two_p2wpkh_inputs_signed_and_final_tx_passes_the_interpreter(signed_psbt):
    from bitcointx.core.psbt import PartiallySignedTransaction
    from bitcointx.core.scripteval import SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS

    kc, psbt, decoded, _, result = signed_psbt
    assert [it.input_index for it in decoded.items] == [0, 1]
    assert [it.path for it in decoded.items] == ["m", "m/0/5"]
    assert decoded.items[1].tweak == kc.derive("m/0/5").tweak != 0
    assert result["complete"] is True
    # the signed PSBT carries one partial signature per input, for our keys
    signed = PartiallySignedTransaction.from_base64(result["psbt"])
    for item, inp in zip(decoded.items, signed.inputs):
        assert [bytes(k) for k in inp.partial_sigs] == [item.public_key]
        assert next(iter(inp.partial_sigs.values()))[-1] == 1  # SIGHASH_ALL
    # the final transaction passes Bitcoin's script interpreter, input by input
    tx = verify_inputs(result["tx_hex"], psbt, {SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS})
    verify_inputs(result["tx_hex"], psbt, None)  # python-bitcointx's standard flags too
    assert result["txid"] == tx.GetTxid()[::-1].hex()


def test_psbt_final_tx_with_another_amount_fails_the_interpreter(signed_psbt):
    """Negative control: the interpreter really checks our signatures."""
    from bitcointx.core import CMutableTransaction, CTransaction
    from bitcointx.core.scripteval import (
        SCRIPT_VERIFY_P2SH,
        SCRIPT_VERIFY_WITNESS,
        VerifyScriptError,
    )

    _, psbt, _, _, result = signed_psbt
    tx = CMutableTransaction.from_tx(CTransaction.deserialize(bytes.fromhex(result["tx_hex"])))
    tx.vout[0].nValue += 1
    with pytest.raises(VerifyScriptError):
        verify_inputs(tx.to_immutable().serialize().hex(), psbt, {SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS})


def test_psbt_summary_shows_destination_change_and_fee(signed_psbt):
    _, _, decoded, _, _ = signed_psbt
    s = decoded.summary
    assert s["network"] == "regtest" and s["fee"] == 105_000 - 103_500 == 1_500
    assert [o["change"] for o in s["outputs"]] == [False, True]
    assert s["outputs"][1]["path"] == "m/1/0"
    assert s["destinations"] == [{"address": DEST, "amount": 80_000}]
    assert decoded.facts.amounts == {"BTC": 80_000} and decoded.facts.destinations == (DEST,)
    assert s["inputs"][1]["path"] == "m/0/5" and all(i["signing"] for i in s["inputs"])


def test_psbt_assembler_refuses_wrong_or_missing_signatures(signed_psbt):
    _, _, decoded, sigs, _ = signed_psbt
    with pytest.raises(P.SignatureMismatch):
        P.assemble(decoded, sigs[:1])
    with pytest.raises(P.SignatureMismatch):
        P.assemble(decoded, list(reversed(sigs)))


def test_psbt_partially_ours_is_signed_but_not_final(key_2of3, shares):
    """A foreign P2WPKH input (another key) stays for its owner: our input is signed, no tx yet."""
    from appliance.tss.group import Point

    kc = P.KeyContext.of(key_2of3[0])
    other = Point.generator_mul(777).to_bytes()
    psbt = samples.sample_psbt([(kc.public_key, 10_000), (other, 10_000)], [(DEST, 19_000)],
                               network="regtest")
    decoded = P.decode_payload("psbt", psbt, kc, network="regtest")
    assert [it.input_index for it in decoded.items] == [0]
    result = P.assemble(decoded, sign_all(shares, decoded))
    assert result["complete"] is False and "tx_hex" not in result
    assert base64.b64decode(result["psbt"]).startswith(b"psbt\xff")


@pytest.mark.parametrize("script_type", ["p2pkh", "p2sh-p2wpkh"])
def test_psbt_legacy_and_nested_segwit_inputs(key_2of3, shares, script_type):
    from bitcointx.core.scripteval import SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS

    kc = P.KeyContext(key_2of3[0].public_key, key_2of3[0].chain_code, "m/7")
    psbt = samples.sample_psbt([(kc.signer.public_key, 30_000)], [(DEST, 29_000)],
                               network="regtest", script_type=script_type)
    decoded = P.decode_payload("psbt", psbt, kc, network="regtest")
    assert decoded.summary["inputs"][0]["script_type"] == script_type
    result = P.assemble(decoded, sign_all(shares, decoded))
    assert result["complete"]
    verify_inputs(result["tx_hex"], psbt, {SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS})


def test_eip1559_raw_tx_sender_is_the_key_address(key_2of3, shares):
    from eth_account import Account
    from eth_account.typed_transactions import TypedTransaction
    from hexbytes import HexBytes

    kc = P.KeyContext(key_2of3[0].public_key, key_2of3[0].chain_code, "m/44/60/0/0/0")
    tx = samples.sample_eth_tx(chain_id=1, nonce=7, to=ETH_TO, value=12 * 10**16, gas=21_000,
                               max_fee_per_gas=40 * 10**9, max_priority_fee_per_gas=2 * 10**9)
    decoded = P.decode_payload("eth_tx", tx, kc)
    # eth-account computes the same signing hash from the same fields
    fields = {"type": 2, "chainId": 1, "nonce": 7, "to": ETH_TO, "value": 12 * 10**16, "gas": 21_000,
              "maxFeePerGas": 40 * 10**9, "maxPriorityFeePerGas": 2 * 10**9, "data": b"",
              "accessList": []}
    assert TypedTransaction.from_dict(fields).hash() == decoded.items[0].digest
    result = P.assemble(decoded, sign_all(shares, decoded))
    address = P.eth_address(kc.signer.public_key)
    assert decoded.summary["from"] == address
    assert Account.recover_transaction(result["raw_tx"]) == address
    parsed = TypedTransaction.from_bytes(HexBytes(result["raw_tx"])).as_dict()
    assert parsed["to"] == HexBytes(ETH_TO) and parsed["value"] == 12 * 10**16 and parsed["nonce"] == 7
    from eth_utils import keccak

    assert result["tx_hash"] == keccak(bytes.fromhex(result["raw_tx"])).hex()


def test_legacy_eip155_raw_tx_sender_is_the_key_address(key_2of3, shares):
    import rlp
    from eth_account import Account
    from eth_account._utils.legacy_transactions import serializable_unsigned_transaction_from_dict

    kc = P.KeyContext.of(key_2of3[0])
    data = samples.erc20_transfer_data(ETH_TO, 5 * 10**6)
    token = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    fields = {"chainId": 11155111, "nonce": 3, "gasPrice": 20 * 10**9, "gas": 60_000, "to": token,
              "value": 0, "data": data}
    unsigned = serializable_unsigned_transaction_from_dict(fields)
    tx_hex = rlp.encode(unsigned).hex()  # encoded by eth-account, not by us
    assert tx_hex == samples.sample_eth_tx(chain_id=11155111, nonce=3, gas_price=20 * 10**9,
                                           gas=60_000, to=token, data=data, tx_type=0)
    decoded = P.decode_payload("eth_tx", tx_hex, kc)
    assert decoded.items[0].digest == unsigned.hash()
    assert decoded.summary["method"] == "transfer"
    assert decoded.facts.amounts == {f"ERC20:{token}": 5 * 10**6}
    result = P.assemble(decoded, sign_all(shares, decoded))
    assert Account.recover_transaction(result["raw_tx"]) == P.eth_address(kc.public_key)
    v = rlp.decode(bytes.fromhex(result["raw_tx"]))[6]
    assert int.from_bytes(v, "big") in (11155111 * 2 + 35, 11155111 * 2 + 36)


def test_eip712_signer_is_the_key_address(key_2of3, shares):
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    kc = P.KeyContext.of(key_2of3[0])
    typed = samples.sample_mail(chain_id=1)
    decoded = P.decode_payload("eip712", typed, kc)
    result = P.assemble(decoded, sign_all(shares, decoded))
    sig = bytes.fromhex(result["signature"])
    assert len(sig) == 65 and sig[64] in (27, 28)
    recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=sig)
    assert recovered == P.eth_address(kc.public_key) == decoded.summary["signer"]


def test_substituted_digest_is_refused_before_signing(key_2of3):
    """A coordinator that claims another digest than the payload decodes to is caught by every
    honest signer, which recomputes the digest from the payload itself."""
    kc = P.KeyContext.of(key_2of3[0])
    payload = samples.sample_eth_tx(chain_id=1, to=ETH_TO, value=10**15)
    evil = samples.sample_eth_tx(chain_id=1, to="0x" + "66" * 20, value=10**18)
    decoded = P.decode_payload("eth_tx", payload, kc)
    evil_digest = P.decode_payload("eth_tx", evil, kc).digests[0]
    P.check_claimed_digests(decoded, decoded.digests)  # the honest claim passes
    P.check_claimed_digests(decoded, decoded.digests[0].hex(), [0])
    with pytest.raises(P.DigestMismatch) as e:
        P.check_claimed_digests(decoded, [evil_digest])
    assert e.value.code == "digest_mismatch"
    with pytest.raises(P.DigestMismatch):
        P.check_claimed_digests(decoded, decoded.digests + [evil_digest])
    with pytest.raises(P.DigestMismatch):
        P.check_claimed_digests(decoded, [b"\x00" * 31])
    with pytest.raises(P.DigestMismatch) as e:
        P.check_claimed_digests(decoded, decoded.digests, [5])
    assert e.value.code == "tweak_mismatch"


def test_signature_for_another_digest_is_not_assembled(key_2of3, shares):
    kc = P.KeyContext.of(key_2of3[0])
    decoded = P.decode_payload("eip712", samples.sample_mail(), kc)
    other = simulate.sign(shares, b"\x11" * 32)
    with pytest.raises(P.SignatureMismatch):
        P.assemble(decoded, [other])
    with pytest.raises(P.SignatureMismatch):
        P.assemble(decoded, [(other.r, other.s)])
    assert isinstance(other, Signature)
