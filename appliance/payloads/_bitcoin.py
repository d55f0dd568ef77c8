"""python-bitcointx set-up shared by the Bitcoin modules.

python-bitcointx reaches libsecp256k1 through ctypes (PSBT parsing validates public keys with
it, VerifyScript checks signatures with it). Rather than depend on a system package, we point
it at the libsecp256k1 that coincurve (already a dependency) ships: that library exports the
whole secp256k1 C API, recovery, extrakeys and schnorrsig modules included. A path set
explicitly by the application (``bitcointx.set_custom_secp256k1_path``) is left alone.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from appliance.payloads.errors import PayloadError

_lock = threading.Lock()
_ready = False

#: our network names -> python-bitcointx chain-parameter names
NETWORKS = {
    "mainnet": "bitcoin",
    "testnet": "bitcoin/testnet",
    "signet": "bitcoin/signet",
    "regtest": "bitcoin/regtest",
}


def coincurve_secp256k1_path() -> str | None:
    import coincurve

    found = sorted(glob.glob(os.path.join(os.path.dirname(coincurve.__file__), "_libsecp256k1*")))
    return found[0] if found else None


def ensure_bitcointx() -> None:
    """Make python-bitcointx use coincurve's libsecp256k1 (once, before first use)."""
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        import bitcointx

        if bitcointx.get_custom_secp256k1_path() is None:
            path = coincurve_secp256k1_path()
            if path is not None:
                bitcointx.set_custom_secp256k1_path(path)
        from bitcointx.core.secp256k1 import get_secp256k1

        try:  # load now: a missing library must not look like a malformed payload later
            get_secp256k1()
        except ImportError as exc:
            raise RuntimeError(f"python-bitcointx cannot load libsecp256k1: {exc}") from exc
        _ready = True


def check_network(network: str) -> str:
    if network not in NETWORKS:
        raise PayloadError("bad_network",
                           f"unknown Bitcoin network {network!r}: one of {', '.join(NETWORKS)}")
    return network


@contextmanager
def chain_params(network: str) -> Iterator[None]:
    """python-bitcointx chain parameters for ``network`` (a context variable: safe across
    threads and asyncio tasks)."""
    ensure_bitcointx()
    import bitcointx

    with bitcointx.ChainParams(NETWORKS[check_network(network)]):
        yield


def script_address(script: bytes, network: str) -> str | None:
    """The address of a scriptPubKey on ``network``, or None for a script with none."""
    from bitcointx.core.script import CScript
    from bitcointx.wallet import CCoinAddress, CCoinAddressError

    with chain_params(network):
        try:
            return str(CCoinAddress.from_scriptPubKey(CScript(script)))
        except (CCoinAddressError, ValueError):
            return None


ensure_bitcointx()
