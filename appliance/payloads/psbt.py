"""Bitcoin PSBT (BIP 174, version 0): decode, compute our sighashes, add signatures, finalize.

Parsing, sighashes (legacy and BIP143), finalization and extraction are python-bitcointx's;
this module decides which inputs are ours and whether we may sign them.

Which inputs we sign: an input that is not yet final, whose previous output is
- P2WPKH (BIP143 sighash), P2SH-P2WPKH (BIP143, redeem script in the PSBT) or P2PKH (legacy
  sighash), and
- pays to a key of ours: the root key, the child at the request's derivation path, or a child
  that the input's BIP32 derivation record names with our root's fingerprint and a
  non-hardened path that we re-derive ourselves and find equal.
Every input we sign must use SIGHASH_ALL (or leave the type unset): other types let someone
change the transaction after we sign. A segwit v0 input we sign must carry its full previous
transaction (non_witness_utxo) unless the caller relaxes that: BIP143 commits to one input's
amount only, so two signing sessions with different claimed amounts can otherwise trick a
signer into paying an unseen fee (the 2020 segwit fee attack).

The key's scheme decides which inputs are its own (a PSBT may need two keys; decode it once
per key, :func:`decode_psbt_keys` does so, each input's ``key_scheme`` in the summary says
which kind of key spends it):
- ``ecdsa-secp256k1``: the inputs above. A P2TR key-path input of this key is refused
  (``taproot_unsupported``): it needs a BIP340 signature, which CGGMP ECDSA does not make.
- ``schnorr-bip340``: P2TR key-path inputs whose output key is output_key(P, merkle_root)
  (:mod:`appliance.payloads.psbt_taproot`: BIP341 sighash over every input's previous
  output). A key-hash input paying the same secp256k1 key is refused (``scheme_mismatch``).
- ``ed25519``: no Bitcoin input (``scheme_mismatch``).
Other inputs of ours in scripts we do not sign (P2WSH, bare multisig, ...) are refused
(``unsupported_input``), so a PSBT is never half-signed by surprise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.payloads import _bitcoin, psbt_taproot
from appliance.payloads.addresses import (
    p2pkh_script,
    p2sh_p2wpkh_script,
    p2wpkh_script,
)
from appliance.payloads.errors import PayloadError, SignatureMismatch
from appliance.payloads.types import (
    BIP340,
    ECDSA,
    ED25519,
    DecodedPayload,
    KeyContext,
    SignerKey,
    SigningItem,
    Transfer,
    TxFacts,
)
from appliance.tss import ecdsa
from appliance.tss.bip32 import hash160
from appliance.tss.group import Point, Q

MAX_PSBT_BYTES = 1_000_000
MAX_PSBT_BASE64 = (MAX_PSBT_BYTES + 2) // 3 * 4
MAX_INPUTS = 500
MAX_OUTPUTS = 1000
MAX_SIGNED_INPUTS = 100
#: BIP32 derivations we re-derive while matching keys (each costs a few EC operations)
MAX_DERIVATIONS = 2000
SIGHASH_ALL = 1
MAGIC = b"psbt\xff"

# PSBT input key types python-bitcointx 1.1 keeps as unknown fields (BIP 371)
_PSBT_IN_TAP_BIP32_DERIVATION = 0x16
_PSBT_IN_TAP_INTERNAL_KEY = 0x17


def _psbt_bytes(payload: Any) -> bytes:
    if isinstance(payload, str):
        text = payload.strip()
        if len(text) > MAX_PSBT_BASE64:
            raise PayloadError("payload_too_large", f"PSBT larger than {MAX_PSBT_BYTES} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PayloadError("malformed_psbt", "PSBT is not valid base64") from exc
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        raw = bytes(payload)
    else:
        raise PayloadError("wrong_type", "a psbt payload is a base64 string")
    if len(raw) > MAX_PSBT_BYTES:
        raise PayloadError("payload_too_large", f"PSBT larger than {MAX_PSBT_BYTES} bytes")
    if not raw.startswith(MAGIC):
        raise PayloadError("malformed_psbt", "missing the PSBT magic bytes")
    return raw


def _parse(raw: bytes):
    _bitcoin.ensure_bitcointx()
    from bitcointx.core.psbt import PartiallySignedTransaction

    try:
        with _bitcoin.chain_params("mainnet"):
            psbt = PartiallySignedTransaction.from_binary(raw)
    except PayloadError:
        raise
    except Exception as exc:  # the library raises SerializationError, ValueError, AssertionError...
        raise PayloadError("malformed_psbt", f"not a valid PSBT: {exc}") from exc
    if psbt.version != 0:
        raise PayloadError("unsupported_psbt", f"PSBT version {psbt.version} is not supported (only 0)")
    return psbt


# ---------------------------------------------------------------------------------------
# our keys


def _tagged_hash(tag: str, data: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def _bip86_output_key(public_key: bytes) -> bytes:
    """x-only output key of a BIP86 (key-path only) taproot output for this internal key."""
    xonly = public_key[1:]
    internal = Point.from_bytes(b"\x02" + xonly)
    tweak = int.from_bytes(_tagged_hash("TapTweak", xonly), "big")
    if tweak >= Q:
        return b""
    return (internal + Point.generator_mul(tweak)).to_bytes()[1:]


class _Keys:
    """Our candidate keys: root, request key, and children named by derivation records."""

    def __init__(self, key: KeyContext) -> None:
        self.key = key
        self.by_hash: dict[bytes, SignerKey] = {}
        self.by_pub: dict[bytes, SignerKey] = {}
        self._derived: dict[tuple[int, ...], SignerKey | None] = {}
        self.derivations = 0
        for s in (key.root, key.signer):
            self._add(s)

    def _add(self, s: SignerKey) -> None:
        self.by_pub.setdefault(s.public_key, s)
        self.by_hash.setdefault(hash160(s.public_key), s)

    def derive(self, master_fp: bytes, indices: Sequence[int]) -> SignerKey | None:
        if bytes(master_fp) != self.key.fingerprint or self.key.chain_code is None:
            return None
        path = tuple(int(i) for i in indices)
        if path not in self._derived:
            self.derivations += 1
            if self.derivations > MAX_DERIVATIONS:
                raise PayloadError("payload_too_complex", "too many BIP32 derivations to check")
            self._derived[path] = self.key.derive_indices(list(path))
        return self._derived[path]

    def from_derivation_map(self, derivation_map, want_hash: bytes | None = None) -> list[SignerKey]:
        """Keys of ours named (and proven by re-derivation) in a PSBT derivation map."""
        found = []
        for pub, info in derivation_map.items():
            pub = bytes(pub)
            if want_hash is not None and hash160(pub) != want_hash:
                continue
            s = self.derive(info.master_fp, list(info.path))
            if s is not None and s.public_key == pub:
                self._add(s)
                found.append(s)
        return found

    def xonly(self) -> set[bytes]:
        return {p[1:] for p in self.by_pub}


def _tap_fields(inp) -> tuple[bytes | None, list[tuple[bytes, bytes, list[int]]]]:
    """(internal key, [(x-only key, master fingerprint, path)]) from BIP 371 input fields."""
    from bitcointx.core.serialize import SerializationError, VarIntSerializer

    internal = None
    derivs = []
    for f in inp.unknown_fields:
        if f.key_type == _PSBT_IN_TAP_INTERNAL_KEY and len(f.value) == 32:
            internal = bytes(f.value)
        elif f.key_type == _PSBT_IN_TAP_BIP32_DERIVATION and len(f.key_data) == 32:
            try:
                n, rest = VarIntSerializer.deserialize_partial(bytes(f.value))
                rest = rest[32 * n:]
                if len(rest) < 4 or (len(rest) - 4) % 4:
                    continue
                path = [int.from_bytes(rest[i:i + 4], "little") for i in range(4, len(rest), 4)]
                derivs.append((bytes(f.key_data), rest[:4], path))
            except (ValueError, IndexError, SerializationError):  # malformed: not a derivation of ours
                continue
    return internal, derivs


# ---------------------------------------------------------------------------------------
# decoding


@dataclass
class _Input:
    index: int
    prevout: str
    amount: int | None
    script: bytes | None
    script_type: str
    address: str | None
    ours: SignerKey | None = None
    final: bool = False
    signing: bool = False
    sighash_type: int | None = None
    merkle_root: bytes | None = None


def _script_type(spk) -> str:
    if spk.is_witness_v0_keyhash():
        return "p2wpkh"
    if spk.is_witness_v0_scripthash():
        return "p2wsh"
    if spk.is_witness_v1_taproot():
        return "p2tr"
    if spk.is_p2pkh():
        return "p2pkh"
    if spk.is_p2sh():
        return "p2sh"
    if len(spk) and spk[0] == 0x6A:
        return "op_return"
    return "nonstandard"


def decode_psbt(payload: Any, key: KeyContext, *, network: str = "mainnet",
                require_non_witness_utxo: bool = True) -> DecodedPayload:
    """Decode a PSBT (base64 string, or raw bytes) and compute the sighash of every input of
    ours. Raises :class:`PayloadError` for anything malformed, unsupported or unsafe."""
    _bitcoin.check_network(network)
    if key.scheme == ED25519:
        raise PayloadError("scheme_mismatch", "a PSBT is signed by a secp256k1 key, not an ed25519 key")
    raw = _psbt_bytes(payload)
    psbt = _parse(raw)

    from bitcointx.core import CTransaction, MoneyRange, b2lx
    from bitcointx.core.script import (
        SIGVERSION_BASE,
        SIGVERSION_WITNESS_V0,
        CScript,
        SIGHASH_Type,
        standard_keyhash_scriptpubkey,
    )

    tx = psbt.unsigned_tx
    if not tx.vin or not tx.vout:
        raise PayloadError("malformed_psbt", "the transaction has no inputs or no outputs")
    if len(tx.vin) > MAX_INPUTS or len(tx.vout) > MAX_OUTPUTS:
        raise PayloadError("payload_too_large",
                           f"at most {MAX_INPUTS} inputs and {MAX_OUTPUTS} outputs")
    seen = set()
    for txin in tx.vin:
        if len(txin.scriptSig):
            raise PayloadError("malformed_psbt", "the unsigned transaction has a scriptSig")
        op = (bytes(txin.prevout.hash), txin.prevout.n)
        if op in seen:
            raise PayloadError("malformed_psbt", "the transaction spends one output twice")
        seen.add(op)
    if not tx.wit.is_null():
        raise PayloadError("malformed_psbt", "the unsigned transaction has witness data")
    total_out = 0
    for txout in tx.vout:
        if not MoneyRange(txout.nValue):
            raise PayloadError("malformed_psbt", "an output amount is out of range")
        total_out += txout.nValue
    if not MoneyRange(total_out):
        raise PayloadError("malformed_psbt", "the outputs add up to more than 21 million BTC")

    keys = _Keys(key)
    spent = None  # every input's previous output, once a taproot input of ours needs them
    inputs: list[_Input] = []
    items: list[SigningItem] = []
    warnings: list[str] = []

    for i, (txin, inp) in enumerate(zip(tx.vin, psbt.inputs)):
        prev = None
        full = isinstance(inp.utxo, CTransaction)
        if full:
            if inp.utxo.GetTxid() != txin.prevout.hash or txin.prevout.n >= len(inp.utxo.vout):
                raise PayloadError("malformed_psbt", f"input {i}: non_witness_utxo does not match the prevout")
            prev = inp.utxo.vout[txin.prevout.n]
        elif inp.witness_utxo is not None:
            prev = inp.witness_utxo
        if prev is not None and not MoneyRange(prev.nValue):
            raise PayloadError("malformed_psbt", f"input {i}: amount out of range")
        spk = prev.scriptPubKey if prev is not None else None
        stype = _script_type(spk) if spk is not None else "unknown"
        rec = _Input(i, f"{b2lx(txin.prevout.hash)}:{txin.prevout.n}",
                     prev.nValue if prev is not None else None,
                     bytes(spk) if spk is not None else None, stype,
                     _bitcoin.script_address(bytes(spk), network) if spk is not None else None,
                     final=bool(inp.final_script_sig or inp.final_script_witness))
        inputs.append(rec)
        if prev is None:
            warnings.append(f"input {i} carries no previous output: its amount and the fee are unknown")
            if key.scheme == BIP340 and psbt_taproot.tap_fields(inp, i).internal_key == key.public_key:
                raise PayloadError("missing_utxo", f"input {i} is ours but carries no previous output")
            if keys.from_derivation_map(inp.derivation_map):
                raise PayloadError("missing_utxo", f"input {i} is ours but carries no previous output")
            continue
        if key.scheme == BIP340:
            root = _bip340_input(key, inp, rec, spk, i)
            if root is not None:
                spent = spent or psbt_taproot.spent_outputs(tx, psbt)
                item = psbt_taproot.signing_item(key, inp, i, tx, spent, root)
                rec.ours, rec.signing = key.root, True
                rec.sighash_type, rec.merkle_root = item.sighash_type, root
                items.append(item)
            continue

        # which key of ours, if any, does this input pay?
        keyhash = None
        witness = False
        if stype == "p2wpkh":
            keyhash, witness = bytes(spk[2:22]), True
        elif stype == "p2pkh":
            keyhash = bytes(spk[3:23])
        elif stype == "p2sh" and inp.redeem_script and inp.redeem_script.is_witness_v0_keyhash():
            if p2sh_p2wpkh_script_from_redeem(bytes(inp.redeem_script)) != bytes(spk):
                raise PayloadError("malformed_psbt", f"input {i}: redeem script does not match the output")
            keyhash, witness, stype = bytes(inp.redeem_script[2:22]), True, "p2sh-p2wpkh"
            rec.script_type = stype
        if keyhash is not None:
            if keyhash not in keys.by_hash:
                keys.from_derivation_map(inp.derivation_map, want_hash=keyhash)
            rec.ours = keys.by_hash.get(keyhash)
        elif stype == "p2tr":
            rec.ours = _our_taproot(keys, inp, bytes(spk[2:34]))
            if rec.ours is not None and not rec.final:
                raise PayloadError(
                    "taproot_unsupported",
                    f"input {i} is a P2TR key-path spend of this key: that needs a BIP340 Schnorr "
                    "signature, which threshold ECDSA (CGGMP) cannot produce")
        else:
            ours = keys.from_derivation_map(inp.derivation_map)
            if ours and not rec.final:
                raise PayloadError("unsupported_input",
                                   f"input {i} names our key in a {stype} script; only P2WPKH, "
                                   "P2SH-P2WPKH and P2PKH inputs are signed")
        if rec.ours is None or rec.final:
            continue

        # one of ours, to sign
        if inp.sighash_type is not None and int(inp.sighash_type) != SIGHASH_ALL:
            raise PayloadError("sighash_not_allowed",
                               f"input {i} asks for sighash type {int(inp.sighash_type)}; only SIGHASH_ALL is signed")
        if witness:
            if not full and require_non_witness_utxo:
                raise PayloadError(
                    "missing_utxo",
                    f"segwit input {i} lacks its full previous transaction (non_witness_utxo), "
                    "needed to trust its amount")
            script_code = standard_keyhash_scriptpubkey(keyhash)
            digest = script_code.sighash(tx, i, SIGHASH_Type(SIGHASH_ALL), amount=prev.nValue,
                                         sigversion=SIGVERSION_WITNESS_V0)
        else:
            if not full:
                raise PayloadError("missing_utxo",
                                   f"legacy input {i} needs its full previous transaction (non_witness_utxo)")
            digest = CScript(bytes(spk)).sighash(tx, i, SIGHASH_Type(SIGHASH_ALL),
                                                 sigversion=SIGVERSION_BASE)
        rec.signing = True
        items.append(SigningItem(bytes(digest), rec.ours.public_key, rec.ours.tweak, rec.ours.path,
                                 input_index=i))

    if not items:
        raise PayloadError("nothing_to_sign", "no input of this PSBT is ours to sign")
    if len(items) > MAX_SIGNED_INPUTS:
        raise PayloadError("payload_too_large", f"at most {MAX_SIGNED_INPUTS} inputs signed per request")

    # outputs: change (back to a key of ours that we can spend) or a destination
    outputs = []
    transfers: list[Transfer] = []
    for j, (txout, outp) in enumerate(zip(tx.vout, psbt.outputs)):
        spk = bytes(txout.scriptPubKey)
        keys.from_derivation_map(outp.derivation_map)
        stype = _script_type(txout.scriptPubKey)
        change = _is_change(keys, spk) if key.scheme == ECDSA else \
            (key.root if spk == b"\x51\x20" + key.output_key else None)
        address = _bitcoin.script_address(spk, network)
        entry: dict[str, Any] = {"index": j, "address": address, "amount": txout.nValue,
                                 "script_type": stype, "change": change is not None}
        if change is not None:
            entry["path"] = change.path
        if key.scheme == ECDSA and stype == "p2tr" and spk[2:34] in {_bip86_output_key(p) for p in keys.by_pub}:
            warnings.append(f"output {j} pays a P2TR key of this key, which the appliance cannot spend")
        if stype == "op_return":
            entry["data"] = spk[1:].hex()
        if change is None and not (stype == "op_return" and txout.nValue == 0):
            transfers.append(Transfer("BTC", txout.nValue, address or f"script:{spk.hex()}"))
        outputs.append(entry)

    amounts = [r.amount for r in inputs]
    total_in = sum(a for a in amounts if a is not None) if None not in amounts else None
    fee = None
    if total_in is not None:
        fee = total_in - total_out
        if fee < 0:
            raise PayloadError("malformed_psbt", "the outputs spend more than the inputs")
    sent = sum(t.amount for t in transfers)
    legacy = any(r.script_type in ("p2pkh", "p2sh") for r in inputs)
    summary = {
        "type": "psbt", "chain": "bitcoin", "network": network, "asset": "BTC", "unit": "sat",
        "txid": None if legacy else b2lx(tx.GetTxid()),
        "version": tx.nVersion, "locktime": tx.nLockTime,
        "rbf": any(txin.nSequence < 0xFFFFFFFE for txin in tx.vin),
        "key_scheme": key.scheme,
        "inputs": [_input_summary(r) for r in inputs],
        "outputs": outputs,
        "total_in": total_in, "total_out": total_out, "fee": fee, "sent": sent,
        "sent_btc": _btc(sent), "fee_btc": None if fee is None else _btc(fee),
        "destinations": [{"address": t.destination, "amount": t.amount} for t in transfers],
        "signing_inputs": [it.input_index for it in items],
        "warnings": warnings,
    }
    facts = TxFacts("psbt", chain="bitcoin", network=network, transfers=tuple(transfers),
                    fee=fee, fee_asset="BTC")
    return DecodedPayload("psbt", tuple(items), summary, facts, canonical=raw, network=network)


#: which scheme's key spends an input, by script type
_INPUT_SCHEMES = {"p2wpkh": ECDSA, "p2pkh": ECDSA, "p2sh-p2wpkh": ECDSA, "p2tr": BIP340}


def _input_summary(r: _Input) -> dict:
    out = {"index": r.index, "prevout": r.prevout, "amount": r.amount, "address": r.address,
           "script_type": r.script_type, "key_scheme": _INPUT_SCHEMES.get(r.script_type),
           "ours": r.ours is not None, "path": r.ours.path if r.ours else None, "final": r.final,
           "signing": r.signing}
    if r.merkle_root is not None:
        out.update(merkle_root=r.merkle_root.hex(), sighash_type=r.sighash_type)
    return out


def _bip340_input(key: KeyContext, inp, rec: _Input, spk, i: int) -> bytes | None:
    """The merkle root when input ``i`` is a key-path spend of this schnorr-bip340 key to
    sign; refuses a key-hash input that pays the same secp256k1 key (an ECDSA spend)."""
    if rec.final:
        return None
    if rec.script_type == "p2tr":
        return psbt_taproot.match_input(key, inp, i, bytes(spk[2:34]))
    mine = {hash160(bytes([prefix]) + key.public_key) for prefix in (2, 3)}
    script = bytes(inp.redeem_script) if rec.script_type == "p2sh" and inp.redeem_script else bytes(spk)
    if any(h in script for h in mine):
        raise PayloadError("scheme_mismatch",
                           f"input {i} pays this schnorr-bip340 key in a {rec.script_type} script: that "
                           "needs an ECDSA signature")
    return None


def decode_psbt_keys(payload: Any, keys: Sequence[KeyContext], *, network: str = "mainnet",
                     require_non_witness_utxo: bool = True) -> dict[int, DecodedPayload]:
    """Decode one PSBT for several keys (e.g. an ECDSA key for its P2WPKH inputs and a
    schnorr-bip340 key for its P2TR inputs): ``{position in keys: DecodedPayload}`` for each
    key with inputs to sign (a key with none is left out; no key at all: ``nothing_to_sign``).
    Each key then signs its own items in its own sign request; either request's assembler
    finalizes the PSBT once every input has its signature."""
    out = {}
    for n, key in enumerate(keys):
        try:
            out[n] = decode_psbt(payload, key, network=network,
                                 require_non_witness_utxo=require_non_witness_utxo)
        except PayloadError as exc:
            if exc.code != "nothing_to_sign":
                raise
    if not out:
        raise PayloadError("nothing_to_sign", "no input of this PSBT is ours to sign with these keys")
    return out


def p2sh_p2wpkh_script_from_redeem(redeem: bytes) -> bytes:
    return b"\xa9\x14" + hash160(redeem) + b"\x87"


def _btc(sat: int) -> str:
    return f"{sat // 100_000_000}.{sat % 100_000_000:08d}"


def _our_taproot(keys: _Keys, inp, output_key: bytes) -> SignerKey | None:
    for pub, s in list(keys.by_pub.items()):
        if _bip86_output_key(pub) == output_key:
            return s
    internal, derivs = _tap_fields(inp)
    xonly = {p[1:]: s for p, s in keys.by_pub.items()}
    if internal is not None and internal in xonly:
        return xonly[internal]
    for xk, fp, path in derivs:
        s = keys.derive(fp, path)
        if s is not None and s.public_key[1:] == xk:
            return s
    return None


def _is_change(keys: _Keys, spk: bytes) -> SignerKey | None:
    for pub, s in keys.by_pub.items():
        if spk in (p2wpkh_script(pub), p2pkh_script(pub), p2sh_p2wpkh_script(pub)):
            return s
    return None


# ---------------------------------------------------------------------------------------
# assembling


def _checked(item: SigningItem, sig: ecdsa.Signature) -> ecdsa.Signature:
    if not isinstance(sig, ecdsa.Signature):
        raise SignatureMismatch("signatures must be appliance.tss.ecdsa.Signature objects")
    sig = sig.normalized()
    if not ecdsa.verify(item.public_key, item.digest, sig, strict_low_s=True):
        raise SignatureMismatch(f"the signature for {item.path} does not verify for its digest")
    return sig


def assemble_psbt(decoded: DecodedPayload, signatures: Sequence[ecdsa.Signature | bytes]) -> dict:
    """Add our signatures to the PSBT: ECDSA items as partial signatures (DER + SIGHASH_ALL),
    BIP340 items (64-byte signatures) as ``tap_key_sig``. When every input then has what it
    needs, finalize a copy (taproot key-path inputs here, the others by python-bitcointx) and
    extract the transaction; each ECDSA input we signed is run through python-bitcointx's
    script interpreter and each taproot input finalized is checked by libsecp256k1's BIP340
    verification (:func:`psbt_taproot.verify_key_path_spends`) before anything is returned.

    Returns ``{"psbt": base64 with partial signatures, "complete": bool, "tx_hex": ...,
    "txid": ...}`` (the last two only when complete)."""
    from bitcointx.core.key import CPubKey
    from bitcointx.core.scripteval import VerifyScript, VerifyScriptError

    if len(signatures) != len(decoded.items):
        raise SignatureMismatch(f"expected {len(decoded.items)} signatures, got {len(signatures)}")
    psbt = _parse(decoded.canonical)
    for item, sig in zip(decoded.items, signatures):
        inp = psbt.inputs[item.input_index]
        if item.scheme == BIP340:
            psbt_taproot.add_signature(inp, item, sig)
            continue
        sig = _checked(item, sig)
        inp.partial_sigs[CPubKey(item.public_key)] = sig.der() + bytes([SIGHASH_ALL])
    with _bitcoin.chain_params(decoded.network or "mainnet"):
        result: dict[str, Any] = {"psbt": psbt.to_base64(), "complete": False}
        final = psbt.clone()
        taproot = psbt_taproot.finalize_key_path(final)
        try:
            done = final.sign(_empty_keystore(), finalize=True).is_final
        except Exception:  # noqa: BLE001 -- a foreign input python-bitcointx cannot finalize
            done = False
        if not done:
            return result
        tx = final.extract_transaction()
        if taproot:
            psbt_taproot.verify_key_path_spends(tx, psbt_taproot.spent_outputs(tx, final), taproot)
        for item in decoded.items:
            if item.scheme == BIP340:
                continue
            i = item.input_index
            inp = final.inputs[i]
            prev = inp.witness_utxo or inp.utxo.vout[tx.vin[i].prevout.n]
            wit = tx.wit.vtxinwit[i].scriptWitness if i < len(tx.wit.vtxinwit) else None
            try:
                VerifyScript(tx.vin[i].scriptSig, prev.scriptPubKey, tx, i, amount=prev.nValue,
                             witness=wit)
            except VerifyScriptError as exc:
                raise SignatureMismatch(f"input {i} fails the script interpreter: {exc}") from exc
        from bitcointx.core import b2lx

        result.update(complete=True, tx_hex=tx.serialize().hex(), txid=b2lx(tx.GetTxid()))
        return result


def _empty_keystore():
    from bitcointx.core.key import KeyStore

    return KeyStore()


__all__ = [
    "MAX_INPUTS",
    "MAX_OUTPUTS",
    "MAX_PSBT_BYTES",
    "MAX_SIGNED_INPUTS",
    "assemble_psbt",
    "decode_psbt",
    "decode_psbt_keys",
]
