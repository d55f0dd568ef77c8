"""The attributes of every key a node keeps on its token (hsm/token.py's table): the
templates keys are made with, and the policies a key found on the token must match
(:func:`check_policy` refuses one with weaker attributes, naming them)."""

from __future__ import annotations

from typing import Any

import pkcs11
from asn1crypto.core import OctetString
from pkcs11 import Attribute as A

from hsm.errors import HSMKeyPolicyError

NO_CAPS_SECRET = {A.ENCRYPT: False, A.DECRYPT: False, A.WRAP: False, A.UNWRAP: False,
                   A.SIGN: False, A.VERIFY: False, A.DERIVE: False}
_NO_CAPS_PRIVATE = {A.DECRYPT: False, A.UNWRAP: False, A.SIGN: False, A.SIGN_RECOVER: False,
                    A.DERIVE: False}
_LOCKED = {A.TOKEN: True, A.PRIVATE: True, A.SENSITIVE: True, A.EXTRACTABLE: False,
           A.MODIFIABLE: False, A.COPYABLE: False}
PUBLIC_KEY_TEMPLATE = {A.TOKEN: True, A.PRIVATE: False, A.VERIFY: False, A.ENCRYPT: False, A.WRAP: False,
           A.DERIVE: False, A.VERIFY_RECOVER: False, A.MODIFIABLE: False}


def aes_key_template(destroyable: bool) -> dict:
    t = {**NO_CAPS_SECRET, **_LOCKED, A.ENCRYPT: True, A.DECRYPT: True,
         A.DESTROYABLE: destroyable}
    return t


def mac_key_template() -> dict:
    return {**NO_CAPS_SECRET, **_LOCKED, A.SIGN: True, A.VERIFY: True, A.DESTROYABLE: False}


def ec_private_template(capability: Any) -> dict:
    return {**_NO_CAPS_PRIVATE, **_LOCKED, capability: True, A.DESTROYABLE: False}


# Attributes read back and required on every key we use (besides the template).
_ALWAYS = {A.NEVER_EXTRACTABLE: True, A.ALWAYS_SENSITIVE: True}


def _policy(template: dict) -> dict:
    p = {k: v for k, v in template.items() if k not in (A.DESTROYABLE,)}
    p.update(_ALWAYS)
    return p


AES_POLICY = _policy(aes_key_template(True))
MAC_POLICY = _policy(mac_key_template())
IDENTITY_POLICY = _policy(ec_private_template(A.SIGN))
TRANSPORT_POLICY = _policy(ec_private_template(A.DERIVE))


def check_policy(key: Any, policy: dict, what: str) -> None:
    """Refuse a key whose attributes differ from ``policy`` (one C_GetAttributeValue)."""
    attrs = list(policy)
    try:
        values = key.get_attributes(attrs)
    except pkcs11.exceptions.AttributeTypeInvalid:
        raise HSMKeyPolicyError(f"{what}: the token does not report its attributes") from None
    bad = [a.name for a in attrs if values.get(a) != policy[a]]
    if bad:
        raise HSMKeyPolicyError(
            f"{what} on the token has refused attributes: {', '.join(sorted(bad))}"
        )


def point_from_ec_point(der: bytes) -> bytes:
    raw = bytes(OctetString.load(der))
    if len(raw) != 65 or raw[0] != 4:
        raise HSMKeyPolicyError("public key on the token is not an uncompressed point")
    return raw


def compress_point(point65: bytes) -> bytes:
    x, y = point65[1:33], point65[33:]
    return bytes([2 + (y[-1] & 1)]) + x
