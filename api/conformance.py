"""Does an answer fit ``/openapi.json``? :class:`ResponseContract` checks one response against
the document the node serves: its status is one the route documents, and its JSON body fits the
route's schema (the msgspec Struct in :mod:`api.bodies` the schema was generated from) with no
field the schema does not name.

The client library calls it on every response when it is given one
(``ApplianceClient(..., observe=ResponseContract().check)``); :class:`appliance.testing.
LocalCluster` does so for every client it hands out, so every real-process test checks that
the document a Go or TypeScript client is generated from tells the truth.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from api import bodies
from api.openapi import ROUTES, documented_statuses
from api.routes.common import Route
from appliance.bounded import loads_json
from appliance.ids import GRAMMARS


class ContractViolation(AssertionError):
    """A response the document does not describe (a bug in the node or in the document)."""


def _pattern(route: Route) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"{([^}]+)}", route.path):
        out += re.escape(route.path[pos:m.start()])
        name = m.group(1)
        out += f"(?:{GRAMMARS[name].pattern})" if name in GRAMMARS else "[^/]+"
        pos = m.end()
    return re.compile(out + re.escape(route.path[pos:]) + "$")


class ResponseContract:
    def __init__(self) -> None:
        self._routes = [(r, _pattern(r), frozenset(documented_statuses(r))) for r in ROUTES]

    def route(self, method: str, path: str) -> tuple[Route, frozenset[int]] | None:
        for r, pattern, statuses in self._routes:
            if r.method == method and pattern.match(path):
                return r, statuses
        return None

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        """Raise :class:`ContractViolation` if the answer to ``method path`` is not documented.
        A path no route serves (a 404 ``no_route``, a malformed id) is not checked."""
        found = self.route(method.upper(), path.split("?", 1)[0])
        if found is None:
            return
        route, statuses = found
        where = f"{method} {route.path} -> {status}"
        if status not in statuses:
            raise ContractViolation(f"{where}: status not documented (documented: {sorted(statuses)}): "
                                    f"{body[:200]!r}")
        if status >= 400 and not (route.failure_is_response and status in route.responses):
            shape: type[msgspec.Struct] | None = bodies.Error
        elif route.content_type != "application/json" and method.upper() == "GET":
            return  # text (/metrics) or a JSON Lines export
        else:
            shape = route.response
        if shape is None or not content_type.startswith("application/json"):
            if shape is not None:
                raise ContractViolation(f"{where}: {content_type or 'no content type'}, not JSON")
            return
        try:
            data = loads_json(body)
            msgspec.convert(data, shape, strict=True)
        except (ValueError, msgspec.ValidationError) as exc:
            raise ContractViolation(f"{where}: the body does not fit {shape.__name__}: {exc}") from None
        extra = undocumented_fields(data, shape)
        if extra:
            raise ContractViolation(f"{where}: fields {extra} are not in {shape.__name__}'s schema")


def undocumented_fields(data: Any, shape: Any, at: str = "$") -> list[str]:
    """The paths of object fields in ``data`` that ``shape`` (a msgspec type) does not name."""
    return _walk(data, msgspec.inspect.type_info(shape), at)


def _walk(data: Any, t: msgspec.inspect.Type, at: str) -> list[str]:
    mi = msgspec.inspect
    if isinstance(t, mi.StructType):
        if not isinstance(data, dict):
            return []
        fields = {f.encode_name: f.type for f in t.fields}
        out = [f"{at}.{k}" for k in data if k not in fields]
        for k, v in data.items():
            if k in fields:
                out += _walk(v, fields[k], f"{at}.{k}")
        return out
    if isinstance(t, (mi.ListType, mi.VarTupleType)) and isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _walk(v, t.item_type, f"{at}[{i}]")]
    if isinstance(t, mi.DictType) and isinstance(data, dict):
        return [p for k, v in data.items() for p in _walk(v, t.value_type, f"{at}.{k}")]
    if isinstance(t, mi.UnionType):
        # the member the value is (a Struct for an object, a list for an array)
        for member in t.types:
            if isinstance(data, dict) and isinstance(member, (mi.StructType, mi.DictType)) or \
                    isinstance(data, list) and isinstance(member, (mi.ListType, mi.VarTupleType)):
                return _walk(data, member, at)
    return []
