"""The storage layer's errors (domain errors: no HTTP status, see :mod:`appliance.errors`)."""

from __future__ import annotations

from appliance.errors import ApplianceError


class StoreError(ApplianceError):
    code = "store_error"


class NotFoundError(StoreError, KeyError):
    code = "not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConflictError(StoreError):
    code = "conflict"


class DuplicateKeyError(ConflictError):
    """A key id that is already stored (or already bound to an aux-info)."""

    code = "key_exists"


class NotSealedError(StoreError, ValueError):
    """A value given as sealed does not parse as a sealed blob."""

    code = "not_sealed"


class PresignatureUnavailable(StoreError):
    """The presignature is not (or no longer) available to this caller."""

    code = "presignature_unavailable"
