"""The mechanisms a node uses on its token, chosen when it opens from what the token offers
(C_GetMechanismList, C_GetMechanismInfo), and sealing with them. Worker thread only.

Sealing, in this order of preference (the blob's version byte records which one sealed it,
:mod:`appliance.sealed`; both stay readable):

1. ``CKM_AES_GCM`` with an AES-256 key: blob version 1.
2. ``CKM_AES_CBC_PAD`` with the AES-256 key for confidentiality, then ``CKM_SHA256_HMAC``
   with the node's HSM-held MAC key (``appliance/mac``, a 256-bit generic secret made with
   ``CKM_GENERIC_SECRET_KEY_GEN``, SIGN and VERIFY only) over header || AAD || IV ||
   ciphertext: encrypt-then-MAC, blob version 2. The MAC is checked inside the HSM
   (C_Verify) before anything is decrypted.

No other combination is authenticated, so a token that offers neither is refused by name
(:class:`HSMMechanismError`). The identity key needs ``CKM_EC_KEY_PAIR_GEN`` and
``CKM_ECDSA``, the transport key ``CKM_ECDH1_DERIVE``, every AES key ``CKM_AES_KEY_GEN``.
A mechanism counts as offered only if its C_GetMechanismInfo flags allow the use (ENCRYPT
and DECRYPT, SIGN and VERIFY, DERIVE, GENERATE...) and, for AES, 32-byte keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import pkcs11
from pkcs11 import Mechanism, MechanismFlag

from appliance.sealed import (
    BLOB_VERSION,
    BLOB_VERSION_CBC_HMAC,
    IV_LEN,
    NONCE_LEN,
    BlobHeader,
    SealContext,
    build_blob,
    mac_input,
)
from hsm.errors import HSMIntegrityError, HSMMechanismError

GCM = "CKM_AES_GCM"
CBC_HMAC = "CKM_AES_CBC_PAD+CKM_SHA256_HMAC"
SEALINGS = (GCM, CBC_HMAC)  # preference order

_F = MechanismFlag
# mechanism -> the flags it must carry for our use
_NEEDS: dict[Mechanism, Any] = {
    Mechanism.AES_KEY_GEN: _F.GENERATE,
    Mechanism.EC_KEY_PAIR_GEN: _F.GENERATE_KEY_PAIR,
    Mechanism.ECDSA: _F.SIGN,
    Mechanism.ECDH1_DERIVE: _F.DERIVE,
    Mechanism.AES_GCM: _F.ENCRYPT | _F.DECRYPT,
    Mechanism.AES_CBC_PAD: _F.ENCRYPT | _F.DECRYPT,
    Mechanism.SHA256_HMAC: _F.SIGN | _F.VERIFY,
    Mechanism.GENERIC_SECRET_KEY_GEN: _F.GENERATE,
}
_AES = (Mechanism.AES_KEY_GEN, Mechanism.AES_GCM, Mechanism.AES_CBC_PAD)
NODE_KEYS = (Mechanism.AES_KEY_GEN, Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA,
             Mechanism.ECDH1_DERIVE)
_CBC_HMAC = (Mechanism.AES_CBC_PAD, Mechanism.SHA256_HMAC, Mechanism.GENERIC_SECRET_KEY_GEN)


def ckm(m: Mechanism) -> str:
    return f"CKM_{m.name}"


@dataclass(frozen=True)
class Mechanisms:
    """What the node uses on this token."""

    sealing: str  # GCM or CBC_HMAC
    usable: frozenset  # the mechanisms of _NEEDS the token offers with the flags we need

    @property
    def can_gcm(self) -> bool:
        return Mechanism.AES_GCM in self.usable

    @property
    def can_cbc_hmac(self) -> bool:
        return all(m in self.usable for m in _CBC_HMAC)


def usable(offered: set, info: Callable[[Mechanism], Any]) -> frozenset:
    """The mechanisms of ours that the token offers with the flags (and AES key size) we
    need. ``info``: C_GetMechanismInfo (``slot.get_mechanism_info``)."""
    out = set()
    for m, flags in _NEEDS.items():
        if m not in offered:
            continue
        try:
            mi = info(m)
        except pkcs11.PKCS11Error:
            continue
        if (mi.flags & flags) != flags:
            continue
        if m in _AES and mi.max_key_length < 32:  # AES lengths are in bytes
            continue
        out.add(m)
    return frozenset(out)


def choose(offered: set, info: Callable[[Mechanism], Any], token_label: str) -> Mechanisms:
    """The sealing mechanism to use, or :class:`HSMMechanismError` naming what is missing."""
    have = usable(offered, info)
    lacking = [ckm(m) for m in NODE_KEYS if m not in have]
    if lacking:
        raise HSMMechanismError(
            f"token {token_label!r} lacks mechanisms the node keys need: {', '.join(lacking)}"
        )
    if Mechanism.AES_GCM in have:
        return Mechanisms(GCM, have)
    missing = [ckm(m) for m in _CBC_HMAC if m not in have]
    if missing:
        raise HSMMechanismError(
            f"token {token_label!r}: the token offers neither CKM_AES_GCM nor "
            f"CKM_AES_CBC_PAD+CKM_SHA256_HMAC (missing: {', '.join([GCM, *missing])}); "
            "no authenticated sealing mechanism"
        )
    return Mechanisms(CBC_HMAC, have)


# ---- sealing (worker thread) -------------------------------------------------------------

def encrypt(mech: Mechanisms, key: Any, mac_key: Any, label: str, node_id: str,
            context: SealContext, plaintext: bytes) -> bytes:
    """A blob of the token's sealing mechanism: ``key`` encrypts, ``mac_key`` (version 2)
    authenticates."""
    if mech.sealing == GCM:
        nonce = os.urandom(NONCE_LEN)
        aad = BlobHeader(BLOB_VERSION, label, nonce).aad(node_id, context)
        ct = key.encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                         mechanism_param=pkcs11.GCMParams(nonce, aad))
        return build_blob(label, nonce, ct)
    iv = os.urandom(IV_LEN)
    header = BlobHeader(BLOB_VERSION_CBC_HMAC, label, iv)
    ct = key.encrypt(plaintext, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
    mac = mac_key.sign(mac_input(header, node_id, context, ct), mechanism=Mechanism.SHA256_HMAC)
    return build_blob(label, iv, ct + mac, BLOB_VERSION_CBC_HMAC)


def decrypt(mech: Mechanisms, key: Any, mac_key: Any, header: BlobHeader, body: bytes,
            node_id: str, context: SealContext, failures: tuple) -> bytes | None:
    """The plaintext, or None when the token refused it (``failures``: the PKCS#11
    exceptions that mean a failed tag or padding; the caller tells them from a lost token).
    A failed HMAC is :class:`HSMIntegrityError` at once: C_Verify said so."""
    what = f"sealed {context.kind}"
    if header.version == BLOB_VERSION:
        if not mech.can_gcm:
            raise HSMIntegrityError(f"{what} names CKM_AES_GCM, which this token does not offer")
        try:
            return key.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=pkcs11.GCMParams(
                header.nonce, header.aad(node_id, context)))
        except failures:
            return None
    if not mech.can_cbc_hmac:
        raise HSMIntegrityError(f"{what} names {CBC_HMAC}, which this token does not offer")
    if mac_key is None:  # this token never sealed a version-2 blob
        raise HSMIntegrityError(f"{what} names {CBC_HMAC}, but this token holds no MAC key")
    ct, mac = body[: -32], body[-32:]
    if not mac_key.verify(mac_input(header, node_id, context, ct), mac,
                          mechanism=Mechanism.SHA256_HMAC):
        raise HSMIntegrityError(
            f"{what} failed authentication (tampered, or not sealed for this node, key, "
            "epoch or context)"
        )
    try:
        return key.decrypt(ct, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=header.nonce)
    except failures:
        return None
