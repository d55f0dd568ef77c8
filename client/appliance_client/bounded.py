"""Depth-bounded JSON parsing (the node's :mod:`appliance.bounded` uses the same scan).

``json.loads`` recurses once per nesting level in C. Every body from outside is scanned first,
without recursion, and refused with :class:`TooDeep` (``too_deep``) past the bound; only then
is it parsed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from appliance_client.errors import TooDeep

__all__ = ["MAX_JSON_DEPTH", "TooDeep", "check_json_depth", "loads_json"]

MAX_JSON_DEPTH = 64  # an EIP-712 payload (32 deep at most) inside a body or a job spec fits

# a string (with its escapes), one bracket, or an unterminated string's opening quote
_JSON_TOKENS_B = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.S)
_JSON_TOKENS_S = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.S)
_OPEN_B, _OPEN_S = frozenset(b"[{"), frozenset("[{")


def check_json_depth(data: bytes | bytearray | str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`TooDeep` if ``data`` opens more than ``max_depth`` nested arrays/objects
    (brackets inside strings do not count). Malformed JSON is left for the parser."""
    if isinstance(data, str):
        tokens, opens, closes = _JSON_TOKENS_S, _OPEN_S, frozenset("]}")
    else:
        tokens, opens, closes = _JSON_TOKENS_B, _OPEN_B, frozenset(b"]}")
    depth = 0
    for m in tokens.finditer(data):
        c = m.group()[0]
        if c in opens:
            depth += 1
            if depth > max_depth:
                raise TooDeep(f"JSON nested deeper than {max_depth}")
        elif c in closes:
            depth = max(0, depth - 1)
        elif m.end() - m.start() == 1:
            return  # an unterminated string: the parser refuses it


def loads_json(data: bytes | bytearray | str, max_depth: int = MAX_JSON_DEPTH, **kw: Any) -> Any:
    """``json.loads`` after :func:`check_json_depth` (raises TooDeep, or json's ValueError)."""
    check_json_depth(data, max_depth)
    return json.loads(data, **kw)
