"""PSBT P2TR key-path inputs for schnorr-bip340 keys: BIP341 sighashes (against BIP341's
wallet-test-vectors.json), which inputs are ours, mixed PSBTs with an ECDSA key, signing with
a 2-of-3 FROST key, finalizing, and the exact refusals."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from bitcointx.core import CTransaction, CTxOut
from bitcointx.core.psbt import PartiallySignedTransaction, PSBT_UnknownTypeData
from bitcointx.core.script import CScript
from bitcointx.core.scripteval import SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS, VerifyScript
from coincurve import PublicKeyXOnly

from api.errors import error_status
from appliance import payloads as P
from appliance.payloads import psbt_taproot, samples
from appliance.tss import simulate as ecdsa_sim
from appliance.tss.frost import simulate as frost_sim
from appliance.tss.frost import taproot as bip340
from appliance.tss.group import Point

VECTORS = Path(__file__).parents[1] / "data" / "frost" / "bip341-wallet-test-vectors.json"
DEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
ROOT = bytes(range(32))  # a script tree's merkle root (the tree itself is not needed for key path)


def test_bip341_key_path_sighashes_match_the_wallet_test_vectors():
    """Every keyPathSpending input of BIP341's vectors: DEFAULT, ALL, NONE, SINGLE and the
    ANYONECANPAY variants (python-bitcointx's SignatureHashSchnorr, through our checks)."""
    data = json.loads(VECTORS.read_text())
    seen = set()
    for case in data["keyPathSpending"]:
        tx = CTransaction.deserialize(bytes.fromhex(case["given"]["rawUnsignedTx"]))
        spent = [CTxOut(u["amountSats"], CScript(bytes.fromhex(u["scriptPubKey"])))
                 for u in case["given"]["utxosSpent"]]
        for inp in case["inputSpending"]:
            i, ht = inp["given"]["txinIndex"], inp["given"]["hashType"]
            assert psbt_taproot.sighash(tx, i, spent, ht).hex() == inp["intermediary"]["sigHash"]
            # the vector's internal key and merkle root give the output key it spends
            internal = bytes.fromhex(inp["intermediary"]["internalPubkey"])
            root = bytes.fromhex(inp["given"]["merkleRoot"] or "")
            assert P.taproot_output_key(internal, root) == bytes(spent[i].scriptPubKey[2:34])
            # and its witness signature verifies (libsecp256k1) over our sighash
            sig = bytes.fromhex(inp["expected"]["witness"][0])
            assert psbt_taproot.verify(P.taproot_output_key(internal, root),
                                       bytes.fromhex(inp["intermediary"]["sigHash"]), sig[:64])
            seen.add(ht)
    assert seen == {0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83}


def test_sighash_refuses_bad_hash_types_and_single_without_output():
    data = json.loads(VECTORS.read_text())["keyPathSpending"][0]["given"]
    tx = CTransaction.deserialize(bytes.fromhex(data["rawUnsignedTx"]))
    spent = [CTxOut(u["amountSats"], CScript(bytes.fromhex(u["scriptPubKey"]))) for u in data["utxosSpent"]]
    with pytest.raises(P.PayloadError) as e:
        psbt_taproot.sighash(tx, 0, spent, 0x04)
    assert (e.value.code, e.value.message) == ("sighash_not_allowed", "0x04 is not a BIP341 hash type")
    assert len(tx.vout) == 2
    # input 2 has no output 2: python-bitcointx 1.1.5 checks ``outIdx > len(vout)`` and raises
    # IndexError here (an off-by-one); BIP341 says fail
    with pytest.raises(P.PayloadError) as e:
        psbt_taproot.sighash(tx, 2, spent, 0x03)
    assert (e.value.code, e.value.message) == ("sighash_not_allowed",
                                               "input 2: SIGHASH_SINGLE without a matching output")


# ---------------------------------------------------------------------------------------
# keys


@pytest.fixture(scope="module")
def frost_key():
    """A 2-of-3 schnorr-bip340 key (FROST DKG, in memory)."""
    return frost_sim.keygen(3, 2, "schnorr-bip340")


@pytest.fixture(scope="module")
def tkey(frost_key):
    return P.KeyContext(frost_key[0].group_public_key, scheme="schnorr-bip340")


def refused(payload, key, **kw):
    kw.setdefault("network", "regtest")
    with pytest.raises(P.PayloadError) as e:
        P.decode_payload("psbt", payload, key, **kw)
    assert error_status(e.value) in (400, 409)
    return e.value.code, e.value.message


def frost_sign(shares, decoded):
    return [frost_sim.sign(shares[:2], item.digest, merkle_root=item.merkle_root) for item in decoded.items]


def test_key_context_for_a_bip340_key(frost_key, tkey):
    compressed = frost_key[0].group_public_key
    assert tkey.public_key == compressed[1:] and len(tkey.public_key) == 32
    assert P.KeyContext(tkey.public_key, scheme="schnorr-bip340") == tkey
    assert tkey.output_key == bip340.output_key(Point.from_bytes(compressed), b"").to_bytes()[1:]
    with pytest.raises(P.PayloadError) as e:
        tkey.derive("m/0")
    assert (e.value.code, e.value.message) == ("not_supported_for_scheme",
                                               "derivation paths are not supported for schnorr-bip340 keys yet")
    with pytest.raises(P.PayloadError) as e:
        P.KeyContext(b"\x00" * 31, scheme="schnorr-bip340")
    assert e.value.code == "bad_key"


# ---------------------------------------------------------------------------------------
# decode, sign, finalize


def test_taproot_key_path_inputs_signed_by_a_frost_key_and_finalized(frost_key, tkey):
    """Two P2TR inputs of the key (key-path only; a script tree's root, SIGHASH_ALL), change
    back to the key's P2TR output: decoded, signed with FROST 2-of-3, finalized; each input's
    key-path signature verifies under the output key in the spent script (libsecp256k1 and
    the project's BIP340 verifier)."""
    x = tkey.public_key
    psbt = samples.sample_psbt([(x, 50_000, "p2tr-bip340"), (x, 30_000, "p2tr-bip340")],
                               [(DEST, 60_000), (samples.p2tr_bip340_script(x), 19_000)],
                               merkle_roots=[None, ROOT])
    d = P.decode_payload("psbt", psbt, tkey, network="regtest")
    assert [(i.input_index, i.scheme, i.merkle_root, i.sighash_type) for i in d.items] == [
        (0, "schnorr-bip340", b"", 0), (1, "schnorr-bip340", ROOT, 0)]
    assert d.summary["key_scheme"] == "schnorr-bip340"
    assert [(r["key_scheme"], r["ours"], r["signing"], r["merkle_root"]) for r in d.summary["inputs"]] == [
        ("schnorr-bip340", True, True, ""), ("schnorr-bip340", True, True, ROOT.hex())]
    assert d.summary["outputs"][1]["change"] is True and d.summary["fee"] == 1000
    assert [t.destination for t in d.facts.transfers] == [DEST]
    assert d.items[1].to_dict()["output_key"] == P.taproot_output_key(x, ROOT).hex()

    out = P.assemble(d, frost_sign(frost_key, d))
    assert out["complete"] is True
    tx = CTransaction.deserialize(bytes.fromhex(out["tx_hex"]))
    spent = [CTxOut(50_000, CScript(samples.p2tr_bip340_script(x))),
             CTxOut(30_000, CScript(samples.p2tr_bip340_script(x, ROOT)))]
    for i in (0, 1):
        stack = tx.wit.vtxinwit[i].scriptWitness.stack
        assert len(stack) == 1 and len(stack[0]) == 64  # SIGHASH_DEFAULT: 64 bytes
        digest = psbt_taproot.sighash(tx, i, spent, 0)
        q = bytes(spent[i].scriptPubKey[2:34])
        assert PublicKeyXOnly(q).verify(bytes(stack[0]), digest)
        assert bip340.verify(q, digest, bytes(stack[0]))


def test_sighash_all_signature_carries_its_hash_type(frost_key, tkey):
    x = tkey.public_key
    psbt = samples.sample_psbt([(x, 50_000, "p2tr-bip340")], [(DEST, 49_000)], sighash_type=1)
    d = P.decode_payload("psbt", psbt, tkey, network="regtest")
    assert d.items[0].sighash_type == 1
    out = P.assemble(d, frost_sign(frost_key, d))
    stack = CTransaction.deserialize(bytes.fromhex(out["tx_hex"])).wit.vtxinwit[0].scriptWitness.stack
    assert len(stack[0]) == 65 and stack[0][64] == 1


def test_mixed_psbt_signed_by_an_ecdsa_key_and_a_bip340_key(key_2of3, frost_key, tkey):
    """A P2WPKH input of an ECDSA key and a P2TR input of a BIP340 key: decode_psbt_keys tells
    each key its inputs; the ECDSA request signs first (incomplete), the BIP340 request on the
    result completes and finalizes it; the P2WPKH input passes python-bitcointx's interpreter."""
    ekey = P.KeyContext.of(key_2of3[0])
    psbt = samples.sample_psbt([(ekey.public_key, 40_000, "p2wpkh"), (tkey.public_key, 50_000, "p2tr-bip340")],
                               [(DEST, 88_000)], non_witness_utxo=False)
    plan = P.decode_psbt_keys(psbt, [ekey, tkey], network="regtest", require_non_witness_utxo=False)
    assert {n: [i.input_index for i in d.items] for n, d in plan.items()} == {0: [0], 1: [1]}
    assert [(r["key_scheme"], r["ours"]) for r in plan[0].summary["inputs"]] == [
        ("ecdsa-secp256k1", True), ("schnorr-bip340", False)]

    first = P.assemble(plan[0], [ecdsa_sim.sign(key_2of3[:2], plan[0].items[0].digest)])
    assert first["complete"] is False
    d = P.decode_payload("psbt", first["psbt"], tkey, network="regtest")
    out = P.assemble(d, frost_sign(frost_key, d))
    assert out["complete"] is True
    tx = CTransaction.deserialize(bytes.fromhex(out["tx_hex"]))
    prev = CTxOut(40_000, CScript(samples.p2wpkh_script(ekey.public_key)))
    VerifyScript(tx.vin[0].scriptSig, prev.scriptPubKey, tx, 0, flags={SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS},
                 amount=40_000, witness=tx.wit.vtxinwit[0].scriptWitness)
    assert len(tx.wit.vtxinwit[1].scriptWitness.stack[0]) == 64


def test_assemble_refuses_a_signature_that_does_not_verify(frost_key, tkey):
    x = tkey.public_key
    psbt = samples.sample_psbt([(x, 50_000, "p2tr-bip340")], [(DEST, 49_000)], merkle_roots=[ROOT])
    d = P.decode_payload("psbt", psbt, tkey, network="regtest")
    # signed for the key-path-only output key instead of the one with the script root
    wrong = frost_sim.sign(frost_key[:2], d.items[0].digest, merkle_root=b"")
    with pytest.raises(P.SignatureMismatch) as e:
        P.assemble(d, [wrong])
    assert (e.value.code, e.value.message) == (
        "signature_mismatch", "input 0: the BIP340 signature does not verify for its sighash and output key")


# ---------------------------------------------------------------------------------------
# refusals


def _set_field(psbt_b64: str, index: int, key_type: int, value: bytes) -> str:
    psbt = PartiallySignedTransaction.from_base64(psbt_b64)
    inp = psbt.inputs[index]
    inp.unknown_fields = [f for f in inp.unknown_fields if f.key_type != key_type]
    inp.unknown_fields.append(PSBT_UnknownTypeData(key_type=key_type, key_data=b"", value=value))
    return psbt.to_base64()


def test_refusals_have_exact_codes(key_2of3, tkey):
    x, other = tkey.public_key, Point.generator_mul(4242).to_bytes()
    # another input without its previous output: the taproot sighash cannot be computed
    psbt = samples.sample_psbt([(x, 50_000, "p2tr-bip340"), (other, 10_000, "p2wpkh")], [(DEST, 59_000)])
    p = PartiallySignedTransaction.from_base64(psbt)
    p.inputs[1].set_utxo(None, p.unsigned_tx)
    assert refused(p.to_base64(), tkey) == (
        "missing_spent_outputs", "input 1 carries no previous output: a taproot signature hash commits to "
        "every input's amount and script")
    # internal key is ours, merkle root field changed: not output_key(P, root)
    psbt = samples.sample_psbt([(x, 50_000, "p2tr-bip340")], [(DEST, 49_000)], merkle_roots=[ROOT])
    bad = _set_field(psbt, 0, 0x18, b"\x07" * 32)
    assert refused(bad, tkey) == (
        "taproot_key_mismatch", "input 0 names this key as its internal key but its output key is not "
        f"output_key(P, merkle root {'07' * 32})")
    # SIGHASH_SINGLE
    assert refused(samples.sample_psbt([(x, 50_000, "p2tr-bip340")], [(DEST, 49_000)], sighash_type=3), tkey) == (
        "sighash_not_allowed", "input 0 asks for sighash type 3; only SIGHASH_DEFAULT and SIGHASH_ALL are signed")
    # a key-hash input paying the same secp256k1 key: an ECDSA spend
    assert refused(samples.sample_psbt([(b"\x02" + x, 50_000, "p2wpkh")], [(DEST, 49_000)]), tkey) == (
        "scheme_mismatch", "input 0 pays this schnorr-bip340 key in a p2wpkh script: that needs an ECDSA signature")
    # only someone else's inputs
    assert refused(samples.sample_psbt([(other, 50_000, "p2wpkh")], [(DEST, 49_000)]), tkey) == (
        "nothing_to_sign", "no input of this PSBT is ours to sign")
    # an ed25519 key signs no PSBT
    ed = P.KeyContext(bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
                      scheme="ed25519")
    assert refused(samples.sample_psbt([(x, 50_000, "p2tr-bip340")], [(DEST, 49_000)]), ed) == (
        "scheme_mismatch", "a PSBT is signed by a secp256k1 key, not an ed25519 key")
    # the ECDSA key still refuses its own BIP86 output (an ECDSA key makes no BIP340 signature)
    ekey = P.KeyContext.of(key_2of3[0])
    assert refused(samples.sample_psbt([(ekey.public_key, 50_000)], [(DEST, 49_000)], script_type="p2tr"),
                   ekey)[0] == "taproot_unsupported"


def test_untweaked_output_of_our_key_refused(tkey):
    """A P2TR output paying P itself (no BIP341 tweak) is never signed."""
    x = tkey.public_key
    psbt = samples.sample_psbt([(x, 50_000, "p2tr-bip340")], [(DEST, 49_000)], tap_internal_key=False)
    p = PartiallySignedTransaction.from_base64(psbt)
    p.inputs[0].set_utxo(CTxOut(50_000, CScript(b"\x51\x20" + x)), p.unsigned_tx)
    assert refused(base64.b64encode(p.serialize()).decode(), tkey) == (
        "taproot_untweaked_key", "input 0 pays this key untweaked; only output_key(P, merkle_root) outputs are "
        "signed (BIP341)")


def test_another_signers_bad_key_path_signature_leaves_the_psbt_incomplete(key_2of3, frost_key, tkey):
    """The ECDSA key completes a mixed PSBT whose P2TR input already carries a tap_key_sig: a
    valid one is finalized, a forged one leaves the PSBT incomplete (no invalid tx_hex)."""
    ekey = P.KeyContext.of(key_2of3[0])
    psbt = samples.sample_psbt([(ekey.public_key, 40_000, "p2wpkh"), (tkey.public_key, 50_000, "p2tr-bip340")],
                               [(DEST, 88_000)])
    t = P.decode_payload("psbt", psbt, tkey, network="regtest")
    signed = P.assemble(t, frost_sign(frost_key, t))["psbt"]
    forged = _set_field(psbt, 1, psbt_taproot.PSBT_IN_TAP_KEY_SIG, bytes(64))
    e = P.decode_payload("psbt", signed, ekey, network="regtest")
    sigs = [ecdsa_sim.sign(key_2of3[:2], e.items[0].digest)]
    assert P.assemble(e, sigs)["complete"] is True
    assert P.assemble(P.decode_payload("psbt", forged, ekey, network="regtest"), sigs)["complete"] is False


def test_our_taproot_input_without_its_previous_output_refused(tkey):
    psbt = samples.sample_psbt([(tkey.public_key, 50_000, "p2tr-bip340")], [(DEST, 49_000)])
    p = PartiallySignedTransaction.from_base64(psbt)
    p.inputs[0].set_utxo(None, p.unsigned_tx)
    assert refused(p.to_base64(), tkey) == ("missing_utxo", "input 0 is ours but carries no previous output")
