"""Taproot (P2TR) key-path inputs of a PSBT for a ``schnorr-bip340`` key (BIP 341, BIP 371).

An input is ours when its previous output is ``OP_1 <Q>`` with Q the x-only output key
``output_key(P, merkle_root)`` (appliance/tss/frost/taproot.py) of our key P, where
``merkle_root`` is the input's ``PSBT_IN_TAP_MERKLE_ROOT`` (0x18) or empty (a key-path-only
output, BIP86), and ``PSBT_IN_TAP_INTERNAL_KEY`` (0x17), when present, is P. An input naming
P as its internal key whose output key differs is refused (``taproot_key_mismatch``); an
output paying P itself, untweaked, too (``taproot_untweaked_key``: see the note in
appliance/tss/frost/taproot.py on why a DKG key is never used untweaked).

The signature hash is BIP341's (python-bitcointx's ``SignatureHashSchnorr``, checked against
BIP341's wallet-test-vectors.json for every hash type): it commits to *every* input's amount
and scriptPubKey, so each input must carry its previous output (``witness_utxo`` or
``non_witness_utxo``), else ``missing_spent_outputs``. Because every amount is signed, a
taproot input needs no full previous transaction (the segwit v0 fee attack does not apply).
:func:`sighash` computes all the types (DEFAULT, ALL, NONE, SINGLE, each with ANYONECANPAY);
the decoder signs only SIGHASH_DEFAULT (no ``PSBT_IN_SIGHASH_TYPE``) and SIGHASH_ALL, like
the ECDSA inputs: the others let someone change the transaction after approvers saw it.
python-bitcointx 1.1.5 refuses a PSBT whose sighash field is an explicit 0 (``malformed_psbt``):
SIGHASH_DEFAULT is the field's absence.

The signature goes in ``PSBT_IN_TAP_KEY_SIG`` (0x13): 64 bytes for SIGHASH_DEFAULT, 65 with
the hash type otherwise; finalizing a key-path spend sets the witness to that one element.
python-bitcointx 1.1.5's script interpreter does not evaluate witness v1 programs (it accepts
any), so the finalized transaction's taproot inputs are checked here with libsecp256k1's
BIP340 verification (coincurve ``PublicKeyXOnly.verify``) over the sighash recomputed from
the extracted transaction, against the output key in the spent scriptPubKey.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitcointx.core import CTransaction, CTxOut
from bitcointx.core.psbt import PSBT_UnknownTypeData
from bitcointx.core.script import CScriptWitness, SignatureHashSchnorr, SIGHASH_Type
from coincurve import PublicKeyXOnly

from appliance.payloads.errors import PayloadError, SignatureMismatch
from appliance.payloads.types import BIP340, KeyContext, SigningItem, taproot_output_key

PSBT_IN_TAP_KEY_SIG = 0x13
PSBT_IN_TAP_INTERNAL_KEY = 0x17
PSBT_IN_TAP_MERKLE_ROOT = 0x18
SIGHASH_DEFAULT = 0
SIGHASH_ALL = 1
#: BIP341's valid hash types
HASH_TYPES = (0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83)
#: the ones this appliance signs
SIGNED_HASH_TYPES = (SIGHASH_DEFAULT, SIGHASH_ALL)


@dataclass(frozen=True)
class TapFields:
    internal_key: bytes | None
    merkle_root: bytes | None
    key_sig: bytes | None


def tap_fields(inp, index: int) -> TapFields:
    """The BIP 371 key-path fields of a PSBT input (python-bitcointx 1.1 keeps them as unknown
    fields); a malformed one is ``malformed_psbt``."""
    found: dict[int, bytes] = {}
    sizes = {PSBT_IN_TAP_INTERNAL_KEY: (32,), PSBT_IN_TAP_MERKLE_ROOT: (32,), PSBT_IN_TAP_KEY_SIG: (64, 65)}
    for f in inp.unknown_fields:
        if f.key_type in sizes:
            if f.key_data or len(f.value) not in sizes[f.key_type]:
                raise PayloadError("malformed_psbt", f"input {index}: malformed taproot field 0x{f.key_type:02x}")
            found[f.key_type] = bytes(f.value)
    return TapFields(found.get(PSBT_IN_TAP_INTERNAL_KEY), found.get(PSBT_IN_TAP_MERKLE_ROOT),
                     found.get(PSBT_IN_TAP_KEY_SIG))


def spent_outputs(tx: CTransaction, psbt) -> list[CTxOut]:
    """Every input's previous output (a BIP341 sighash commits to all of them)."""
    out = []
    for i, (txin, inp) in enumerate(zip(tx.vin, psbt.inputs)):
        if isinstance(inp.utxo, CTransaction):
            out.append(inp.utxo.vout[txin.prevout.n])
        elif inp.witness_utxo is not None:
            out.append(inp.witness_utxo)
        else:
            raise PayloadError("missing_spent_outputs",
                               f"input {i} carries no previous output: a taproot signature hash commits "
                               "to every input's amount and script")
    return out


