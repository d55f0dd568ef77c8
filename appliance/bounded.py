"""Depth-bounded parsing of JSON and CBOR that comes from users and peers.

``json.loads`` and ``cbor2.loads`` recurse once per nesting level in C. A 198 KB body nested
99,000 deep overflowed the C stack of a node once a library had raised the recursion limit
(py_ecc sets it to 100000). Every body from outside is scanned first, without recursion, and
refused with :class:`TooDeep` (``too_deep``) past the bound; only then is it parsed.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import cbor2

from appliance.errors import TooDeep
from appliance.tss.cbor_depth import MAX_CBOR_DEPTH, check_depth

__all__ = ["MAX_JSON_DEPTH", "MAX_CBOR_DEPTH", "TooDeep", "check_json_depth", "check_depth",
           "loads_json", "loads_cbor", "RECURSION_LIMIT", "check_recursion_limit"]

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


def loads_cbor(data: bytes | bytearray, max_depth: int = MAX_CBOR_DEPTH) -> Any:
    """``cbor2.loads`` after the depth pre-scan (raises TooDeep, or cbor2's errors)."""
    check_depth(data, max_depth)
    return cbor2.loads(bytes(data))


# -- the interpreter's recursion limit ------------------------------------------------------

RECURSION_LIMIT = 1000  # CPython's default, what a thread's C stack bears in the C decoders


def check_recursion_limit() -> None:
    """Raise RuntimeError if an import raised the process's recursion limit (the node checks
    at start-up, after loading the Ethereum encoders)."""
    if sys.getrecursionlimit() > RECURSION_LIMIT:
        raise RuntimeError(f"the recursion limit is {sys.getrecursionlimit()}, above "
                           f"{RECURSION_LIMIT}: an import raised it (py_ecc does)")
