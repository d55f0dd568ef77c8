"""BIP32 non-hardened derivation for a threshold key (public derivation only).

The key's jointly generated chain code and public key give an extended public key. A child
at a non-hardened path is the parent plus a public tweak: X_child = X + t·G with
t = Σ IL over the path, so signers sign for the child by adding t (``SignParty(tweak=t)``);
no share changes. Hardened steps need the private key and are refused.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import base58

from appliance.errors import ApplianceError
from appliance.tss.group import Q, Point

HARDENED = 1 << 31
XPUB_VERSION = bytes.fromhex("0488B21E")


class DerivationError(ApplianceError, ValueError):
    code = "bad_derivation_path"


@dataclass(frozen=True)
class Derived:
    public_key: Point
    chain_code: bytes
    tweak: int
    depth: int
    parent_fingerprint: bytes
    child_number: int

    def xpub(self) -> str:
        data = (XPUB_VERSION + bytes([self.depth]) + self.parent_fingerprint
                + self.child_number.to_bytes(4, "big") + self.chain_code + self.public_key.to_bytes())
        return b58check(data)


def parse_path(path: str | None) -> list[int]:
    """"m/0/1" -> [0, 1]; "m" or None -> []; hardened steps refused."""
    if path in (None, "", "m", "M"):
        return []
    parts = path.split("/")
    if parts[0] not in ("m", "M"):
        raise DerivationError("a derivation path starts with m/")
    out = []
    for part in parts[1:]:
        if part.endswith(("'", "h", "H")):
            raise DerivationError("hardened derivation needs the private key; only non-hardened paths are allowed")
        if not part.isdigit() or len(part) > 10:
            raise DerivationError(f"bad path component {part!r}")
        i = int(part)
        if i >= HARDENED:
            raise DerivationError("path component must be below 2^31 (non-hardened)")
        out.append(i)
    if len(out) > 255:
        raise DerivationError("path too deep")
    return out


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def derive(public_key: Point, chain_code: bytes, path: str | None) -> Derived:
    key, chain, tweak = public_key, chain_code, 0
    parent_fp, child = bytes(4), 0
    indices = parse_path(path)
    for i in indices:
        digest = hmac.new(chain, key.to_bytes() + i.to_bytes(4, "big"), hashlib.sha512).digest()
        il = int.from_bytes(digest[:32], "big")
        child_key = key + Point.generator_mul(il) if il < Q else Point.INFINITY
        if il >= Q or child_key.is_infinity:
            raise DerivationError(f"index {i} gives an invalid child (probability 2^-127): use the next one")
        parent_fp, child = hash160(key.to_bytes())[:4], i
        key, chain, tweak = child_key, digest[32:], (tweak + il) % Q
    return Derived(key, chain, tweak, len(indices), parent_fp, child)


def b58check(data: bytes) -> str:
    """Base58Check (the xpub encoding), with the ``base58`` package the Solana decoder uses too."""
    return base58.b58encode_check(data).decode("ascii")
