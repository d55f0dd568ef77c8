"""Exceptions of the HSM layer.

Every message names the token label, the module path or the kind of object involved and
never a PIN, a key value or a plaintext. The original PKCS#11 exception is not chained
(``raise ... from None``) where it could carry a caller's argument.
"""

from __future__ import annotations

from appliance.errors import ApplianceError


class HSMError(ApplianceError):
    """Base class of every error of the HSM layer."""

    code = "hsm_error"


class HSMConfigError(HSMError):
    """The HSM configuration is unusable: no PIN source, unreadable PIN file, conflicting
    SoftHSM configurations in one process, a token opened twice."""

    code = "hsm_config"


class HSMModuleError(HSMError):
    """The PKCS#11 module (shared library) is missing or cannot be loaded."""

    code = "hsm_module_missing"


class HSMTokenNotFoundError(HSMError):
    """No token with the configured label is present (never initialized, or removed)."""

    code = "hsm_token_missing"


class HSMPinError(HSMError):
    """The token refused the PIN (wrong, locked or expired)."""

    code = "hsm_bad_pin"


class HSMUnavailableError(HSMError):
    """The token went away during operation and could not be reopened (yet)."""

    code = "hsm_unavailable"


class HSMIntegrityError(HSMError):
    """A sealed blob or transport envelope failed authentication: flipped bits, wrong
    associated data (node, key, epoch, kind, presignature), truncated or malformed.

    SoftHSM 2.6 reports a bad AES-GCM tag as CKR_GENERAL_ERROR; the HSM layer tells that
    apart from a lost token with a health probe and raises this class.
    """

    code = "hsm_integrity"


class HSMKeyNotFoundError(HSMError):
    """A key the operation needs is not on the token. For a presignature this means its
    per-presignature key was destroyed when it was spent (or discarded)."""

    code = "hsm_key_missing"


class HSMKeyPolicyError(HSMError):
    """A key on the token carries attributes this node refuses (extractable, not
    sensitive, extra capabilities), or a key that must be unique already exists."""

    code = "hsm_key_policy"


class HSMMechanismError(HSMError):
    """The token does not offer a mechanism the node needs (no authenticated sealing
    mechanism, no ECDSA, ...): the node refuses to start and the message names what is
    missing (:mod:`hsm.sealing`)."""

    code = "hsm_mechanism_missing"
