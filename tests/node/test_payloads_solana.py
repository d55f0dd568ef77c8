"""Solana messages (``sol_tx``): real messages built by solders (the Solana SDK's Rust types),
decoded for an ed25519 key, signed by a 2-of-3 FROST Ed25519 key, and the signed transaction
checked by solders' own verification; the facts the rules see, and exact refusals."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import Message, MessageV0, from_bytes_versioned, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction

from api.errors import error_status
from appliance import payloads as P
from appliance.audit.records import check_fields
from appliance.payloads.solana import MAX_MESSAGE_BYTES, TOKEN_PROGRAM
from appliance.signing.reading import summary_text
from appliance.tss.frost import simulate as frost_sim

BLOCKHASH = Hash.from_string("EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N")
DEST = Pubkey.from_string("9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM")
MINT = Pubkey.from_string("EPjFWrd5AufqSNqeM2qN1xzybapC8G4wEGGkZwyTDt1v")  # USDC's mint
UNKNOWN_PROGRAM = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")


@pytest.fixture(scope="module")
def ed_key():
    return frost_sim.keygen(3, 2, "ed25519")


@pytest.fixture(scope="module")
def kc(ed_key):
    return P.KeyContext(ed_key[0].group_public_key, scheme="ed25519")


@pytest.fixture(scope="module")
def me(kc):
    return Pubkey(kc.public_key)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def legacy(me, *ixs, payer=None) -> str:
    return b64(bytes(Message.new_with_blockhash(list(ixs), payer or me, BLOCKHASH)))


def refused(payload, key, code, message=None):
    with pytest.raises(P.PayloadError) as e:
        P.decode_payload("sol_tx", payload, key)
    assert error_status(e.value) in (400, 409)
    assert e.value.code == code
    if message is not None:
        assert e.value.message == message
    return e.value.message


def test_sol_transfer_decoded_signed_by_frost_and_verified_by_solders(ed_key, kc, me):
    msg = Message.new_with_blockhash([transfer(TransferParams(from_pubkey=me, to_pubkey=DEST, lamports=1_500_000))],
                                     me, BLOCKHASH)
    raw = bytes(msg)
    d = P.decode_payload("sol_tx", b64(raw), kc)
    assert [(t.asset, t.amount, t.destination) for t in d.facts.transfers] == [("SOL", 1_500_000, str(DEST))]
    assert (d.facts.chain, d.facts.fee, d.facts.fee_asset, d.facts.unknown_call) == ("solana", 5000, "SOL", False)
    s = d.summary
    assert (s["version"], s["fee_payer"], s["signers"], s["recent_blockhash"]) == (
        "legacy", str(me), [str(me)], str(BLOCKHASH))
    assert s["programs"] == ["11111111111111111111111111111111"]
    assert s["instructions"][0]["kind"] == "transfer" and s["instructions"][0]["lamports"] == "1500000"
    item = d.items[0]
    assert (item.scheme, item.message, item.digest) == ("ed25519", raw, hashlib.sha256(raw).digest())
    assert item.signed_bytes == raw and item.to_dict()["scheme"] == "ed25519"

    sig = frost_sim.sign(ed_key[:2], item.signed_bytes)
    out = P.assemble(d, [sig])
    assert out["complete"] is True and out["signature"] == str(Signature(sig))
    tx = Transaction.from_bytes(base64.b64decode(out["transaction"]))
    tx.verify()  # solders: every signature against the message (Rust ed25519-dalek)
    assert tx.message == msg

    with pytest.raises(P.SignatureMismatch) as e:
        P.assemble(d, [bytes(64)])
    assert (e.value.code, e.value.message) == ("signature_mismatch",
                                               "the Ed25519 signature does not verify for the message")


def test_v0_message_with_lookup_table_and_spl_transfer_checked(ed_key, kc, me):
    src, table_addr = Pubkey.new_unique(), Pubkey.new_unique()
    far = Pubkey.new_unique()  # only reachable through the lookup table
    token = Instruction(Pubkey.from_string(TOKEN_PROGRAM),
                        bytes([12]) + (2_500_000).to_bytes(8, "little") + bytes([6]),
                        [AccountMeta(src, False, True), AccountMeta(MINT, False, False),
                         AccountMeta(DEST, False, True), AccountMeta(me, True, False)])
    sol = transfer(TransferParams(from_pubkey=me, to_pubkey=far, lamports=7))
    msg = MessageV0.try_compile(me, [token, sol], [AddressLookupTableAccount(table_addr, [far])], BLOCKHASH)
    raw = to_bytes_versioned(msg)
    d = P.decode_payload("sol_tx", b64(raw), kc)
    assert d.summary["version"] == "v0"
    assert [(t.asset, t.amount, t.destination) for t in d.facts.transfers] == [
        (f"SPL:{MINT}", 2_500_000, str(DEST)), ("SOL", 7, f"unresolved:{table_addr}/w0")]
    assert d.summary["address_table_lookups"] == [{"table": str(table_addr), "writable_indexes": [0],
                                                    "readonly_indexes": []}]
    assert d.summary["instructions"][0]["decimals"] == 6
    assert any("cannot be resolved offline" in w for w in d.summary["warnings"])
    # rules: the unresolved destination is on no allow-list; asset allow-list and limits apply
    rules = P.TxRules(allowed_destinations=[str(DEST)])
    assert P.evaluate_tx_rules(d, rules).code == "destination_not_allowed"
    assert P.evaluate_tx_rules(d, P.TxRules(allowed_assets=["SOL"])).message == f"SPL:{MINT} is not an allowed asset"
    assert P.evaluate_tx_rules(d, P.TxRules(allowed_assets=["SOL", f"spl:{MINT}"])).allowed
    assert P.evaluate_tx_rules(d, P.TxRules(limits={f"SPL:{MINT}": {"per_transaction": 2_000_000}})).code == \
        "amount_over_limit"

    sig = frost_sim.sign(ed_key[:2], d.items[0].signed_bytes)
    tx = VersionedTransaction.from_bytes(base64.b64decode(P.assemble(d, [sig])["transaction"]))
    assert tx.verify_with_results() == [True]


def test_spl_transfer_without_mint_compute_budget_fee_and_unknown_program(kc, me):
    token = Instruction(Pubkey.from_string(TOKEN_PROGRAM), bytes([3]) + (10).to_bytes(8, "little"),
                        [AccountMeta(Pubkey.new_unique(), False, True), AccountMeta(DEST, False, True),
                         AccountMeta(me, True, False)])
    swap = Instruction(UNKNOWN_PROGRAM, b"\x01\x02", [AccountMeta(me, True, True)])
    d = P.decode_payload("sol_tx", legacy(me, set_compute_unit_limit(300_000), set_compute_unit_price(10_001),
                                          token, swap), kc)
    assert [(t.asset, t.amount) for t in d.facts.transfers] == [("SPL:unknown", 10)]
    assert d.facts.fee == 5000 + 3001  # ceil(300 000 * 10 001 / 10^6)
    assert (d.summary["compute_unit_limit"], d.summary["compute_unit_price_micro_lamports"]) == (300_000, 10_001)
    assert d.facts.unknown_call and d.summary["unknown_programs"] == [str(UNKNOWN_PROGRAM)]
    assert [i["program"] for i in d.summary["instructions"]] == ["compute-budget", "compute-budget", "spl-token", None]
    decision = P.evaluate_tx_rules(d, P.TxRules(allow_contract_calls=False))
    assert (decision.code, decision.message) == ("contract_call_not_allowed",
                                                 f"call to {UNKNOWN_PROGRAM} with an undecoded method")
    assert P.evaluate_tx_rules(d, P.TxRules(max_fee={"SOL": 8000})).code == "fee_too_high"
    assert P.evaluate_tx_rules(d, P.TxRules(allowed_assets=["SOL", f"SPL:{MINT}"])).code == "asset_not_allowed"


def test_our_key_must_sign(kc, me):
    other = Pubkey.new_unique()
    ix = transfer(TransferParams(from_pubkey=other, to_pubkey=DEST, lamports=1))
    refused(legacy(me, ix, payer=other), kc, "key_not_signer",
            f"this key ({me}) is not among the message's signers")
    listed = Instruction(UNKNOWN_PROGRAM, b"", [AccountMeta(me, False, True)])
    refused(legacy(me, ix, listed, payer=other), kc, "key_not_signer",
            f"this key ({me}) is in the message but not as a signer")
    bip340 = P.KeyContext(bytes.fromhex("d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d"),
                          scheme="schnorr-bip340")
    refused(legacy(me, ix), bip340, "scheme_mismatch", "a sol_tx is signed by an ed25519 key, not a schnorr-bip340 key")


def test_malformed_messages_refused_with_exact_codes(kc, me):
    raw = base64.b64decode(legacy(me, transfer(TransferParams(from_pubkey=me, to_pubkey=DEST, lamports=5))))
    refused(b64(raw[:-1]), kc, "malformed_sol_tx", "truncated message: instruction data")
    refused(b64(raw + b"\x00"), kc, "malformed_sol_tx", "1 bytes after the message")
    # compact-u16 3 (account keys) spelled in two bytes: 0x83 0x00
    refused(b64(raw[:3] + b"\x83\x00" + raw[4:]), kc, "malformed_sol_tx", "account keys: non-canonical compact-u16")
    refused(b64(b"\x81" + raw), kc, "unsupported_tx_type", "Solana message version 1 is not supported (legacy, v0)")
    refused(b64(raw[:4] + raw[4:36] + raw[4:36] + raw[68:]), kc, "malformed_sol_tx", "an account key appears twice")
    no_signer = bytes([0]) + raw[1:]
    refused(b64(no_signer), kc, "malformed_sol_tx", "the header's signer count does not fit the account keys")
    # a system transfer whose data has a trailing byte: refused, never half-decoded
    bad = Instruction(Pubkey.from_string("11111111111111111111111111111111"),
                      bytes([2, 0, 0, 0]) + (5).to_bytes(8, "little") + b"\x00",
                      [AccountMeta(me, True, True), AccountMeta(DEST, False, True)])
    refused(legacy(me, bad), kc, "malformed_sol_tx", "system transfer: 13 data bytes, expected 12")
    refused("A" * (MAX_MESSAGE_BYTES * 2), kc, "payload_too_large")
    refused("not base64!", kc, "malformed_sol_tx", "a sol_tx payload is the base64 of a Solana message")
    refused({"message": "x"}, kc, "wrong_type", "a sol_tx payload is a base64 string")


def test_sol_tx_is_a_payload_and_transaction_type():
    assert "sol_tx" in P.PAYLOAD_TYPES and "sol_tx" in P.TRANSACTION_TYPES
    assert P.TxRules(allowed_payload_types=["sol_tx"]).allowed_payload_types == frozenset({"sol_tx"})
    with pytest.raises(P.RulesError):
        P.TxRules(allowed_assets=["SPL:not-a-mint"])


def test_truncated_at_every_length_and_random_corruptions_only_raise_payload_errors(kc, me):
    """Every prefix is refused; random byte changes either decode (and re-check as solders
    reads them) or raise PayloadError, never anything else."""
    token = Instruction(Pubkey.from_string(TOKEN_PROGRAM), bytes([12]) + (9).to_bytes(8, "little") + bytes([6]),
                        [AccountMeta(Pubkey.new_unique(), False, True), AccountMeta(MINT, False, False),
                         AccountMeta(DEST, False, True), AccountMeta(me, True, False)])
    msg = MessageV0.try_compile(me, [set_compute_unit_price(5), token,
                                     transfer(TransferParams(from_pubkey=me, to_pubkey=DEST, lamports=3))],
                                [AddressLookupTableAccount(Pubkey.new_unique(), [Pubkey.new_unique()])], BLOCKHASH)
    raw = to_bytes_versioned(msg)
    for n in range(len(raw)):
        with pytest.raises(P.PayloadError):
            P.decode_payload("sol_tx", raw[:n], kc)
    rnd, accepted = random.Random(16), 0
    for _ in range(600):
        m = bytearray(raw)
        for _ in range(rnd.choice((1, 1, 2))):
            m[rnd.randrange(len(m))] = rnd.randrange(256)
        try:
            d = P.decode_payload("sol_tx", bytes(m), kc)
        except P.PayloadError:
            continue
        # what we accept, Solana's own parser reads alike: the same static keys and instructions
        theirs = from_bytes_versioned(bytes(m))
        assert [str(k) for k in theirs.account_keys] == [a["address"] for a in d.summary["accounts"]][
            :len(theirs.account_keys)]
        assert len(theirs.instructions) == len(d.summary["instructions"])
        accepted += 1
    assert accepted > 100  # the corruptions reach the decoders, not only the parser


def test_audit_line_of_a_solana_transfer_passes_the_audit_secret_filter(kc, me):
    """The audit entry's reason names base58 addresses by their ends: a whole one (43-44
    characters of mixed case and digits) is what the audit log's filter refuses as key material,
    which redacted the whole line."""
    token = Instruction(Pubkey.from_string(TOKEN_PROGRAM), bytes([12]) + (5).to_bytes(8, "little") + bytes([6]),
                        [AccountMeta(Pubkey.new_unique(), False, True), AccountMeta(MINT, False, False),
                         AccountMeta(DEST, False, True), AccountMeta(me, True, False)])
    d = P.decode_payload("sol_tx", legacy(me, token), kc)
    line = summary_text(d)
    assert line == "sol_tx; solana; transfer 5 SPL:EPjFWrd5..ZwyTDt1v to 9WzDXwBb..9zYtAWWM; fee 5000 SOL; 1 signature(s)"
    assert check_fields("initiator", "payload_decoded", None, None, None, "decoded", line)[-1] == line
