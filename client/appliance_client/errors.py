"""The base of every error raised on purpose, shared with the node: each carries a stable
machine-readable ``code`` and no HTTP status (:mod:`appliance.errors` builds on these)."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class of every error the appliance (node or client) raises on purpose."""

    code = "error"


class EncodingError(ApplianceError, ValueError):
    """A value could not be decoded: wrong length, not canonical, out of range."""

    code = "bad_encoding"


class TooDeep(EncodingError):
    """A JSON or CBOR document nests deeper than its bound (refused before parsing)."""

    code = "too_deep"
