"""Depth-bounded parsing of JSON and CBOR that comes from users and peers (the JSON scan is
the client library's, :mod:`appliance_client.bounded`: one for both).

``json.loads`` and ``cbor2.loads`` recurse once per nesting level in C. A 198 KB body nested
99,000 deep overflowed the C stack of a node once a library had raised the recursion limit
(py_ecc sets it to 100000). Every body from outside is scanned first, without recursion, and
refused with :class:`TooDeep` (``too_deep``) past the bound; only then is it parsed.
"""

from __future__ import annotations

import sys
from typing import Any

import cbor2

from appliance.errors import TooDeep
from appliance_client.bounded import MAX_JSON_DEPTH, check_json_depth, loads_json
from appliance.tss.cbor_depth import MAX_CBOR_DEPTH, check_depth

__all__ = ["MAX_JSON_DEPTH", "MAX_CBOR_DEPTH", "TooDeep", "check_json_depth", "check_depth",
           "loads_json", "loads_cbor", "RECURSION_LIMIT", "check_recursion_limit"]


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
