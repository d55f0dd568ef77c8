"""Sign requests for a FROST key (``schnorr-bip340``, ``ed25519``): what exactly is signed,
what is refused, and the check of an aggregate before it is released.

What is signed (one signature, path ``m``):

- ``digest`` (32 bytes): the 32 bytes themselves, for both schemes (BIP340 signs 32-byte
  messages; an Ed25519 signature is over these 32 bytes as its message).
- ``message`` (text): ``ed25519`` signs its UTF-8 bytes (what Solana's and most Ed25519
  wallets' "sign message" sign); ``schnorr-bip340`` signs SHA-256 of them (BIP340 messages are
  32 bytes; the same digest an ECDSA key's ``message`` signs).
- ``psbt`` (``schnorr-bip340``): the P2TR key-path inputs of the key (``payloads.decode_request``
  with the key's scheme: each item is a BIP341 sighash signed for ``output_key(P,
  item.merkle_root)``, the input's tap merkle root or b""); with a derivation path, those of
  the child C (the request's path, as for a digest: the inputs paying output_key(C, root));
  PSBT BIP32 records (``tap_bip32_derivation``) are not read, so an input of another child is
  not ours. ``sol_tx`` (``ed25519``): the Solana message's bytes themselves. The other pairing
  (``psbt`` for ed25519, ``sol_tx`` for BIP340) is the decoder's ``scheme_mismatch``.
- ``eth_tx``, ``eip712``, ``eip191`` are Ethereum ECDSA constructs: ``scheme_mismatch`` (409),
  before anything is stored.
- A derivation path other than ``m``: for ``schnorr-bip340`` the BIP32 child C of the key
  (``frost_keys.child``: CKDpub from (chain code, 02 || x(P))), signed for C's key-path
  output key Q_C = output_key(C, b"") (each signer derives its share with
  ``bip32.derive_key`` from its own decode of the signed path, then the b"" tap tweak; the
  item's ``public_key`` is Q_C, what ``GET .../derive?path=`` shows); a key without a chain
  code: ``no_chain_code``; ``ed25519``: ``not_supported_for_scheme`` (there is no standard
  non-hardened Ed25519 derivation).

BIP340 keys sign for the Taproot output key Q (``frost_keys.merkle_root``: b""), the
``public_key`` clients see, so every signature verifies under it. Verification before
release: BIP340 by libsecp256k1 (coincurve ``PublicKeyXOnly.verify``), Ed25519 (RFC 8032) by
``cryptography``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from coincurve import PublicKeyXOnly
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.keys import frost_keys
from appliance.payloads import (
    DIGEST,
    DecodedPayload,
    KeyContext,
    PayloadError,
    SigningItem,
    TxFacts,
    assemble,
    decode_request,
    taproot_output_key,
)
from appliance.payloads.message import MESSAGE, message_bytes
from appliance.policy import BIP340, ED25519
from appliance.tss.bip32 import DerivationError
from appliance.tss.frost import bip32

#: payload types a FROST key cannot sign (answered ``scheme_mismatch``)
ECDSA_ONLY = ("eth_tx", "eip712", "eip191")
#: transactions a FROST key signs through the payload decoders (psbt: BIP340; sol_tx: ed25519)
TRANSACTIONS = ("psbt", "sol_tx")


def decode(row: dict, *, digest: Any, payload: Any, payload_type: str | None, path: str,
           network: str = "mainnet") -> DecodedPayload:
    """What this node signs for a request on the FROST key ``row`` (PayloadError otherwise)."""
    scheme = row["scheme"]
    if digest is None and payload_type in TRANSACTIONS:
        return _decode_transaction(row, payload, payload_type, path, network)
    pk = frost_keys.shown_public_key(scheme, row["public_key"])
    if path != "m":
        pk = _child_key(row, path)
    if digest is not None:
        d = bytes.fromhex(digest) if isinstance(digest, str) else bytes(digest)
        if len(d) != 32:
            raise PayloadError("bad_digest", "digest must be 32 bytes")
        summary = {"type": DIGEST, "digest": d.hex(), "public_key": pk.hex(), "path": path, "scheme": scheme,
                   "warnings": ["raw digest: the appliance cannot tell what it signs"]}
        return DecodedPayload(DIGEST, (SigningItem(d, pk, 0, path),), summary, TxFacts(DIGEST), canonical=d)
    if payload_type == MESSAGE:
        data = message_bytes(payload)
        sha = hashlib.sha256(data).digest()
        signed = data if scheme == ED25519 else sha
        summary = {"type": MESSAGE, "text": payload, "length": len(data), "sha256": sha.hex(),
                   "public_key": pk.hex(), "path": path, "scheme": scheme,
                   "signs": "the UTF-8 text" if scheme == ED25519 else "SHA-256 of the UTF-8 text"}
        return DecodedPayload(MESSAGE, (SigningItem(signed, pk, 0, path),), summary, TxFacts(MESSAGE),
                              canonical=data)
    if payload_type in ECDSA_ONLY:
        raise PayloadError("scheme_mismatch", f"a {scheme} key cannot sign a {payload_type} payload "
                           "(an Ethereum ECDSA construct)")
    raise PayloadError("bad_payload_type", f"payload_type {payload_type!r} cannot be signed by a {scheme} key")


def _decode_transaction(row: dict, payload: Any, payload_type: str, path: str, network: str) -> DecodedPayload:
    """A ``psbt`` or ``sol_tx`` decoded by :mod:`appliance.payloads` for this key (its
    scheme picks the inputs; the wrong pairing is the decoder's ``scheme_mismatch``)."""
    scheme, key = row["scheme"], row["public_key"]
    if path != "m":
        _child_key(row, path)  # ed25519, no chain code, a bad path: their exact refusals
        key = frost_keys.child(scheme, row["public_key"], row["chain_code"], path)[0].public_key
    kc = KeyContext(key, None, None, scheme)
    dec = decode_request(kc, payload=payload, payload_type=payload_type, network=network)
    if path == "m":
        return dec
    items = tuple(replace(it, path=path) for it in dec.items)  # each signer derives C's share
    summary = dict(dec.summary)
    if isinstance(summary.get("inputs"), list):  # the inputs of C are ours at this path
        summary["inputs"] = [dict(r, path=path) if r.get("ours") else r for r in summary["inputs"]]
    return replace(dec, items=items, summary=summary)


def signing_target(scheme: str, item: SigningItem) -> tuple[bytes, bytes | None, bytes]:
    """``(message, merkle_root, key)`` of one item: the bytes FROST signs, the BIP341 tweak it
    signs with (None: Ed25519) and the 32-byte key the signature verifies under.

    - ``ed25519``: the item's ``signed_bytes`` (a Solana message itself; else the digest or
      text) under the key.
    - ``schnorr-bip340``, a P2TR input (``item.merkle_root`` set): the BIP341 sighash under
      output_key(P, merkle_root) of the item's internal key P.
    - ``schnorr-bip340`` otherwise (digest, message): the digest under the item's key, which
      is already the output key Q (or Q_C) of a key-path-only output (``merkle_root`` b"")."""
    if scheme == ED25519:
        return item.signed_bytes, None, item.public_key
    if item.merkle_root is not None:
        return item.digest, item.merkle_root, taproot_output_key(item.public_key, item.merkle_root)
    return item.digest, frost_keys.merkle_root(scheme), item.public_key


def _child_key(row: dict, path: str) -> bytes:
    """The x-only output key Q_C of a ``schnorr-bip340`` key's child at ``path``."""
    if row["scheme"] == ED25519:
        raise PayloadError("not_supported_for_scheme", bip32.ED25519_REFUSAL)
    if not row.get("chain_code"):
        raise PayloadError("no_chain_code", "this key has no chain code (made before BIP32 for FROST keys)")
    try:
        return frost_keys.child(row["scheme"], row["public_key"], row["chain_code"], path)[1]
    except DerivationError as exc:
        raise PayloadError("bad_derivation_path", str(exc)) from None


def verify(scheme: str, public_key: bytes, message: bytes, sig: bytes) -> bool:
    """BIP340 (libsecp256k1) or RFC 8032 (``cryptography``) verification of ``sig``."""
    if len(sig) != 64 or len(public_key) != 32:
        return False
    if scheme == BIP340:
        try:
            return bool(PublicKeyXOnly(public_key).verify(sig, message))
        except ValueError:
            return False
    if scheme == ED25519:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(sig, message)
            return True
        except (InvalidSignature, ValueError):
            return False
    return False


def signed_result(dec: DecodedPayload, sigs: list[bytes]) -> dict | None:
    """The request's ``result``: None for a digest; for a message ``{sig, signed}`` (what
    the signature is over: the text or its SHA-256, hex); for a ``psbt`` or ``sol_tx`` the
    signed transaction (:func:`appliance.payloads.assemble`, which verifies each signature)."""
    if dec.payload_type in TRANSACTIONS:
        return assemble(dec, sigs)
    if dec.payload_type == MESSAGE:
        return {"sig": sigs[0].hex(), "signed": dec.items[0].digest.hex()}
    return None


__all__ = ["ECDSA_ONLY", "TRANSACTIONS", "decode", "signed_result", "signing_target", "verify"]
