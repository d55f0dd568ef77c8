"""eth-account's EIP-712 encoder, imported so that the process keeps its recursion limit.

Importing ``eth_account`` pulls in ``py_ecc``, whose ``__init__`` raises the whole process's
recursion limit to 100000. With that limit a deeply nested JSON or CBOR body overflows the C
stack inside the C decoders and kills the node, so the limit is put back right after the
import (the node checks it at start-up: :func:`appliance.bounded.check_recursion_limit`).
Import ``encode_typed_data`` from here, never from ``eth_account`` directly.
"""

from __future__ import annotations

import sys

_LIMIT = sys.getrecursionlimit()

from eth_account.messages import encode_typed_data  # noqa: E402  (raises the limit: py_ecc)

sys.setrecursionlimit(_LIMIT)

__all__ = ["encode_typed_data"]
