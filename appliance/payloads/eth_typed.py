"""eth-account's EIP-712 encoder and EIP-191 hash, loaded on first use without touching the
recursion limit.

Importing ``eth_account`` pulls in ``py_ecc``, whose ``__init__`` raises the whole process's
recursion limit to 100000. With that limit a deeply nested JSON or CBOR body could overflow
the C stack inside the C decoders and kill the node. So the import runs with
``sys.setrecursionlimit`` made a no-op: the limit never moves, not even for the moment of the
import (another thread may be parsing a body then). We only use the EIP-712 encoder, which
needs no deep recursion. The node checks the limit at start-up
(:func:`appliance.bounded.check_recursion_limit`).

The import costs about half a second of CPU, so it is made on the first EIP-712 or EIP-191
payload, not at every node start. Call :func:`encode_typed_data` and :func:`hash_eip191_text`
from here, never from ``eth_account`` directly.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

_lock = threading.Lock()
_encoder: Callable[..., Any] | None = None
_eip191: Callable[[str], bytes] | None = None


def load_encoder() -> Callable[..., Any]:
    """Load eth-account now (also for code that then imports eth_account itself: py_ecc has
    run by then, so it cannot raise the limit any more)."""
    global _encoder, _eip191
    with _lock:
        if _encoder is None:
            real = sys.setrecursionlimit
            sys.setrecursionlimit = lambda limit: None  # py_ecc raises the process's limit at import
            try:
                from eth_account.messages import _hash_eip191_message, encode_defunct
                from eth_account.messages import encode_typed_data as encoder
            finally:
                sys.setrecursionlimit = real

            def eip191(text: str) -> bytes:
                return bytes(_hash_eip191_message(encode_defunct(text=text)))

            _eip191 = eip191
            _encoder = encoder
    return _encoder


def encode_typed_data(*args: Any, **kwargs: Any) -> Any:
    """``eth_account.messages.encode_typed_data``, loaded on the first call."""
    return (_encoder or load_encoder())(*args, **kwargs)


def hash_eip191_text(text: str) -> bytes:
    """EIP-191 version 0x45 (``personal_sign``) of a text: eth-account's
    ``_hash_eip191_message(encode_defunct(text=text))``, i.e. ``keccak256(b"\\x19Ethereum Signed
    Message:\\n" + str(len(utf8)) + utf8)`` (the length in bytes, as decimal digits)."""
    if _eip191 is None:
        load_encoder()
    assert _eip191 is not None
    return _eip191(text)


__all__ = ["encode_typed_data", "hash_eip191_text"]
