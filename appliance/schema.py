"""Typed schemas for configuration files (msgspec Structs with ``forbid_unknown_fields``) and
the one way their errors are told: the file, the table and the key, then what is wrong, e.g.
``node.toml: [node] presign_pol: unknown key (did you mean presign_pool?)`` or
``node.toml: [node] workers: expected int, got str "two"``.

:func:`decode` converts a parsed TOML (or JSON) mapping into a Struct, strictly (no string
read as a number), and raises ``error(message)`` with such a message on the first problem.
Top-level Struct fields whose type is a Struct are tables (``[node]``), lists of Structs arrays
of tables (``[[nodes]] #2``, counted from 1); a top-level scalar is named alone."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

T = TypeVar("T")

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")  # msgspec writes a dict key as [...]


def _path(path: str) -> list[str | int]:
    return [name or (int(i) if i.isdigit() else "*") for name, i in _STEP.findall(path[1:])]


def _strip(t: mi.Type) -> mi.Type:
    """The type under Optional/Union (the first Struct, list or dict in it), else ``t``."""
    if isinstance(t, mi.UnionType):
        for u in t.types:
            if isinstance(u, (mi.StructType, mi.ListType, mi.DictType, mi.LiteralType)):
                return u
        return t.types[0]
    return t


def _type_at(root: mi.Type, steps: list[str | int]) -> mi.Type | None:
    t: mi.Type | None = root
    for s in steps:
        t = _strip(t) if t is not None else None
        if isinstance(s, int) and isinstance(t, (mi.ListType, mi.VarTupleType)):
            t = t.item_type
        elif isinstance(s, str) and isinstance(t, mi.StructType):
            t = next((f.type for f in t.fields if f.encode_name == s), None)
        elif isinstance(s, str) and isinstance(t, mi.DictType):
            t = t.value_type
        else:
            return None
    return t


def _value_at(value: Any, steps: list[str | int]) -> Any:
    for s in steps:
        try:
            value = value[s]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _shown(v: Any) -> str:
    if isinstance(v, (str, bool, int, float)):
        return f"{type(v).__name__} {json.dumps(v)}"
    return {dict: "a table", list: "an array"}.get(type(v), type(v).__name__)


def _kind(t: mi.Type | None) -> str:
    t = _strip(t) if t is not None else None
    return "table" if isinstance(t, (mi.StructType, mi.DictType)) else "key"


def _where(root: mi.Type, steps: list[str | int]) -> tuple[str, str]:
    """(table, key) for a path: ``("[node]", "workers")``, ``("[[nodes]] #2", "url")``."""
    if not steps:
        return "", ""
    first = steps[0]
    t = _strip(_type_at(root, [first]) or mi.AnyType())
    if isinstance(t, mi.StructType) or (isinstance(t, mi.DictType) and len(steps) > 1):
        table, rest = f"[{first}]", steps[1:]
    elif isinstance(t, mi.ListType) and isinstance(_strip(t.item_type), mi.StructType) \
            and len(steps) > 1 and isinstance(steps[1], int):
        table, rest = f"[[{first}]] #{steps[1] + 1}", steps[2:]
    else:
        table, rest = "", steps
    key = ""
    for s in rest:
        key += f"[{s}]" if isinstance(s, int) else (f".{s}" if key else s)
    return table, key


def _known(t: mi.Type | None) -> list[str]:
    t = _strip(t) if t is not None else None
    return [f.encode_name for f in t.fields] if isinstance(t, mi.StructType) else []


def explain(exc: msgspec.ValidationError, root_type: Any, value: Any, where: str = "") -> str:
    """``[table] key: problem`` for a msgspec validation error of ``value`` (decoded as
    ``root_type``); ``where``: the table ``value`` itself is (when it is not the file)."""
    root = mi.type_info(root_type)
    m = _AT.match(str(exc))
    assert m is not None
    msg, steps = m["msg"], _path(m["path"] or "$")
    problem: str
    unknown = re.match(r"Object contains unknown field `(.*)`$", msg)
    missing = re.match(r"Object missing required field `(.*)`$", msg)
    if unknown or missing:
        name = (unknown or missing)[1]
        here = _type_at(root, steps)
        steps = [*steps, name]
        if unknown:
            close = difflib.get_close_matches(name, _known(here), n=1, cutoff=0.6)
            problem = "unknown key" + (f" (did you mean {close[0]}?)" if close else
                                       f" (known: {', '.join(_known(here))})")
            if len(steps) == 1 and not where and isinstance(_value_at(value, steps), dict):
                known = [k for k in _known(here)
                         if isinstance(_strip(_type_at(root, [k]) or mi.AnyType()), mi.StructType)]
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                return f"[{name}]: unknown table" + (f" (did you mean [{close[0]}]?)" if close
                                                     else f" (known: {', '.join(known)})")
        else:
            problem = f"missing required {_kind(_type_at(root, steps))}"
    else:
        got = _value_at(value, steps)
        t = _strip(_type_at(root, steps) or mi.AnyType())
        if msg.startswith("Invalid enum value") and isinstance(t, mi.LiteralType):
            problem = (f"must be one of {', '.join(str(v) for v in t.values)}, got {_shown(got)}")
        else:
            problem = msg.replace("`object`", "`table`").replace(" | null`", "`").replace("`", "")
            problem = problem[:1].lower() + problem[1:]
            problem = re.sub(r", got \w+$", "", problem) + f", got {_shown(got)}"
    table, key = _where(root, steps)
    label = " ".join(p for p in (where, table, key) if p)
    return f"{label}: {problem}" if label else problem


def decode(value: Any, typ: type[T], error: Callable[[str], Exception], *,
           source: str | None = None, where: str = "") -> T:
    """``value`` (a parsed TOML/JSON mapping) as ``typ``, strictly; on a problem, raise
    ``error(f"{source}: {table} {key}: {problem}")`` (``where``: the table ``value`` is, when
    it is one table of a file rather than the file)."""
    try:
        return msgspec.convert(value, typ, strict=True)
    except msgspec.ValidationError as exc:
        text = explain(exc, typ, value, where)
        raise error(f"{source}: {text}" if source else text) from None
