"""Text messages the node hashes itself, so approvers see the text and not a bare digest.

Two payload types, each a JSON string (the message as Unicode text, signed as its UTF-8
bytes, never normalized or trimmed):

- ``message``: digest = SHA-256(UTF-8 bytes) (what ``openssl dgst -sha256 -sign`` or AWS KMS
  ``MessageType=RAW`` sign). Result: the ECDSA signature (``der``, ``r``, ``s``,
  ``recovery_id``) and ``message_sha256``.
- ``eip191``: Ethereum ``personal_sign`` (EIP-191 version 0x45): digest =
  keccak256(b"\\x19Ethereum Signed Message:\\n" + str(len(utf8)) + utf8), computed by
  eth-account's ``encode_defunct`` / ``_hash_eip191_message``. Result: ``signature``, the
  65-byte hex ``r || s || v`` (v = 27 + recovery id, as eth-account's ``sign_message``),
  ``r``, ``s``, ``v`` and ``address`` (the EIP-55 address of the signing key).

A message is 1 to :data:`MAX_MESSAGE_BYTES` bytes of UTF-8 text. So that an approver reads
exactly what is signed, a message with a control character other than tab, line feed and
carriage return (C0, DEL, C1), a bidirectional-text control (U+202A..U+202E,
U+2066..U+2069: text that displays in another order than it is signed) or a lone surrogate
(no UTF-8 form) is refused (``malformed_message``); binary data is out of scope (sign its
digest, or a PSBT / transaction / typed data). A message moves no asset and names no chain:
it has no destination, amount or chain id for the transaction rules (``allowed_destinations``,
``allowed_chain_ids`` and the limits do not apply); a policy allows it by naming the type in
the rule's ``payload_types``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from appliance.payloads.addresses import eth_address
from appliance.payloads.errors import PayloadError, SignatureMismatch
from appliance.payloads.eth_typed import hash_eip191_text
from appliance.payloads.ethereum import recoverable
from appliance.payloads.types import DecodedPayload, KeyContext, SigningItem, TxFacts
from appliance.tss import ecdsa

#: the longest message, in UTF-8 bytes
MAX_MESSAGE_BYTES = 4096
MESSAGE, EIP191 = "message", "eip191"
MESSAGE_TYPES = (MESSAGE, EIP191)
#: characters refused: C0 controls but tab, LF, CR; DEL and C1; bidi embeddings, overrides, isolates
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def message_bytes(payload: Any) -> bytes:
    """The UTF-8 bytes of a message payload, checked (:class:`PayloadError` otherwise)."""
    if not isinstance(payload, str):
        raise PayloadError("wrong_type", "a message payload is a string (UTF-8 text)")
    if len(payload) > MAX_MESSAGE_BYTES:  # a character is at least one byte
        raise PayloadError("payload_too_large", f"message longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = payload.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("malformed_message", "message is not valid Unicode text (a lone surrogate)") from None
    if not data:
        raise PayloadError("malformed_message", "message is empty")
    if len(data) > MAX_MESSAGE_BYTES:
        raise PayloadError("payload_too_large", f"message longer than {MAX_MESSAGE_BYTES} bytes (UTF-8)")
    bad = _UNSAFE.search(payload)
    if bad is not None:
        raise PayloadError("malformed_message", f"message holds control character U+{ord(bad.group()):04X} "
                           f"at position {bad.start()}: only text, tab and line breaks are signed")
    return data


def decode_message(payload_type: str, payload: Any, key: KeyContext) -> DecodedPayload:
    """A ``message`` or ``eip191`` payload: its digest, and the text for approvers."""
    data = message_bytes(payload)
    signer = key.signer
    sha = hashlib.sha256(data).digest()
    summary: dict[str, Any] = {"type": payload_type, "text": payload, "length": len(data),
                               "sha256": sha.hex(), "public_key": signer.public_key.hex(),
                               "path": signer.path}
    if payload_type == MESSAGE:
        digest = sha
        facts = TxFacts(MESSAGE)
    elif payload_type == EIP191:
        digest = hash_eip191_text(payload)
        summary.update(chain="ethereum", signer=eth_address(signer.public_key),
                       message_hash="0x" + digest.hex())
        facts = TxFacts(EIP191)  # bound to no chain: the chain-id rule is for transactions
    else:
        raise PayloadError("bad_payload_type", f"not a message type: {payload_type!r}")
    item = SigningItem(digest, signer.public_key, signer.tweak, signer.path)
    return DecodedPayload(payload_type, (item,), summary, facts, canonical=data)


def assemble_message(decoded: DecodedPayload, signatures: Sequence[ecdsa.Signature]) -> dict:
    """``message``: the signature dict and ``message_sha256``; ``eip191``: ``{"signature" (65
    bytes hex, no 0x), "r", "s", "v", "address"}``. Each signature verified first."""
    if len(signatures) != 1 or len(decoded.items) != 1:
        raise SignatureMismatch("a message takes exactly one signature")
    item, sig = decoded.items[0], signatures[0]
    if decoded.payload_type == MESSAGE:
        if not isinstance(sig, ecdsa.Signature) or not ecdsa.verify(item.public_key, item.digest, sig):
            raise SignatureMismatch("the signature does not verify for the message")
        return {**sig.to_dict(), "message_sha256": item.digest.hex()}
    sig = recoverable(item, sig)
    v = 27 + sig.recovery_id
    return {"signature": (sig.compact() + bytes([v])).hex(), "r": sig.r.to_bytes(32, "big").hex(),
            "s": sig.s.to_bytes(32, "big").hex(), "v": v, "address": eth_address(item.public_key)}


__all__ = ["EIP191", "MAX_MESSAGE_BYTES", "MESSAGE", "MESSAGE_TYPES", "assemble_message", "decode_message",
           "message_bytes"]
