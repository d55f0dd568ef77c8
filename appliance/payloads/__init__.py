"""Transaction-aware signing: the node reads what it signs.

A signer node, for a sign request on key ``key`` (its KeyShare or stored public data)::

    from appliance import payloads

    kc = payloads.KeyContext.of(key, derivation_path)            # root pubkey + chain code
    decoded = (payloads.decode_payload(payload_type, payload, kc, network=network)
               if payload_type else payloads.decode_digest(digest, kc))
    decision = payloads.evaluate_tx_rules(decoded, rules, window_usage)   # rules: TxRules
    if not decision.allowed: refuse(decision.code, decision.message)
    payloads.check_claimed_digests(decoded, coordinator_digests, coordinator_tweaks)
    sigs = [sign(item.digest, tweak=item.tweak) for item in decoded.items]
    result = payloads.assemble(decoded, sigs)      # the contract's `result` dict

Schnorr keys (issue 16; routed through the node by appliance/signing/schnorr.py, whose
``signing_target`` gives each item's bytes, merkle root and verifying key): build the context
with the key's scheme, ``KeyContext(public_key, scheme="schnorr-bip340" | "ed25519")``
(32-byte keys: x-only P for BIP340), and sign each item by its ``scheme``:

- ``item.scheme == "ecdsa-secp256k1"``: as above (an ``ecdsa.Signature`` per item).
- ``"schnorr-bip340"`` (P2TR key-path inputs of a ``psbt``): FROST over ``item.digest`` (the
  BIP341 sighash) with ``merkle_root=item.merkle_root`` (``b""``: key-path only), so the
  signature verifies under ``taproot_output_key(item.public_key, item.merkle_root)``; hand
  ``assemble`` the 64-byte signature (bytes).
- ``"ed25519"`` (``sol_tx``): FROST Ed25519 over ``item.signed_bytes`` (= ``item.message``,
  the Solana message itself); ``item.digest`` is SHA-256(message), what coordinators claim
  (``check_claimed_digests``) and the audit log records. ``assemble`` takes the 64 bytes.

A PSBT with inputs of two keys (P2WPKH of an ECDSA key, P2TR of a BIP340 key) is one sign
request per key, each decoding it for its own key (``decode_psbt_keys`` shows the split);
the request that supplies the last signature gets ``complete`` and ``tx_hex``. A payload
for the wrong kind of key is ``scheme_mismatch`` (``sol_tx`` for a secp256k1 key, ``psbt``
for an ed25519 key, a key-hash input of a BIP340 key). ``decode_digest`` is unchanged (its
item has the default scheme; the node decides how a Schnorr key signs a bare digest).

``decoded.to_dict()`` (summary, facts, digests) goes to the sign-request record, to approvers
and to the audit log. Every error a client can cause is a :class:`PayloadError` (``code``;
the API's 400); :class:`DigestMismatch` (the API's 409) is a coordinator claiming other digests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.payloads.addresses import (
    ADDRESS_KINDS,
    address_for,
    eth_address,
    normalize_address,
    p2pkh_address,
    p2wpkh_address,
)
from appliance.payloads.errors import DigestMismatch, PayloadError, SignatureMismatch
from appliance.payloads.rules import (
    AssetLimit,
    RulesError,
    TxDecision,
    TxRules,
    Violation,
    evaluate_tx_rules,
    policy_facts,
)
from appliance.payloads.types import (
    BIP340,
    DIGEST,
    ECDSA,
    ED25519,
    PAYLOAD_TYPES,
    SCHEMES,
    TRANSACTION_TYPES,
    DecodedPayload,
    KeyContext,
    SignerKey,
    SigningItem,
    Transfer,
    TxFacts,
    taproot_output_key,
)
from appliance.tss import ecdsa


def decode_payload(payload_type: str, payload: Any, key: KeyContext, *,
                   network: str = "mainnet", require_non_witness_utxo: bool = True) -> DecodedPayload:
    """Decode ``payload`` of ``payload_type`` (``psbt``: base64; ``eth_tx``: hex of the
    unsigned transaction; ``eip712``: the typed-data object; ``message`` and ``eip191``: the
    text, see :mod:`appliance.payloads.message`; ``sol_tx``: base64 of a Solana message, for
    an ``ed25519`` key) for ``key``.

    ``network`` names the Bitcoin network of a PSBT (a PSBT does not say; addresses and the
    ``allowed_networks`` rule use it). Raises :class:`PayloadError`."""
    if not isinstance(key, KeyContext):
        raise TypeError("key must be a KeyContext")
    if payload_type == "psbt":
        from appliance.payloads.psbt import decode_psbt

        return decode_psbt(payload, key, network=network,
                           require_non_witness_utxo=require_non_witness_utxo)
    if payload_type == "eth_tx":
        from appliance.payloads.ethereum import decode_eth_tx

        return decode_eth_tx(payload, key)
    if payload_type == "eip712":
        from appliance.payloads.eip712 import decode_eip712

        return decode_eip712(payload, key)
    if payload_type in ("message", "eip191"):
        from appliance.payloads.message import decode_message

        return decode_message(payload_type, payload, key)
    if payload_type == "sol_tx":
        from appliance.payloads.solana import decode_sol_tx

        return decode_sol_tx(payload, key)
    raise PayloadError("bad_payload_type",
                       f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}")


def _digest_bytes(digest: Any, what: str = "digest") -> bytes:
    if isinstance(digest, str):
        text = digest[2:] if digest[:2] in ("0x", "0X") else digest
        if len(text) != 64:
            raise PayloadError("bad_digest", f"{what} must be 32 bytes")
        try:
            digest = bytes.fromhex(text)
        except ValueError as exc:
            raise PayloadError("bad_digest", f"{what} is not hex") from exc
    if not isinstance(digest, (bytes, bytearray, memoryview)) or len(digest) != 32:
        raise PayloadError("bad_digest", f"{what} must be 32 bytes")
    return bytes(digest)


def decode_digest(digest: bytes | str, key: KeyContext) -> DecodedPayload:
    """A bare 32-byte digest as a DecodedPayload (``payload_type="digest"``), so one code path
    serves both; the rules refuse it unless ``allow_raw_digest``."""
    d = _digest_bytes(digest)
    s = key.signer
    item = SigningItem(d, s.public_key, s.tweak, s.path)
    summary = {"type": DIGEST, "digest": d.hex(), "public_key": s.public_key.hex(), "path": s.path,
               "warnings": ["raw digest: the appliance cannot tell what it signs"]}
    return DecodedPayload(DIGEST, (item,), summary, TxFacts(DIGEST), canonical=d)


def decode_request(key: Any, *, digest: Any = None, payload: Any = None,
                   payload_type: str | None = None, derivation_path: str | None = None,
                   network: str = "mainnet", require_non_witness_utxo: bool = True) -> DecodedPayload:
    """One entry point for a sign request's body: exactly one of ``digest`` or
    (``payload``, ``payload_type``). ``key``: a KeyContext, or anything with ``public_key``
    and ``chain_code`` (a KeyShare, a stored key record) plus ``derivation_path``."""
    kc = key if isinstance(key, KeyContext) else KeyContext.of(key, derivation_path)
    if isinstance(key, KeyContext) and derivation_path is not None:
        kc = KeyContext(key.public_key, key.chain_code, derivation_path)
    if (digest is None) == (payload is None):
        raise PayloadError("bad_request", "give either a digest or a payload, not both or neither")
    if digest is not None:
        if payload_type is not None:
            raise PayloadError("bad_request", "payload_type goes with a payload, not a digest")
        return decode_digest(digest, kc)
    if payload_type is None:
        raise PayloadError("bad_request", "a payload needs its payload_type")
    return decode_payload(payload_type, payload, kc, network=network,
                          require_non_witness_utxo=require_non_witness_utxo)


def decode_psbt_keys(payload: Any, keys: Sequence[KeyContext], *, network: str = "mainnet",
                     require_non_witness_utxo: bool = True) -> dict[int, DecodedPayload]:
    """One PSBT for several keys (an ECDSA key's P2WPKH inputs, a schnorr-bip340 key's P2TR
    inputs): ``{position in keys: DecodedPayload}`` for each key with inputs to sign; see
    :func:`appliance.payloads.psbt.decode_psbt_keys`."""
    from appliance.payloads.psbt import decode_psbt_keys as decode

    return decode(payload, keys, network=network, require_non_witness_utxo=require_non_witness_utxo)


def check_claimed_digests(decoded: DecodedPayload, claimed: Sequence[Any] | bytes | str,
                          claimed_tweaks: Sequence[int] | None = None) -> None:
    """Raise :class:`DigestMismatch` unless ``claimed`` (what a coordinator or client says we
    are signing: one digest or a list, bytes or hex) is exactly this node's own digests, in
    order, and ``claimed_tweaks`` (if given) exactly its tweaks."""
    if isinstance(claimed, (bytes, bytearray, memoryview, str)):
        claimed = [claimed]
    try:
        got = [_digest_bytes(c, "claimed digest") for c in claimed]
    except PayloadError as exc:
        raise DigestMismatch(f"claimed digests are malformed: {exc}") from exc
    mine = decoded.digests
    if len(got) != len(mine):
        raise DigestMismatch(f"{len(got)} digests claimed, the payload decodes to {len(mine)}")
    for i, (a, b) in enumerate(zip(got, mine)):
        if a != b:
            raise DigestMismatch(f"digest {i} differs from the one this node computed from the payload")
    if claimed_tweaks is not None and list(claimed_tweaks) != decoded.tweaks:
        raise DigestMismatch("claimed derivation tweaks differ from this node's", code="tweak_mismatch")


def assemble(decoded: DecodedPayload, signatures: Sequence[ecdsa.Signature]) -> dict:
    """The contract's ``result`` from one signature per ``decoded.items`` (same order):
    ``psbt``: ``{"psbt", "complete", "tx_hex"?, "txid"?}``; ``eth_tx``: ``{"raw_tx",
    "tx_hash", "v", "r", "s"}``; ``eip712``: ``{"signature", "r", "s", "v"}``; ``message``:
    the signature dict and ``message_sha256``; ``eip191``: ``{"signature", "r", "s", "v",
    "address"}``; ``sol_tx``: ``{"signature", "signature_hex", "signer", "complete",
    "transaction"}`` (signatures: 64-byte Ed25519 bytes); ``digest``: the signature dict. Each signature is verified first (:class:`SignatureMismatch`)."""
    if decoded.payload_type == "psbt":
        from appliance.payloads.psbt import assemble_psbt

        return assemble_psbt(decoded, signatures)
    if decoded.payload_type == "eth_tx":
        from appliance.payloads.ethereum import assemble_eth_tx

        return assemble_eth_tx(decoded, signatures)
    if decoded.payload_type == "eip712":
        from appliance.payloads.eip712 import assemble_eip712

        return assemble_eip712(decoded, signatures)
    if decoded.payload_type in ("message", "eip191"):
        from appliance.payloads.message import assemble_message

        return assemble_message(decoded, signatures)
    if decoded.payload_type == "sol_tx":
        from appliance.payloads.solana import assemble_sol_tx

        return assemble_sol_tx(decoded, signatures)
    if decoded.payload_type == DIGEST:
        if len(signatures) != 1:
            raise SignatureMismatch("a digest takes exactly one signature")
        item, sig = decoded.items[0], signatures[0]
        if not isinstance(sig, ecdsa.Signature) or not ecdsa.verify(item.public_key, item.digest, sig):
            raise SignatureMismatch("the signature does not verify for the digest")
        return sig.to_dict()
    raise PayloadError("bad_payload_type", f"cannot assemble {decoded.payload_type!r}")


__all__ = [
    "ADDRESS_KINDS",
    "BIP340",
    "DIGEST",
    "ECDSA",
    "ED25519",
    "SCHEMES",
    "PAYLOAD_TYPES",
    "TRANSACTION_TYPES",
    "AssetLimit",
    "DecodedPayload",
    "DigestMismatch",
    "KeyContext",
    "PayloadError",
    "RulesError",
    "SignatureMismatch",
    "SignerKey",
    "SigningItem",
    "Transfer",
    "TxDecision",
    "TxFacts",
    "TxRules",
    "Violation",
    "address_for",
    "assemble",
    "check_claimed_digests",
    "decode_digest",
    "decode_payload",
    "decode_psbt_keys",
    "decode_request",
    "eth_address",
    "evaluate_tx_rules",
    "normalize_address",
    "p2pkh_address",
    "p2wpkh_address",
    "policy_facts",
    "taproot_output_key",
]