def sighash(tx: CTransaction, index: int, spent: list[CTxOut], hash_type: int = SIGHASH_DEFAULT) -> bytes:
    """BIP341 SigMsg hashed (TapSighash) for a key-path spend of input ``index``."""
    if hash_type not in HASH_TYPES:
        raise PayloadError("sighash_not_allowed", f"0x{hash_type:02x} is not a BIP341 hash type")
    if hash_type & 3 == 3 and index >= len(tx.vout):
        raise PayloadError("sighash_not_allowed", f"input {index}: SIGHASH_SINGLE without a matching output")
    ht = None if hash_type == SIGHASH_DEFAULT else SIGHASH_Type(hash_type)
    return bytes(SignatureHashSchnorr(tx, index, spent, hashtype=ht))


def match_input(key: KeyContext, inp, index: int, output_key: bytes) -> bytes | None:
    """The merkle root (``b""``: key-path only) when this P2TR input (output key
    ``output_key``) is a key-path spend of ``key`` (a ``schnorr-bip340`` key), else None."""
    fields = tap_fields(inp, index)
    ours = key.public_key
    if fields.internal_key is not None and fields.internal_key != ours:
        return None
    root = fields.merkle_root or b""
    if taproot_output_key(ours, root) == output_key:
        return root
    if fields.internal_key == ours:
        raise PayloadError("taproot_key_mismatch",
                           f"input {index} names this key as its internal key but its output key is not "
                           f"output_key(P, merkle root {root.hex() or 'empty'})")
    if output_key == ours:
        raise PayloadError("taproot_untweaked_key",
                           f"input {index} pays this key untweaked; only output_key(P, merkle_root) "
                           "outputs are signed (BIP341)")
    return None


def signing_item(key: KeyContext, inp, index: int, tx: CTransaction, spent: list[CTxOut],
                 merkle_root: bytes) -> SigningItem:
    """The BIP340 signature to make for input ``index`` (our key, a matched merkle root)."""
    hash_type = SIGHASH_DEFAULT if inp.sighash_type is None else int(inp.sighash_type)
    if hash_type not in SIGNED_HASH_TYPES:
        raise PayloadError("sighash_not_allowed",
                           f"input {index} asks for sighash type {hash_type}; only SIGHASH_DEFAULT and "
                           "SIGHASH_ALL are signed")
    digest = sighash(tx, index, spent, hash_type)
    return SigningItem(digest, key.public_key, 0, "m", input_index=index, scheme=BIP340,
                       merkle_root=merkle_root, sighash_type=hash_type)


def verify(output_key: bytes, digest: bytes, sig: bytes) -> bool:
    """BIP340 verification by libsecp256k1 (coincurve)."""
    try:
        return PublicKeyXOnly(output_key).verify(sig, digest)
    except (ValueError, TypeError):
        return False


