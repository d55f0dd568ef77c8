"""The grammar of the statements users sign (requests, decisions, certificate updates):
their types, actions, field formats, derivation paths, :class:`PolicyError` and the small
checks that raise it, and a user's signature over statement bytes. The node's policy
(:mod:`appliance.policy`) reads statements with these same definitions."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from appliance_client.canonical import CanonicalError, canonical_json, parse_json
from appliance_client.errors import ApplianceError

REQUEST_TYPE = "appliance/request/v1"
APPROVAL_TYPE = "appliance/approval/v1"
CERT_UPDATE_TYPE = "appliance/tls-cert-update/v1"

SIGN = "sign"
KEY_ACTIONS = ("keygen", "refresh", "reshare", "import", "disable", "enable", "delete")
ACTIONS = (SIGN, *KEY_ACTIONS)
DECISIONS = ("approve", "reject", "cancel")
PAYLOAD_TYPES = ("psbt", "eth_tx", "eip712", "message", "eip191", "sol_tx")
#: what a policy rule signs when it names no ``payload_types``: the transactions; text
#: messages (``message``: SHA-256, ``eip191``: personal_sign) only where a rule names them
TRANSACTION_TYPES = ("psbt", "eth_tx", "eip712", "sol_tx")
BITCOIN_NETWORKS = ("mainnet", "testnet", "signet", "regtest")
#: a key's signature scheme: CGGMP ECDSA, or FROST Schnorr (BIP340 Taproot, Ed25519)
ECDSA, BIP340, ED25519 = "ecdsa-secp256k1", "schnorr-bip340", "ed25519"
SCHEMES = (ECDSA, BIP340, ED25519)
DEFAULT_SCHEME = ECDSA

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
HEX32 = re.compile(r"^[0-9a-f]{64}$")
NONCE = re.compile(r"^[A-Za-z0-9._:+/=-]{1,128}$")
HARDENED = 0x8000_0000


class PolicyError(ApplianceError, ValueError):
    """A policy file or a statement that cannot be parsed (not a decision)."""

    code = "bad_policy"


def want(cond: bool, msg: str) -> None:
    if not cond:
        raise PolicyError(msg)


def check_int(v: Any, what: str, lo: int, hi: int) -> int:
    want(type(v) is int and lo <= v <= hi, f"{what} must be an integer in [{lo}, {hi}]")
    return v


def only_fields(m: Mapping, allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(m) - set(allowed))
    want(not extra, f"unknown field(s) in {where}: {', '.join(extra)}")


def canonical_ok(v: Any, what: str) -> None:
    try:
        canonical_json(v)
    except CanonicalError as exc:
        raise PolicyError(f"{what}: {exc}") from None


def check_id(v: Any, what: str) -> str:
    if not isinstance(v, str) or ID.match(v) is None:
        raise PolicyError(f"{what} must be an id")
    return v


def check_time(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= 2**40:
        raise PolicyError(f"{what} must be integer seconds since the epoch")
    return v


def parse_statement_json(data: bytes | str) -> Any:
    try:
        return parse_json(data)
    except CanonicalError as exc:
        raise PolicyError(str(exc)) from None


def sig_hex(v: Any) -> bytes:
    if not isinstance(v, str) or len(v) > 300:
        raise PolicyError("a signature is hex")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise PolicyError("a signature is hex") from None


# -- derivation paths ---------------------------------------------------------------------


def parse_path(path: str) -> tuple[int, ...]:
    """Strict canonical BIP32 path: ``m`` or ``m/i/j'/...`` (decimal, no leading zeros,
    ``'`` for hardened). Returns the child numbers (hardened ones with bit 31 set)."""
    if not isinstance(path, str) or not path.startswith("m"):
        raise PolicyError("a derivation path starts with 'm'")
    if path == "m":
        return ()
    parts = path.split("/")
    if parts[0] != "m" or len(parts) > 256:
        raise PolicyError("bad derivation path")
    out = []
    for p in parts[1:]:
        m = re.fullmatch(r"(0|[1-9][0-9]{0,9})(')?", p)
        if m is None or int(m.group(1)) >= HARDENED:
            raise PolicyError(f"bad derivation path component {p!r}")
        out.append(int(m.group(1)) + (HARDENED if m.group(2) else 0))
    return tuple(out)


def normalize_path(path: str | None) -> str:
    """``None``/``""`` -> ``m``; ``h``/``H`` -> ``'``; checked canonical."""
    if path is None or path == "":
        return "m"
    if not isinstance(path, str):
        raise PolicyError("a derivation path is a string")
    p = path.strip().replace("h", "'").replace("H", "'")
    parts = p.split("/")
    if parts and parts[0] in ("m", "M"):
        parts[0] = "m"
    else:
        raise PolicyError("a derivation path starts with 'm'")
    norm = []
    for c in parts[1:]:
        hard = c.endswith("'")
        num = c[:-1] if hard else c
        if not num.isdigit() or not num.isascii():
            raise PolicyError(f"bad derivation path component {c!r}")
        norm.append(str(int(num)) + ("'" if hard else ""))
    out = "/".join(["m", *norm])
    parse_path(out)
    return out


# -- a user's signature over a statement ------------------------------------------------------


def load_private_key(key: Any) -> Any:
    """A cryptography private key (Ed25519 or P-256) from a key object or PEM."""
    if isinstance(key, (str, bytes)):
        data = key.encode() if isinstance(key, str) else key
        key = serialization.load_pem_private_key(data, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise PolicyError("user keys must be Ed25519 or ECDSA P-256")


def sign_message(private_key: Any, message: bytes) -> bytes:
    """A user's signature over statement bytes (Ed25519, or ECDSA P-256 with SHA-256, DER)."""
    key = load_private_key(private_key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))
