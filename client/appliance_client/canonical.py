"""RFC 8785 JSON Canonicalization Scheme (JCS), restricted to the values we sign and hash.

Every statement a person or a node signs (sign requests, approvals, policy updates, audit
checkpoints) and every audit entry is a JSON object made only of strings, integers, booleans,
null, lists and objects. :func:`canonical_json` turns such a value into its RFC 8785 bytes
(via the maintained ``rfc8785`` package: keys sorted by UTF-16 code units, no whitespace,
ECMAScript string escaping, UTF-8) after checking that it stays within that subset:

* no floats (their canonical form depends on shortest round-trip printing; we never need
  them: times are integer seconds or strings),
* integers within +/-(2**53 - 1) (what every JSON implementation reads exactly),
* object keys are strings, strings are valid Unicode without lone surrogates,
* no other types (bytes, sets, tuples are refused: encode bytes as hex yourself).

Two distinct values of this subset never give the same bytes, so a signature over
``canonical_json(v)`` binds exactly ``v``. :func:`parse_canonical` is the inverse that also
checks the input *was* canonical (so an export cannot smuggle in a differently spelled copy).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from appliance_client.bounded import check_json_depth
from appliance_client.errors import EncodingError

MAX_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 32


class CanonicalError(EncodingError):
    """A value outside the canonical JSON subset, or bytes that are not canonical."""

    code = "not_canonical"


def _check(value: Any, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise CanonicalError("value nested too deeply")
    if value is None or value is True or value is False:
        return
    t = type(value)
    if t is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise CanonicalError("integer outside the exact JSON range (2**53 - 1)")
        return
    if t is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalError("string is not valid Unicode (lone surrogate)") from None
        return
    if t is list:
        for v in value:
            _check(v, depth + 1)
        return
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise CanonicalError("object keys must be strings")
            _check(k, depth + 1)
            _check(v, depth + 1)
        return
    raise CanonicalError(f"{t.__name__} is not allowed in canonical JSON")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical bytes of ``value`` (strings, ints, bools, None, lists, dicts)."""
    _check(value)
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:  # pragma: no cover - _check catches these
        raise CanonicalError(str(exc)) from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical bytes of ``value``."""
    return sha256_hex(canonical_json(value))


def _no_floats(s: str) -> Any:
    raise CanonicalError("floats are not allowed in canonical JSON")


def _no_constants(s: str) -> Any:
    raise CanonicalError(f"{s} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise CanonicalError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_json(data: bytes | str) -> Any:
    """Parse JSON strictly: no duplicate keys, no floats, no NaN/Infinity."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise CanonicalError("not UTF-8") from None
    try:
        check_json_depth(data)  # before json recurses
        return json.loads(data, object_pairs_hook=_unique_keys, parse_float=_no_floats,
                          parse_constant=_no_constants)
    except CanonicalError:
        raise
    except (ValueError, RecursionError) as exc:  # TooDeep is a ValueError too
        raise CanonicalError(f"not JSON: {exc}") from None


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and check that it is exactly the canonical encoding of what it holds."""
    value = parse_json(data)
    if canonical_json(value) != bytes(data):
        raise CanonicalError("JSON is not in canonical (RFC 8785) form")
    return value
