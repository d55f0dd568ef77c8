"""Sign requests for a FROST key (``schnorr-bip340``, ``ed25519``): what exactly is signed,
what is refused, and the check of an aggregate before it is released.

What is signed (one signature, path ``m``):

- ``digest`` (32 bytes): the 32 bytes themselves, for both schemes (BIP340 signs 32-byte
  messages; an Ed25519 signature is over these 32 bytes as its message).
- ``message`` (text): ``ed25519`` signs its UTF-8 bytes (what Solana's and most Ed25519
  wallets' "sign message" sign); ``schnorr-bip340`` signs SHA-256 of them (BIP340 messages are
  32 bytes; the same digest an ECDSA key's ``message`` signs).
- ``eth_tx``, ``eip712``, ``eip191`` are Ethereum ECDSA constructs and ``psbt`` is refused
  until P2TR key-path PSBT inputs are decoded (issue 16, the payloads part): all four answer
  ``scheme_mismatch`` (409), before anything is stored.
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
from typing import Any

from coincurve import PublicKeyXOnly
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.keys import frost_keys
from appliance.payloads import DIGEST, DecodedPayload, PayloadError, SigningItem, TxFacts
from appliance.payloads.message import MESSAGE, message_bytes
from appliance.policy import BIP340, ED25519
from appliance.tss.bip32 import DerivationError
from appliance.tss.frost import bip32

#: payload types a FROST key cannot sign (answered ``scheme_mismatch``)
ECDSA_ONLY = ("eth_tx", "eip712", "eip191", "psbt")


def decode(row: dict, *, digest: Any, payload: Any, payload_type: str | None, path: str) -> DecodedPayload:
    """What this node signs for a request on the FROST key ``row`` (PayloadError otherwise)."""
    scheme = row["scheme"]
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
                           "(an ECDSA construct, or not decoded for Schnorr keys yet)")
    raise PayloadError("bad_payload_type", f"payload_type {payload_type!r} cannot be signed by a {scheme} key")


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
    the signature is over: the text or its SHA-256, hex)."""
    if dec.payload_type == MESSAGE:
        return {"sig": sigs[0].hex(), "signed": dec.items[0].digest.hex()}
    return None


__all__ = ["ECDSA_ONLY", "decode", "signed_result", "verify"]
