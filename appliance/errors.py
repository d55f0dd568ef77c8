"""Exception classes a caller can catch. Messages never carry secret values."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class of every error this package raises on purpose."""

    code = "error"


class EncodingError(ApplianceError, ValueError):
    """A value could not be decoded: wrong length, not canonical, out of range."""

    code = "bad_encoding"


class TooDeep(EncodingError):
    """A JSON or CBOR document nests deeper than its bound (refused before parsing)."""

    code = "too_deep"


class ProofError(ApplianceError):
    """A zero-knowledge proof failed to verify.

    ``culprit`` is the index of the party whose proof failed, when the caller knows it.
    """

    code = "bad_proof"

    def __init__(self, message: str, culprit: int | None = None) -> None:
        super().__init__(message)
        self.culprit = culprit

    def blame(self, culprit: int) -> "ProofError":
        """The same failure, attributed to ``culprit``."""
        return type(self)(str(self), culprit=culprit)


class ParameterError(ApplianceError, ValueError):
    """A parameter (modulus size, threshold, range) is unacceptable."""

    code = "bad_parameter"
