"""Strict, schema-checked encoding of protocol payloads (CBOR, deterministic).

A payload is a frozen dataclass. It is encoded as a CBOR array of its fields in declaration
order; each field is encoded by its annotated type:

- ``int`` (and gmpy2 ``mpz``): a CBOR integer (bignums included), never a bool;
- ``bytes``: a byte string; ``str``: a text string; ``bool``: true/false;
- ``Point``: the 33-byte compressed SEC1 byte string, decoded strictly (never infinity);
- ``list[T]`` / ``tuple[T, ...]``: an array; ``dict[int, T]``: a map with integer keys;
- ``Optional[T]``: null or T; another dataclass: a nested array.

Decoding takes the expected type and rejects anything else: wrong arity, wrong types,
non-canonical points, oversized input. Every failure is an ``EncodingError``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any, TypeVar

import cbor2
from gmpy2 import mpz

from appliance.errors import EncodingError
from appliance.tss.cbor_depth import check_depth
from appliance.tss.group import Point

T = TypeVar("T")

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_INT_BITS = 4 * 3072 + 1024
MAX_ITEMS = 4096

_MPZ = type(mpz(0))


@lru_cache(maxsize=None)
def _hints(cls: type) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)


# the same few payload types are walked for every message: their typing facts once each
_origin = lru_cache(maxsize=None)(typing.get_origin)
_args = lru_cache(maxsize=None)(typing.get_args)
_is_dataclass = lru_cache(maxsize=None)(dataclasses.is_dataclass)


def _to_plain(value: Any, tp: Any) -> Any:
    origin = _origin(tp)
    if tp is Any:
        raise EncodingError("payload fields need concrete types")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in _args(tp) if a is not type(None)]
        if value is None:
            return None
        return _to_plain(value, args[0])
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, _MPZ)):
            raise EncodingError("expected an integer")
        return int(value)
    if tp is Point:
        if not isinstance(value, Point):
            raise EncodingError("expected a point")
        return value.to_bytes()
    if tp in (bytes, str, bool):
        if not isinstance(value, tp):
            raise EncodingError(f"expected {tp.__name__}")
        return value
    if origin in (list, tuple):
        args = _args(tp)
        return [_to_plain(v, args[0]) for v in value]
    if origin is dict:
        kt, vt = _args(tp)
        return {_to_plain(k, kt): _to_plain(v, vt) for k, v in sorted(value.items())}
    if _is_dataclass(tp):
        if not isinstance(value, tp):
            raise EncodingError(f"expected {tp.__name__}")
        return [_to_plain(getattr(value, name), ftp) for name, ftp in _hints(tp)]
    raise EncodingError(f"unsupported payload type {tp!r}")


def _from_plain(obj: Any, tp: Any) -> Any:
    origin = _origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in _args(tp) if a is not type(None)]
        if obj is None:
            return None
        return _from_plain(obj, args[0])
    if tp is int:
        if isinstance(obj, bool) or not isinstance(obj, int):
            raise EncodingError("expected an integer")
        if obj.bit_length() > MAX_INT_BITS:
            raise EncodingError("integer too large")
        return obj
    if tp is Point:
        if not isinstance(obj, bytes):
            raise EncodingError("expected point bytes")
        return Point.from_bytes(obj)
    if tp in (bytes, str, bool):
        if type(obj) is not tp:
            raise EncodingError(f"expected {tp.__name__}")
        return obj
    if origin in (list, tuple):
        if not isinstance(obj, list) or len(obj) > MAX_ITEMS:
            raise EncodingError("expected a bounded array")
        args = _args(tp)
        items = [_from_plain(v, args[0]) for v in obj]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(obj, dict) or len(obj) > MAX_ITEMS:
            raise EncodingError("expected a bounded map")
        kt, vt = _args(tp)
        return {_from_plain(k, kt): _from_plain(v, vt) for k, v in obj.items()}
    if _is_dataclass(tp):
        fields = _hints(tp)
        if not isinstance(obj, list) or len(obj) != len(fields):
            raise EncodingError(f"{tp.__name__}: expected {len(fields)} fields")
        return tp(**{name: _from_plain(v, ftp) for (name, ftp), v in zip(fields, obj)})
    raise EncodingError(f"unsupported payload type {tp!r}")


def encode(value: Any, tp: Any | None = None) -> bytes:
    """Deterministic CBOR of a payload dataclass (or a value of type ``tp``)."""
    tp = tp if tp is not None else type(value)
    return cbor2.dumps(_to_plain(value, tp), canonical=True)


def decode(data: bytes, tp: type[T]) -> T:
    """Decode ``data`` as ``tp``, rejecting anything that does not match exactly."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_PAYLOAD_BYTES:
        raise EncodingError("payload missing or too large")
    try:
        check_depth(data)  # before cbor2 recurses
        obj = cbor2.loads(bytes(data))
    except Exception as exc:
        raise EncodingError("payload is not valid CBOR") from exc
    try:
        value = _from_plain(obj, tp)
    except EncodingError:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodingError(f"payload does not match {getattr(tp, '__name__', tp)}") from exc
    # the decoded plain items re-encoded (not ``value``: the typed walk maps each field to the
    # same plain item it was read from, so this is the same bytes without a second walk)
    if cbor2.dumps(obj, canonical=True) != bytes(data):
        raise EncodingError("payload is not in canonical encoding")
    return value
