"""PKCS#11 layer of a node: its token (by label), seal/unseal, per-presignature keys,
identity signatures and transport decryption, every call on one worker thread. The blob
format and :class:`~appliance.sealed.SealContext` are :mod:`appliance.sealed` (the store
uses them without this package).

Public names (imported lazily, so ``python -m hsm.softhsm`` works without python-pkcs11)::

    HSM, HSMConfig, Pin, PublicKeys
    encrypt_to                              (software sender side of transport)
    init_token, SoftHSMToken                (SoftHSM2 token set-up helper)
    HSMError and subclasses                 (hsm.errors)
"""

from __future__ import annotations

from typing import Any

from hsm.errors import (
    HSMConfigError,
    HSMError,
    HSMIntegrityError,
    HSMKeyNotFoundError,
    HSMKeyPolicyError,
    HSMMechanismError,
    HSMModuleError,
    HSMPinError,
    HSMTokenNotFoundError,
    HSMUnavailableError,
)

_LAZY = {
    "HSM": "hsm.token",
    "PublicKeys": "hsm.token",
    "HSMConfig": "hsm.config",
    "Pin": "hsm.config",
    "encrypt_to": "hsm.transport",
    "init_token": "hsm.softhsm",
    "SoftHSMToken": "hsm.softhsm",
}

__all__ = [
    "HSMConfigError", "HSMError", "HSMIntegrityError", "HSMKeyNotFoundError",
    "HSMKeyPolicyError", "HSMMechanismError", "HSMModuleError", "HSMPinError", "HSMTokenNotFoundError",
    "HSMUnavailableError", *_LAZY,
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'hsm' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