def add_signature(inp, item: SigningItem, sig: bytes) -> None:
    """Check ``sig`` (64 bytes) for ``item`` and set it as the input's PSBT_IN_TAP_KEY_SIG."""
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
        raise SignatureMismatch(f"input {item.input_index}: a BIP340 signature is 64 bytes")
    if not verify(taproot_output_key(item.public_key, item.merkle_root or b""), item.digest, bytes(sig)):
        raise SignatureMismatch(f"input {item.input_index}: the BIP340 signature does not verify "
                                "for its sighash and output key")
    value = bytes(sig) + (bytes([item.sighash_type]) if item.sighash_type else b"")
    inp.unknown_fields = [f for f in inp.unknown_fields if f.key_type != PSBT_IN_TAP_KEY_SIG]
    inp.unknown_fields.append(PSBT_UnknownTypeData(key_type=PSBT_IN_TAP_KEY_SIG, key_data=b"", value=value))


def finalize_key_path(psbt) -> list[int]:
    """Finalize every non-final P2TR input that has a key-path signature (ours or another
    signer's) valid for its output key: the witness is the signature alone (BIP 174 finalizer:
    the other fields of the input are dropped). A signature that does not verify (another
    signer's, put there by whoever sent the PSBT) leaves its input unfinalized, so the PSBT is
    returned incomplete rather than as an invalid transaction. Returns the indices finalized."""
    done = []
    try:
        spent = spent_outputs(psbt.unsigned_tx, psbt)
    except PayloadError:  # an input without its previous output: nothing taproot can be final
        return done
    for i, inp in enumerate(psbt.inputs):
        prev = inp.witness_utxo or (inp.utxo.vout[psbt.unsigned_tx.vin[i].prevout.n]
                                    if isinstance(inp.utxo, CTransaction) else None)
        if prev is None or inp.is_final() or not prev.scriptPubKey.is_witness_v1_taproot():
            continue
        sig = tap_fields(inp, i).key_sig
        if sig is None or not _valid_key_path_sig(psbt.unsigned_tx, i, spent, sig):
            continue
        inp.final_script_witness = CScriptWitness([sig])
        inp.sighash_type = None
        inp.unknown_fields = [f for f in inp.unknown_fields if f.key_type < 0x13 or f.key_type > 0x18]
        done.append(i)
    return done


def _valid_key_path_sig(tx: CTransaction, i: int, spent: list[CTxOut], sig: bytes) -> bool:
    hash_type = sig[64] if len(sig) == 65 else SIGHASH_DEFAULT
    if len(sig) == 65 and hash_type == SIGHASH_DEFAULT:
        return False
    try:
        digest = sighash(tx, i, spent, hash_type)
    except PayloadError:
        return False
    return verify(bytes(spent[i].scriptPubKey[2:34]), digest, sig[:64])


def verify_key_path_spends(tx: CTransaction, spent: list[CTxOut], indices: list[int]) -> None:
    """Each input in ``indices`` of the extracted ``tx`` spends its P2TR output with a valid
    BIP340 key-path signature (:class:`SignatureMismatch` otherwise)."""
    for i in indices:
        stack = tx.wit.vtxinwit[i].scriptWitness.stack if i < len(tx.wit.vtxinwit) else []
        if len(stack) != 1 or len(stack[0]) not in (64, 65):
            raise SignatureMismatch(f"input {i}: a key-path spend's witness is one signature")
        sig = bytes(stack[0])
        hash_type = sig[64] if len(sig) == 65 else SIGHASH_DEFAULT
        if len(sig) == 65 and hash_type == SIGHASH_DEFAULT:
            raise SignatureMismatch(f"input {i}: a 65-byte signature cannot say SIGHASH_DEFAULT")
        digest = sighash(tx, i, spent, hash_type)
        if not verify(bytes(spent[i].scriptPubKey[2:34]), digest, sig[:64]):
            raise SignatureMismatch(f"input {i}: the key-path signature does not verify (BIP340, libsecp256k1)")


__all__ = [
    "HASH_TYPES",
    "SIGNED_HASH_TYPES",
    "TapFields",
    "add_signature",
    "finalize_key_path",
    "match_input",
    "sighash",
    "signing_item",
    "spent_outputs",
    "tap_fields",
    "verify",
    "verify_key_path_spends",
]
