"""Errors of the payload layer. Every one carries a stable ``code`` (api/errors.py maps it to an
HTTP status).

``PayloadError`` is what a client caused (a malformed, truncated, oversized or unsupported
payload): the API answers 400 with ``{"error": {"code": e.code, "message": str(e)}}`` and
stores nothing. ``DigestMismatch`` is what a coordinator (or client) caused by claiming a
digest the payload does not decode to: the signer refuses.
"""

from __future__ import annotations

from appliance.errors import ApplianceError

#: longest message kept (library messages can quote input; never let them grow unbounded)
_MAX_MESSAGE = 300


class PayloadError(ApplianceError, ValueError):
    """A payload that cannot be signed as given. ``code`` is machine-readable, e.g.
    ``malformed_psbt``, ``payload_too_large``, ``taproot_unsupported``."""

    code = "bad_payload"

    def __init__(self, code: str, message: str) -> None:
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.code, self.message))


class DigestMismatch(PayloadError):
    """The digests someone asks us to sign are not the ones the payload decodes to."""

    def __init__(self, message: str, code: str = "digest_mismatch") -> None:
        super().__init__(code, message)

    def __reduce__(self):
        return (type(self), (self.message, self.code))


class SignatureMismatch(PayloadError):
    """A signature handed to an assembler does not verify for its digest and key (a protocol
    or wiring bug, never the client's fault): nothing is assembled."""

    def __init__(self, message: str, code: str = "signature_mismatch") -> None:
        super().__init__(code, message)

    def __reduce__(self):
        return (type(self), (self.message, self.code))


__all__ = ["DigestMismatch", "PayloadError", "SignatureMismatch"]
