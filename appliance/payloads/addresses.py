"""Addresses of a public key: Bitcoin P2WPKH (bech32) and P2PKH, Ethereum (EIP-55).

For ``GET /v1/keys/{id}/address?kind=p2wpkh|eth&path=m/0/1``::

    address_for(kind, KeyContext(root_public_key, chain_code, path), network="mainnet")
"""

from __future__ import annotations

import re

from appliance.payloads import _bitcoin
from appliance.payloads.errors import PayloadError
from appliance.payloads.types import KeyContext, _key_bytes
from appliance.tss.bip32 import hash160
from appliance.tss.group import Point

ADDRESS_KINDS = ("p2wpkh", "p2pkh", "eth")

_ETH_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def p2wpkh_script(public_key: bytes) -> bytes:
    return b"\x00\x14" + hash160(public_key)


def p2pkh_script(public_key: bytes) -> bytes:
    return b"\x76\xa9\x14" + hash160(public_key) + b"\x88\xac"


def p2sh_p2wpkh_script(public_key: bytes) -> bytes:
    return b"\xa9\x14" + hash160(p2wpkh_script(public_key)) + b"\x87"


def p2wpkh_address(public_key: bytes | Point | str, network: str = "mainnet") -> str:
    """Native segwit v0 address (bech32: bc1..., tb1..., bcrt1...)."""
    from bitcointx.core.key import CPubKey
    from bitcointx.wallet import P2WPKHCoinAddress

    pk = _key_bytes(public_key)
    with _bitcoin.chain_params(network):
        return str(P2WPKHCoinAddress.from_pubkey(CPubKey(pk)))


def p2pkh_address(public_key: bytes | Point | str, network: str = "mainnet") -> str:
    """Legacy base58 address of the compressed key (1..., m.../n...)."""
    from bitcointx.core.key import CPubKey
    from bitcointx.wallet import P2PKHCoinAddress

    pk = _key_bytes(public_key)
    with _bitcoin.chain_params(network):
        return str(P2PKHCoinAddress.from_pubkey(CPubKey(pk)))


def eth_address(public_key: bytes | Point | str) -> str:
    """EIP-55 checksummed Ethereum address: the last 20 bytes of keccak256(X || Y)."""
    from eth_utils import keccak, to_checksum_address

    point = Point.from_bytes(_key_bytes(public_key))
    return to_checksum_address(keccak(point.to_uncompressed()[1:])[-20:])


def normalize_eth_address(value: object, what: str = "address") -> str:
    """An Ethereum address as EIP-55. Mixed-case input must carry a valid checksum."""
    from eth_utils import is_checksum_address, to_checksum_address

    if isinstance(value, (bytes, bytearray)) and len(value) == 20:
        return to_checksum_address(bytes(value))
    if not isinstance(value, str) or not _ETH_ADDRESS.match(value):
        raise PayloadError("bad_address", f"{what} is not a 0x-prefixed 20-byte hex address")
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise PayloadError("bad_address", f"{what} has a wrong EIP-55 checksum")
    return to_checksum_address(value)


def normalize_address(value: str) -> str:
    """The canonical spelling used to compare destinations: EIP-55 for Ethereum, lower case
    for bech32 (it is case-insensitive), as given otherwise (base58 is case-sensitive)."""
    if not isinstance(value, str) or not value or len(value) > 200:
        raise PayloadError("bad_address", "an address must be a non-empty string")
    v = value.strip()
    if v.lower().startswith("0x"):
        return normalize_eth_address(v)
    if v.lower().startswith(("bc1", "tb1", "bcrt1")):
        return v.lower()
    return v


def address_for(kind: str, key: KeyContext, network: str = "mainnet") -> dict:
    """The address of ``kind`` for the request key (root, or child at ``key.derivation_path``):
    ``{"kind", "address", "public_key", "path", "network"}`` (network None for eth)."""
    signer = key.signer
    if kind == "p2wpkh":
        addr, net = p2wpkh_address(signer.public_key, network), network
    elif kind == "p2pkh":
        addr, net = p2pkh_address(signer.public_key, network), network
    elif kind == "eth":
        addr, net = eth_address(signer.public_key), None
    else:
        raise PayloadError("bad_address_kind", f"address kind must be one of {', '.join(ADDRESS_KINDS)}")
    return {"kind": kind, "address": addr, "public_key": signer.public_key.hex(),
            "path": signer.path, "network": net}


__all__ = [
    "ADDRESS_KINDS",
    "address_for",
    "eth_address",
    "normalize_address",
    "normalize_eth_address",
    "p2pkh_address",
    "p2pkh_script",
    "p2sh_p2wpkh_script",
    "p2wpkh_address",
    "p2wpkh_script",
]
