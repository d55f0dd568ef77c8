"""Cluster policy: who may ask for what, who must approve it, and the evaluator every
signer node runs by itself before it takes part in a session.

One policy file (TOML) per cluster, identical on every node. Its *hash* is the SHA-256 of
its canonical form (:meth:`Policy.canonical_bytes`, RFC 8785 JSON of the parsed, fully
expanded policy: comments, ordering and PEM spelling do not change it). Nodes put the hash
in every session and refuse a peer whose hash differs. A new policy takes effect only when
the admin quorum of the current one has signed it (:class:`PolicyUpdate`,
:func:`verify_policy_update`).

Policy file::

    [policy]
    cluster_id = "demo"
    version = 1                      # a policy update must raise it
    clock_skew_s = 30                # tolerance for times in the future

    [[users]]
    id = "alice"
    roles = ["initiator"]
    public_key = "-----BEGIN PUBLIC KEY-----..."   # Ed25519 or P-256: PEM (SPKI), or raw
                                     # "ed25519:<hex>" / "p256:<hex SEC1>" (or bare hex)

    [signing]                        # the rule for every key without its own
    initiator_roles = ["initiator"]
    approvals = [{ roles = ["approver"], count = 1 }]   # every group, distinct people
    request_ttl_s = 86400            # a request is valid this long at most
    approval_ttl_s = 86400           # an approval counts this long at most
    max_signatures = 100             # optional: per key, per window
    window_s = 3600
    derivation_paths = ["m", "m/0/*", "m/44'/60'/0'/0/*", "m/**"]
    allow_raw_digest = true          # sign a bare 32-byte digest (blind); default false
    payload_types = ["psbt", "eth_tx", "eip712"]
    hours_utc = [8, 18]              # optional: 08:00 to 17:59 UTC ([22, 6] wraps)

    [signing.transactions]           # rules over decoded payloads (appliance.payloads.TxRules)
    network = "mainnet"              # Bitcoin network of a PSBT when the request names none
    allowed_destinations = ["bc1q..."]          # also denied_destinations, allowed_assets
    allowed_chain_ids = [1]                     # Ethereum; allowed_networks for Bitcoin
    max_fee = { BTC = 50000, ETH = "10000000000000000" }   # sat / wei (strings beyond 2**53)
    limits = { BTC = { per_transaction = 1000000, per_window = 5000000 } }
    window_seconds = 86400           # the per_window limits' window

    [signing.keys."key_0123"]        # this key's own rule; unset fields come from [signing]
    approvals = [{ roles = ["approver"], count = 2 }]

    [key_changes]                    # keygen, refresh, reshare
    roles = ["admin"]
    quorum = 1                       # distinct admins; the requesting admin counts
    request_ttl_s = 86400
    approval_ttl_s = 86400

    [policy_change]                  # signatures needed on a new policy
    roles = ["admin"]
    quorum = 1

A cluster.toml with ``[cluster]`` and ``[[nodes]]`` may hold the policy too: those tables
are ignored here, and ``[cluster].id`` stands in for ``[policy].cluster_id``.

Signed statements
-----------------
A request (:class:`Request`) is signed by its initiator; each decision on it
(:class:`Approval`: ``approve``, ``reject``, or the initiator's ``cancel``) by the person who
makes it. Both are RFC 8785 JSON objects with a ``type`` field (domain separation), so the
bytes signed are unambiguous: two different statements never encode alike. An approval
repeats every binding field of its request (cluster id, policy hash, request id, action,
key id, derivation path, digest or payload hash, parameters, initiator, request expiry), so
it cannot be replayed onto another request, another cluster or another policy. A request id
is the hash of the request statement: the same signed request (same client ``nonce``, the
idempotency key) always has the same id.

Signatures: Ed25519 over the message bytes; ECDSA P-256 with SHA-256 (DER, or raw r||s).
Statements travel as JSON: ``{"statement": {...}, "signature": "<hex>"}``.

Evaluation
----------
:func:`evaluate` is pure: the time and the rate-limit usage are passed in. It returns a
:class:`Decision`: ``allowed``, ``pending`` (reason ``pending_approval``) or ``denied`` with a
machine reason code from :data:`REASONS`. A signer node takes part only if it is ``allowed``
(:meth:`Decision.require_allowed` raises :class:`PolicyDenied`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.canonical import CanonicalError, canonical_json, parse_json, sha256_hex
from appliance.errors import ApplianceError, PolicyDenied
from appliance.payloads.rules import TxRules

POLICY_FORMAT = "appliance-policy/1"
REQUEST_TYPE = "appliance/request/v1"
APPROVAL_TYPE = "appliance/approval/v1"
POLICY_UPDATE_TYPE = "appliance/policy-update/v1"

SIGN = "sign"
KEY_ACTIONS = ("keygen", "refresh", "reshare", "import")
ACTIONS = (SIGN, *KEY_ACTIONS)
DECISIONS = ("approve", "reject", "cancel")
PAYLOAD_TYPES = ("psbt", "eth_tx", "eip712")
ALLOWED, PENDING, DENIED = "allowed", "pending", "denied"

#: every reason code the evaluator and the update verifier can give
REASONS = (
    "pending_approval",            # not yet enough approvals (outcome pending)
    "self_approval",               # the initiator approved (or rejected) their own request
    "missing_role",                # initiator or approver lacks a role the rule asks for
    "duplicate_approver",          # one person's decision appears twice
    "approval_for_other_request",  # an approval bound to another request/cluster/policy
    "expired",                     # the request's validity window has passed
    "not_yet_valid",               # a statement dated in the future (beyond clock skew)
    "rate_limited",                # the key's signature budget for the window is spent
    "path_not_allowed",            # derivation path matches no allowed pattern
    "raw_digest_forbidden",        # a bare digest where the rule wants a payload
    "payload_type_not_allowed",    # a payload type the rule does not allow
    "outside_hours",               # outside the rule's hours of the day (UTC)
    "rejected",                    # an approver rejected the request
    "cancelled",                   # the initiator cancelled the request
    "not_initiator",               # a cancel signed by someone else than the initiator
    "bad_signature",               # a statement's signature does not verify
    "unknown_user",                # a signer who is not in the policy
    "bad_request",                 # a malformed statement
    "wrong_cluster",               # a statement for another cluster
    "policy_mismatch",             # made under another policy (hash differs)
    "request_mismatch",            # a job whose key/digest/path differ from its request
    "missing_quorum",              # a policy update without enough admin signatures
    "stale_policy",                # a policy update that does not raise the version
    # transaction rules (appliance.payloads.rules), evaluated over the decoded payload
    "chain_not_allowed", "destination_denied", "destination_not_allowed", "asset_not_allowed",
    "amount_over_limit", "window_limit_exceeded", "fee_too_high", "fee_unknown",
    "contract_call_not_allowed",
    # a signer node's own checks of a job
    "digest_mismatch",             # the coordinator's digests are not the payload's
    "tweak_mismatch",              # the coordinator's derivation tweaks are not ours
    "request_already_signed",      # this node already took part in signing the request
    # the node's checks of a client's statement against the HTTP-authenticated user
    "initiator_mismatch",          # a request signed for another user than the caller
    "approver_mismatch",           # a decision signed for another user than the caller
)
BITCOIN_NETWORKS = ("mainnet", "testnet", "signet", "regtest")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
_ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_NONCE = re.compile(r"^[A-Za-z0-9._:+/=-]{1,128}$")
MAX_TTL_S = 366 * 86400
HARDENED = 0x8000_0000


# =========================================================================== errors


class PolicyError(ApplianceError, ValueError):
    """A policy file or a statement that cannot be parsed (not a decision)."""

    code = "bad_policy"


# =========================================================================== user keys


@dataclass(frozen=True)
class UserKey:
    """A person's public key: ``ed25519`` (32 bytes) or ``p256`` (33-byte compressed SEC1)."""

    alg: str
    raw: bytes

    @classmethod
    def parse(cls, value: str | bytes) -> UserKey:
        """PEM (SubjectPublicKeyInfo), ``ed25519:<hex>``, ``p256:<hex>``, or bare hex
        (32 bytes: Ed25519; 33 or 65 bytes: P-256 SEC1)."""
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str):
            raise PolicyError("a public key is a string")
        text = value.strip()
        if text.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_public_key(text.encode())
            except ValueError:
                raise PolicyError("public key PEM does not parse") from None
            return cls.from_key(key)
        alg = None
        if ":" in text:
            alg, text = text.split(":", 1)
            alg = alg.lower()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise PolicyError("a raw public key is hex") from None
        if alg is None:
            alg = "ed25519" if len(raw) == 32 else "p256"
        if alg == "ed25519":
            if len(raw) != 32:
                raise PolicyError("an Ed25519 public key is 32 bytes")
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                raise PolicyError("not an Ed25519 public key") from None
            return cls("ed25519", raw)
        if alg in ("p256", "p-256", "secp256r1"):
            try:
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
            except ValueError:
                raise PolicyError("not a P-256 point") from None
            return cls.from_key(key)
        raise PolicyError(f"unknown key algorithm {alg!r} (ed25519 or p256)")

    @classmethod
    def from_key(cls, key: Any) -> UserKey:
        if isinstance(key, ed25519.Ed25519PublicKey):
            return cls("ed25519", key.public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw))
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return cls("p256", key.public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.CompressedPoint))
        raise PolicyError("user keys must be Ed25519 or ECDSA P-256")

    @property
    def text(self) -> str:
        return f"{self.alg}:{self.raw.hex()}"

    def public_key(self) -> Any:
        if self.alg == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(self.raw)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        if not isinstance(signature, (bytes, bytearray)):
            return False
        signature = bytes(signature)
        try:
            if self.alg == "ed25519":
                if len(signature) != 64:
                    return False
                self.public_key().verify(signature, message)
                return True
            if len(signature) == 64:  # raw r||s (IEEE P1363)
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                signature = encode_dss_signature(r, s)
            self.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, ValueError):
            return False


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
    """A user's signature over statement bytes (what the client library does)."""
    key = load_private_key(private_key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


# =========================================================================== paths


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


def _parse_pattern(pattern: str) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not (pattern == "m" or pattern.startswith("m/")):
        raise PolicyError(f"a path pattern starts with 'm': {pattern!r}")
    parts = tuple(pattern.split("/")[1:])
    for i, p in enumerate(parts):
        if p == "**":
            if i != len(parts) - 1:
                raise PolicyError("'**' may only end a path pattern")
        elif p in ("*", "*'"):
            continue
        elif re.fullmatch(r"(0|[1-9][0-9]{0,9})'?", p) is None or int(p.rstrip("'")) >= HARDENED:
            raise PolicyError(f"bad path pattern component {p!r}")
    return parts


def path_matches(pattern: str, path: str) -> bool:
    """``*`` one non-hardened index, ``*'`` one hardened index, ``**`` (last) any rest
    (also nothing), literals exactly."""
    pat = _parse_pattern(pattern)
    comps = path.split("/")[1:] if path != "m" else []
    for i, p in enumerate(pat):
        if p == "**":
            return True
        if i >= len(comps):
            return False
        c = comps[i]
        if p == "*":
            if c.endswith("'"):
                return False
        elif p == "*'":
            if not c.endswith("'"):
                return False
        elif p != c:
            return False
    return len(comps) == len(pat)


# =========================================================================== the policy


@dataclass(frozen=True)
class User:
    id: str
    roles: tuple[str, ...]
    key: UserKey

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class ApprovalGroup:
    """``count`` distinct people, each holding one of ``roles``."""

    roles: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class SigningRule:
    initiator_roles: tuple[str, ...] = ("initiator",)
    approvals: tuple[ApprovalGroup, ...] = (ApprovalGroup(("approver",), 1),)
    request_ttl_s: int = 86400
    approval_ttl_s: int = 86400
    max_signatures: int | None = None
    window_s: int = 3600
    derivation_paths: tuple[str, ...] = ("m/**",)
    allow_raw_digest: bool = False  # blind signing: off unless the policy allows it
    payload_types: tuple[str, ...] = tuple(sorted(PAYLOAD_TYPES))
    hours_utc: tuple[int, int] | None = None
    #: transaction rules over decoded payloads (:class:`appliance.payloads.TxRules` fields
    #: except ``allow_raw_digest``/``allowed_payload_types``, which are the two above) and
    #: ``network``, the Bitcoin network a PSBT is read for when the request names none
    transactions: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # always the normalized, fully expanded table (so equal rules compare and hash alike)
        object.__setattr__(self, "transactions",
                           _parse_transactions(self.transactions, {}, "[signing]"))

    @property
    def approver_roles(self) -> frozenset[str]:
        return frozenset(r for g in self.approvals for r in g.roles)

    @property
    def network(self) -> str:
        return self.transactions.get("network", "mainnet")

    def tx_rules(self):
        """This rule's :class:`appliance.payloads.TxRules` (what every signer evaluates)."""
        d = {k: v for k, v in self.transactions.items() if k != "network"}
        return TxRules.from_dict({**d, "allow_raw_digest": self.allow_raw_digest,
                                  "allowed_payload_types": list(self.payload_types)})


@dataclass(frozen=True)
class QuorumRule:
    """``quorum`` distinct people holding one of ``roles`` (the requester counts)."""

    roles: tuple[str, ...] = ("admin",)
    quorum: int = 1
    request_ttl_s: int = 86400
    approval_ttl_s: int = 86400


_SIGNING_FIELDS = ("initiator_roles", "approvals", "request_ttl_s", "approval_ttl_s",
                   "max_signatures", "window_s", "derivation_paths", "allow_raw_digest",
                   "payload_types", "hours_utc", "transactions")
_TX_OWN = ("allow_raw_digest", "allowed_payload_types")  # set by the signing rule itself


def _parse_transactions(m: Any, base: Mapping, where: str) -> dict:
    """The normalized ``transactions`` table: ``base`` updated field by field with ``m``,
    checked by building the TxRules, amounts as decimal strings (wei exceed 2**53)."""
    _want(isinstance(m, Mapping), f"{where}.transactions must be a table")
    bad = [k for k in m if k in _TX_OWN]
    _want(not bad, f"{where}.transactions: {', '.join(bad)} is set in the signing rule itself "
          "(allow_raw_digest, payload_types)")
    merged = {**base, **m}
    net = merged.pop("network", None)
    if net is not None:
        _want(net in BITCOIN_NETWORKS, f"{where}.transactions.network is one of "
              f"{', '.join(BITCOIN_NETWORKS)}")
    try:
        rules = TxRules.from_dict(merged)
    except (ApplianceError, TypeError, ValueError) as exc:
        raise PolicyError(f"{where}.transactions: {exc}") from None
    out = {k: v for k, v in rules.to_dict().items() if v is not None and k not in _TX_OWN}
    out["limits"] = {a: {k: str(v) for k, v in lim.items() if v is not None}
                     for a, lim in out["limits"].items()}
    out["max_fee"] = {a: str(v) for a, v in out["max_fee"].items()}
    if net is not None:
        out["network"] = net
    return out
_QUORUM_FIELDS = ("roles", "quorum", "request_ttl_s", "approval_ttl_s")


def _want(cond: bool, msg: str) -> None:
    if not cond:
        raise PolicyError(msg)


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    _want(type(v) is int and lo <= v <= hi, f"{what} must be an integer in [{lo}, {hi}]")
    return v


def _roles(v: Any, what: str) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    _want(isinstance(v, list) and v and all(isinstance(r, str) and _ROLE.match(r) for r in v),
          f"{what} must be a non-empty list of role names")
    return tuple(sorted(set(v)))


def _only(m: Mapping, allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(m) - set(allowed))
    _want(not extra, f"unknown field(s) in {where}: {', '.join(extra)}")


def _parse_signing(m: Mapping, base: SigningRule, where: str) -> SigningRule:
    _want(isinstance(m, Mapping), f"{where} must be a table")
    _only(m, _SIGNING_FIELDS, where)
    kw: dict[str, Any] = {}
    if "initiator_roles" in m:
        kw["initiator_roles"] = _roles(m["initiator_roles"], f"{where}.initiator_roles")
    if "approvals" in m:
        groups = []
        _want(isinstance(m["approvals"], list), f"{where}.approvals must be a list")
        for g in m["approvals"]:
            _want(isinstance(g, Mapping), f"{where}.approvals: each group is a table")
            _only(g, ("roles", "role", "count"), f"{where}.approvals")
            _want(("roles" in g) != ("role" in g), f"{where}.approvals: give roles (or role)")
            roles = _roles(g.get("roles", g.get("role")), f"{where}.approvals.roles")
            groups.append(ApprovalGroup(roles, _int(g.get("count", 1), "approval count", 1, 100)))
        kw["approvals"] = tuple(sorted(groups, key=lambda g: (g.roles, g.count)))
    for name in ("request_ttl_s", "approval_ttl_s", "window_s"):
        if name in m:
            kw[name] = _int(m[name], f"{where}.{name}", 1, MAX_TTL_S)
    if "max_signatures" in m:
        kw["max_signatures"] = (None if m["max_signatures"] is None
                                else _int(m["max_signatures"], f"{where}.max_signatures",
                                          0, 10**9))
    if "derivation_paths" in m:
        dp = m["derivation_paths"]
        _want(isinstance(dp, list) and all(isinstance(p, str) for p in dp),
              f"{where}.derivation_paths must be a list of patterns")
        for p in dp:
            _parse_pattern(p)
        kw["derivation_paths"] = tuple(sorted(set(dp)))
    if "allow_raw_digest" in m:
        _want(type(m["allow_raw_digest"]) is bool, f"{where}.allow_raw_digest is true or false")
        kw["allow_raw_digest"] = m["allow_raw_digest"]
    if "payload_types" in m:
        pt = m["payload_types"]
        _want(isinstance(pt, list) and all(p in PAYLOAD_TYPES for p in pt),
              f"{where}.payload_types: a list of {', '.join(PAYLOAD_TYPES)}")
        kw["payload_types"] = tuple(sorted(set(pt)))
    if "hours_utc" in m:
        h = m["hours_utc"]
        if h is not None:
            _want(isinstance(h, list) and len(h) == 2, f"{where}.hours_utc is [start, end]")
            h = (_int(h[0], "hours_utc start", 0, 23), _int(h[1], "hours_utc end", 1, 24))
            _want(h[0] != h[1] % 24 or h == (0, 24), f"{where}.hours_utc is empty")
        kw["hours_utc"] = h
    if "transactions" in m:
        kw["transactions"] = _parse_transactions(m["transactions"], base.transactions, where)
    return replace(base, **kw)


def _parse_quorum(m: Mapping, where: str) -> QuorumRule:
    _want(isinstance(m, Mapping), f"{where} must be a table")
    _only(m, _QUORUM_FIELDS, where)
    kw: dict[str, Any] = {}
    if "roles" in m:
        kw["roles"] = _roles(m["roles"], f"{where}.roles")
    if "quorum" in m:
        kw["quorum"] = _int(m["quorum"], f"{where}.quorum", 1, 100)
    for name in ("request_ttl_s", "approval_ttl_s"):
        if name in m:
            kw[name] = _int(m[name], f"{where}.{name}", 1, MAX_TTL_S)
    return QuorumRule(**kw)


def _signing_dict(r: SigningRule) -> dict:
    return {
        "initiator_roles": sorted(r.initiator_roles),
        "approvals": [{"roles": sorted(g.roles), "count": g.count}
                      for g in sorted(r.approvals, key=lambda g: (sorted(g.roles), g.count))],
        "request_ttl_s": r.request_ttl_s, "approval_ttl_s": r.approval_ttl_s,
        "max_signatures": r.max_signatures, "window_s": r.window_s,
        "derivation_paths": sorted(r.derivation_paths), "allow_raw_digest": r.allow_raw_digest,
        "payload_types": sorted(r.payload_types),
        "hours_utc": list(r.hours_utc) if r.hours_utc is not None else None,
        "transactions": r.transactions,
    }


def _quorum_dict(q: QuorumRule) -> dict:
    return {"roles": sorted(q.roles), "quorum": q.quorum, "request_ttl_s": q.request_ttl_s,
            "approval_ttl_s": q.approval_ttl_s}


@dataclass(frozen=True)
class Policy:
    cluster_id: str
    version: int
    users: tuple[User, ...]
    signing: SigningRule = SigningRule()
    key_rules: tuple[tuple[str, SigningRule], ...] = ()
    key_changes: QuorumRule = QuorumRule()
    policy_change: QuorumRule = QuorumRule()
    clock_skew_s: int = 30
    _by_id: dict = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _want(isinstance(self.cluster_id, str) and _ID.match(self.cluster_id) is not None,
              "cluster_id must be an id ([A-Za-z0-9._:@+-], up to 128)")
        _int(self.version, "version", 0, 2**53 - 1)
        _int(self.clock_skew_s, "clock_skew_s", 0, 3600)
        ids = [u.id for u in self.users]
        _want(len(set(ids)) == len(ids), "user ids must be unique")
        object.__setattr__(self, "_by_id", {u.id: u for u in self.users})
        for name, rule in (("key_changes", self.key_changes),
                           ("policy_change", self.policy_change)):
            holders = [u for u in self.users if any(u.has(r) for r in rule.roles)]
            _want(len(holders) >= rule.quorum,
                  f"{name}: quorum {rule.quorum} but only {len(holders)} user(s) hold "
                  f"{'/'.join(rule.roles)}: the cluster could never change it")

    # -- look-ups ----------------------------------------------------------------------
    def user(self, user_id: str) -> User | None:
        return self._by_id.get(user_id)

    def rule_for(self, key_id: str | None) -> SigningRule:
        for k, r in self.key_rules:
            if k == key_id:
                return r
        return self.signing

    # -- canonical form and hash -------------------------------------------------------
    def tx_rules_for(self, key_id: str | None):
        """The transaction rules (:class:`appliance.payloads.TxRules`) of ``key_id``."""
        return self.rule_for(key_id).tx_rules()

    def canonical(self) -> dict:
        """The fully expanded policy as a JSON object (also a valid input of
        :meth:`from_mapping`)."""
        return {
            "policy": {"format": POLICY_FORMAT, "cluster_id": self.cluster_id,
                       "version": self.version, "clock_skew_s": self.clock_skew_s},
            "users": [{"id": u.id, "roles": sorted(u.roles), "public_key": u.key.text}
                      for u in sorted(self.users, key=lambda u: u.id)],
            "signing": {**_signing_dict(self.signing),
                        "keys": {k: _signing_dict(r) for k, r in self.key_rules}},
            "key_changes": _quorum_dict(self.key_changes),
            "policy_change": _quorum_dict(self.policy_change),
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.canonical())

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_bytes`: what nodes put in every session."""
        h = self.__dict__.get("_hash")
        if h is None:
            h = sha256_hex(self.canonical_bytes())
            object.__setattr__(self, "_hash", h)
        return h

    # -- parsing -----------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, m: Mapping) -> Policy:
        _want(isinstance(m, Mapping), "a policy is a table")
        _only(m, ("policy", "users", "signing", "key_changes", "policy_change",
                  "cluster", "nodes"), "the policy file")
        p = m.get("policy", {})
        _want(isinstance(p, Mapping), "[policy] must be a table")
        _only(p, ("format", "cluster_id", "version", "clock_skew_s"), "[policy]")
        _want(p.get("format", POLICY_FORMAT) == POLICY_FORMAT,
              f"unsupported policy format {p.get('format')!r}")
        cluster_id = p.get("cluster_id")
        other = m.get("cluster", {}).get("id") if isinstance(m.get("cluster"), Mapping) else None
        if cluster_id is None:
            cluster_id = other
        _want(cluster_id is not None, "[policy].cluster_id is missing")
        _want(other is None or other == cluster_id, "[policy].cluster_id differs from [cluster].id")
        users = []
        raw_users = m.get("users", [])
        _want(isinstance(raw_users, list), "[[users]] must be an array of tables")
        for u in raw_users:
            _want(isinstance(u, Mapping), "each [[users]] entry is a table")
            _only(u, ("id", "roles", "public_key"), "[[users]]")
            uid = u.get("id")
            _want(isinstance(uid, str) and _ID.match(uid) is not None, f"bad user id {uid!r}")
            roles = u.get("roles", [])
            _want(isinstance(roles, list) and all(isinstance(r, str) and _ROLE.match(r)
                                                  for r in roles), f"user {uid}: bad roles")
            _want("public_key" in u, f"user {uid}: public_key is missing")
            users.append(User(uid, tuple(sorted(set(roles))), UserKey.parse(u["public_key"])))
        _want(isinstance(m.get("signing", {}), Mapping), "[signing] must be a table")
        signing_m = dict(m.get("signing", {}))
        keys_m = signing_m.pop("keys", {}) or {}
        signing = _parse_signing(signing_m, SigningRule(), "[signing]")
        _want(isinstance(keys_m, Mapping), "[signing.keys] must be a table")
        key_rules = []
        for kid, km in sorted(keys_m.items()):
            _want(_ID.match(kid) is not None, f"bad key id {kid!r}")
            key_rules.append((kid, _parse_signing(km, signing, f"[signing.keys.{kid}]")))
        return cls(
            cluster_id=cluster_id, version=p.get("version", 1),
            users=tuple(sorted(users, key=lambda u: u.id)), signing=signing,
            key_rules=tuple(key_rules),
            key_changes=_parse_quorum(m.get("key_changes", {}), "[key_changes]"),
            policy_change=_parse_quorum(m.get("policy_change", {}), "[policy_change]"),
            clock_skew_s=p.get("clock_skew_s", 30),
        )

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        try:
            return cls.from_mapping(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy is not valid TOML: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
        return cls.from_toml(text)

    @classmethod
    def from_json(cls, data: bytes | str | Mapping) -> Policy:
        if not isinstance(data, Mapping):
            data = _parse(data)
        return cls.from_mapping(data)

    def to_toml(self) -> str:
        """A TOML file whose policy has the same hash."""
        c = self.canonical()
        out = ["[policy]"]
        out += [f"{k} = {_toml(v)}" for k, v in c["policy"].items()]
        for u in c["users"]:
            out += ["", "[[users]]"] + [f"{k} = {_toml(v)}" for k, v in u.items()]
        keys = c["signing"].pop("keys")
        out += ["", "[signing]"] + [f"{k} = {_toml(v)}" for k, v in c["signing"].items()
                                    if v is not None]
        for kid, r in keys.items():
            out += ["", f"[signing.keys.{_toml(kid)}]"]
            out += [f"{k} = {_toml(v)}" for k, v in r.items() if v is not None]
        for name in ("key_changes", "policy_change"):
            out += ["", f"[{name}]"] + [f"{k} = {_toml(v)}" for k, v in c[name].items()]
        return "\n".join(out) + "\n"

    def summary(self) -> dict:
        """What a client needs to make statements (e.g. for ``GET /v1/policy``)."""
        return {"cluster_id": self.cluster_id, "policy_hash": self.hash,
                "version": self.version, "policy": self.canonical()}


def _toml(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        s = v.replace("\\", "\\\\").replace('"', '\\"')
        s = "".join(c if ord(c) >= 0x20 and c != "\x7f" else f"\\u{ord(c):04x}" for c in s)
        return f'"{s}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    raise PolicyError(f"cannot write {type(v).__name__} as TOML")


# =========================================================================== statements


def _canonical_ok(v: Any, what: str) -> None:
    try:
        canonical_json(v)
    except CanonicalError as exc:
        raise PolicyError(f"{what}: {exc}") from None


def _check_id(v: Any, what: str) -> str:
    if not isinstance(v, str) or _ID.match(v) is None:
        raise PolicyError(f"{what} must be an id")
    return v


def _check_time(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= 2**40:
        raise PolicyError(f"{what} must be integer seconds since the epoch")
    return v


def _check_params(action: str, params: Any) -> dict | None:
    if action == SIGN:
        if params is not None:
            raise PolicyError("a sign request has no params")
        return None
    if not isinstance(params, dict):
        raise PolicyError(f"a {action} request has params (an object)")
    _canonical_ok(params, "params")
    if action in ("keygen", "reshare"):
        _only(params, ("threshold", "nodes"), f"{action} params")
        _int(params.get("threshold"), "params.threshold", 1, 1000)
        nodes = params.get("nodes")
        if nodes is not None:
            _want(isinstance(nodes, list) and all(isinstance(n, str) for n in nodes),
                  "params.nodes must be a list of node ids")
    elif action == "import":
        _only(params, ("bundle_hash", "public_key", "threshold", "nodes"), "import params")
        _want(isinstance(params.get("bundle_hash"), str) and _HEX32.match(params["bundle_hash"]) is not None,
              "params.bundle_hash must be 64 lowercase hex characters")
        _want(isinstance(params.get("public_key"), str) and len(params["public_key"]) == 66,
              "params.public_key must be a compressed public key in hex")
        _int(params.get("threshold"), "params.threshold", 1, 1000)
        nodes = params.get("nodes")
        _want(isinstance(nodes, list) and all(isinstance(n, str) for n in nodes),
              "params.nodes must be a list of node ids")
    else:
        _only(params, (), f"{action} params")
    return params


@dataclass(frozen=True)
class Request:
    """What an initiator asks for. Sign: ``digest`` (hex, 32 bytes) xor ``payload_type`` +
    ``payload_hash`` (hex SHA-256 of the payload bytes), and ``derivation_path`` (canonical,
    ``m`` for the key itself). Key changes: ``params`` (keygen/reshare: ``threshold``,
    ``nodes``; refresh: ``{}``), ``key_id`` None for a keygen."""

    cluster_id: str
    policy_hash: str
    action: str
    key_id: str | None
    initiator: str
    nonce: str
    created_at: int
    expires_at: int
    derivation_path: str | None = None
    digest: str | None = None
    payload_type: str | None = None
    payload_hash: str | None = None
    params: dict | None = None
    #: the Bitcoin network a PSBT is read for (a PSBT does not say); None: the key rule's
    network: str | None = None

    def __post_init__(self) -> None:
        _check_id(self.cluster_id, "cluster_id")
        _want(isinstance(self.policy_hash, str) and _HEX32.match(self.policy_hash) is not None,
              "policy_hash must be 64 lowercase hex characters")
        _want(self.action in ACTIONS, f"action must be one of {', '.join(ACTIONS)}")
        _check_id(self.initiator, "initiator")
        _want(isinstance(self.nonce, str) and _NONCE.match(self.nonce) is not None,
              "nonce must be 1-128 characters of [A-Za-z0-9._:+/=-]")
        _check_time(self.created_at, "created_at")
        _check_time(self.expires_at, "expires_at")
        _want(self.expires_at > self.created_at, "expires_at must be after created_at")
        _check_params(self.action, self.params)
        _want(self.network is None or (self.action == SIGN and self.network in BITCOIN_NETWORKS),
              f"network is one of {', '.join(BITCOIN_NETWORKS)} (sign requests only)")
        if self.action == SIGN:
            _check_id(self.key_id, "key_id")
            _want(isinstance(self.derivation_path, str), "a sign request has a derivation_path")
            parse_path(self.derivation_path)
            has_digest = self.digest is not None
            has_payload = self.payload_type is not None or self.payload_hash is not None
            _want(has_digest != has_payload, "a sign request has a digest or a payload, not both")
            if has_digest:
                _want(isinstance(self.digest, str) and _HEX32.match(self.digest) is not None,
                      "digest must be 64 lowercase hex characters (32 bytes)")
            else:
                _want(self.payload_type in PAYLOAD_TYPES,
                      f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}")
                _want(isinstance(self.payload_hash, str)
                      and _HEX32.match(self.payload_hash) is not None,
                      "payload_hash must be 64 lowercase hex characters")
        else:
            if self.action in ("keygen", "import"):
                _want(self.key_id is None, f"a {self.action} request has no key_id")
            else:
                _check_id(self.key_id, "key_id")
            _want(self.derivation_path is None and self.digest is None
                  and self.payload_type is None and self.payload_hash is None,
                  f"a {self.action} request has no path, digest or payload")

    def statement(self) -> dict:
        return {
            "type": REQUEST_TYPE, "cluster_id": self.cluster_id, "policy_hash": self.policy_hash,
            "action": self.action, "key_id": self.key_id, "initiator": self.initiator,
            "nonce": self.nonce, "created_at": self.created_at, "expires_at": self.expires_at,
            "derivation_path": self.derivation_path, "digest": self.digest,
            "payload_type": self.payload_type, "payload_hash": self.payload_hash,
            "params": self.params, "network": self.network,
        }

    def message(self) -> bytes:
        """The bytes the initiator signs (RFC 8785 JSON of :meth:`statement`)."""
        return canonical_json(self.statement())

    @property
    def request_id(self) -> str:
        """``req_`` + 32 hex characters of SHA-256 over :meth:`message`: the same statement
        (same nonce) always gives the same id, a different one another id."""
        return "req_" + hashlib.sha256(self.message()).hexdigest()[:32]

    @classmethod
    def from_statement(cls, s: Any) -> Request:
        if not isinstance(s, Mapping):
            raise PolicyError("a request statement is an object")
        want = set(cls.__dataclass_fields__) | {"type"}
        _want(set(s) == want, "a request statement has exactly the fields "
              + ", ".join(sorted(want)))
        _want(s["type"] == REQUEST_TYPE, f"statement type must be {REQUEST_TYPE}")
        try:
            return cls(**{k: s[k] for k in cls.__dataclass_fields__})
        except TypeError:  # pragma: no cover - fields checked above
            raise PolicyError("bad request statement") from None

    def binding(self) -> dict:
        """The fields an approval repeats."""
        return {"cluster_id": self.cluster_id, "policy_hash": self.policy_hash,
                "request_id": self.request_id, "action": self.action, "key_id": self.key_id,
                "derivation_path": self.derivation_path, "digest": self.digest,
                "payload_type": self.payload_type, "payload_hash": self.payload_hash,
                "params": self.params, "initiator": self.initiator,
                "request_expires_at": self.expires_at}


def _parse(data: bytes | str) -> Any:
    try:
        return parse_json(data)
    except CanonicalError as exc:
        raise PolicyError(str(exc)) from None


def _sig_hex(v: Any) -> bytes:
    if not isinstance(v, str) or len(v) > 300:
        raise PolicyError("a signature is hex")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise PolicyError("a signature is hex") from None


@dataclass(frozen=True)
class SignedRequest:
    request: Request
    signature: bytes

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def verify(self, policy: Policy) -> bool:
        user = policy.user(self.request.initiator)
        return user is not None and user.key.verify(self.request.message(), self.signature)

    def to_json(self) -> dict:
        return {"statement": self.request.statement(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: Any) -> SignedRequest:
        if isinstance(data, (bytes, str)):
            data = _parse(data)
        _want(isinstance(data, Mapping) and set(data) == {"statement", "signature"},
              "a signed request is {statement, signature}")
        return cls(Request.from_statement(data["statement"]), _sig_hex(data["signature"]))


_APPROVAL_BINDING = ("cluster_id", "policy_hash", "request_id", "action", "key_id",
                     "derivation_path", "digest", "payload_type", "payload_hash", "params",
                     "initiator", "request_expires_at")


@dataclass(frozen=True)
class Approval:
    """One person's signed decision (``approve``, ``reject``, or the initiator's
    ``cancel``) on one request: the request's binding fields, who, what, when, until when."""

    binding: dict
    approver: str
    decision: str
    signed_at: int
    expires_at: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        _want(isinstance(self.binding, dict) and set(self.binding) == set(_APPROVAL_BINDING),
              "approval binding fields are " + ", ".join(_APPROVAL_BINDING))
        _check_id(self.approver, "approver")
        _check_id(self.binding["request_id"], "request_id")
        _want(self.decision in DECISIONS, f"decision must be one of {', '.join(DECISIONS)}")
        _check_time(self.signed_at, "signed_at")
        _check_time(self.expires_at, "expires_at")
        _want(self.expires_at > self.signed_at, "expires_at must be after signed_at")
        _canonical_ok(self.statement(), "approval")

    @property
    def request_id(self) -> str:
        return self.binding["request_id"]

    def statement(self) -> dict:
        return {"type": APPROVAL_TYPE, **self.binding, "approver": self.approver,
                "decision": self.decision, "signed_at": self.signed_at,
                "expires_at": self.expires_at}

    def message(self) -> bytes:
        """The bytes the approver signs (RFC 8785 JSON of :meth:`statement`)."""
        return canonical_json(self.statement())

    def to_json(self) -> dict:
        return {"statement": self.statement(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: Any) -> Approval:
        if isinstance(data, (bytes, str)):
            data = _parse(data)
        _want(isinstance(data, Mapping) and set(data) == {"statement", "signature"},
              "an approval is {statement, signature}")
        s = data["statement"]
        want = set(_APPROVAL_BINDING) | {"type", "approver", "decision", "signed_at",
                                         "expires_at"}
        _want(isinstance(s, Mapping) and set(s) == want,
              "an approval statement has exactly the fields " + ", ".join(sorted(want)))
        _want(s["type"] == APPROVAL_TYPE, f"statement type must be {APPROVAL_TYPE}")
        return cls({k: s[k] for k in _APPROVAL_BINDING}, s["approver"], s["decision"],
                   s["signed_at"], s["expires_at"], _sig_hex(data["signature"]))


# -- client-side helpers -------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_hex(16)


def payload_hash(payload_type: str, payload: Any) -> str:
    """The hex SHA-256 a request carries for a payload, over its bytes: ``psbt`` the decoded
    PSBT (base64 text or raw bytes), ``eth_tx`` the serialized transaction (hex text or raw
    bytes), ``eip712`` the RFC 8785 JSON of the typed-data object (or the exact JSON bytes if
    given as bytes/str)."""
    if payload_type not in PAYLOAD_TYPES:
        raise PolicyError(f"payload_type must be one of {', '.join(PAYLOAD_TYPES)}")
    if payload_type == "eip712" and isinstance(payload, Mapping):
        try:
            data = canonical_json(payload)
        except CanonicalError:  # integers beyond 2**53: sorted compact JSON instead
            data = json.dumps(payload, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode()
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
    elif isinstance(payload, str):
        try:
            if payload_type == "psbt":
                data = base64.b64decode(payload, validate=True)
            elif payload_type == "eth_tx":
                data = bytes.fromhex(payload.removeprefix("0x"))
            else:
                data = payload.encode("utf-8")
        except (binascii.Error, ValueError):
            raise PolicyError(f"{payload_type} payload does not decode") from None
    else:
        raise PolicyError("a payload is bytes, text, or (eip712) a JSON object")
    return hashlib.sha256(data).hexdigest()


def make_request(
    private_key: Any, *, cluster_id: str, policy_hash: str, initiator: str, now: float,
    ttl_s: int, action: str = SIGN, key_id: str | None = None,
    digest: bytes | str | None = None, derivation_path: str | None = None,
    payload: bytes | None = None, payload_type: str | None = None,
    params: dict | None = None, nonce: str | None = None, network: str | None = None,
) -> SignedRequest:
    """Build and sign a request (what the client library does for ``request_signature``,
    ``create_key``, ``refresh``, ``reshare``). ``nonce`` is the idempotency key."""
    created = int(now)
    if isinstance(digest, (bytes, bytearray)):
        digest = bytes(digest).hex()
    req = Request(
        cluster_id=cluster_id, policy_hash=policy_hash, action=action, key_id=key_id,
        initiator=initiator, nonce=nonce or new_nonce(), created_at=created,
        expires_at=created + int(ttl_s),
        derivation_path=normalize_path(derivation_path) if action == SIGN else None,
        digest=digest.lower() if isinstance(digest, str) else None,
        payload_type=payload_type if payload is not None else None,
        payload_hash=payload_hash(payload_type, payload) if payload is not None else None,
        params=params if action != SIGN else None,
        network=network if action == SIGN else None,
    )
    return SignedRequest(req, sign_message(private_key, req.message()))


def make_approval(
    private_key: Any, request: Request, *, approver: str, now: float, ttl_s: int,
    decision: str = "approve",
) -> Approval:
    """Build and sign a decision on ``request`` (``approve``/``reject``; the initiator's
    ``cancel``)."""
    a = Approval(request.binding(), approver, decision, int(now), int(now) + int(ttl_s))
    return replace(a, signature=sign_message(private_key, a.message()))


# =========================================================================== evaluation


@dataclass(frozen=True)
class Decision:
    outcome: str                        # allowed | pending | denied
    reason: str | None = None           # None when allowed
    message: str = ""
    subject: str | None = None          # the user the reason is about, where there is one
    approvers: tuple[str, ...] = ()     # the people counted towards the rule
    missing: tuple[tuple[tuple[str, ...], int], ...] = ()  # (roles, how many more)

    @property
    def allowed(self) -> bool:
        return self.outcome == ALLOWED

    @property
    def pending(self) -> bool:
        return self.outcome == PENDING

    @property
    def denied(self) -> bool:
        return self.outcome == DENIED

    def require_allowed(self) -> Decision:
        """Raise :class:`PolicyDenied` unless allowed (what a signer node does)."""
        if not self.allowed:
            raise PolicyDenied(self.reason or "denied", self.message, subject=self.subject)
        return self

    def to_json(self) -> dict:
        out: dict[str, Any] = {"outcome": self.outcome, "reason": self.reason,
                               "approvers": list(self.approvers)}
        if self.missing:
            out["missing"] = [{"roles": list(r), "count": n} for r, n in self.missing]
        return out


def _deny(reason: str, message: str, subject: str | None = None) -> Decision:
    return Decision(DENIED, reason, message, subject)


#: rate-limit usage: the number of signatures already made with ``key_id`` in the last
#: ``window_s`` seconds; an int (already counted for the rule's window) or a callable
Usage = int | Callable[[str, int], int]


def _assign(groups: Sequence[ApprovalGroup], people: Sequence[User]) -> tuple[list[str], list]:
    """Count distinct people towards groups (each person fills at most one slot): a maximum
    bipartite matching people -> slots. Returns (counted ids, [(roles, missing)])."""
    slots = [gi for gi, g in enumerate(groups) for _ in range(g.count)]
    owner: dict[int, int] = {}  # slot -> person index

    def try_place(pi: int, seen: set[int]) -> bool:
        for si, gi in enumerate(slots):
            if si in seen or not any(people[pi].has(r) for r in groups[gi].roles):
                continue
            seen.add(si)
            if si not in owner or try_place(owner[si], seen):
                owner[si] = pi
                return True
        return False

    for pi in range(len(people)):
        try_place(pi, set())
    counted = sorted(people[pi].id for pi in owner.values())
    missing = []
    for gi, g in enumerate(groups):
        filled = sum(1 for si, sg in enumerate(slots) if sg == gi and si in owner)
        if filled < g.count:
            missing.append((g.roles, g.count - filled))
    return counted, missing


def _in_hours(hours: tuple[int, int], now: float) -> bool:
    start, end = hours
    h = int(now // 3600) % 24
    if start < end:
        return start <= h < end
    return h >= start or h < end


def check_approval(
    policy: Policy, request: Request, approval: Approval, now: float,
    existing: Iterable[Approval] = (),
) -> Decision | None:
    """Check one decision against its request: None if it is sound and counts, else a
    ``denied`` Decision with the reason (what a node does before it stores an approval).
    ``existing``: decisions already recorded (a second one by the same person is refused).
    An approval past its validity gives reason ``expired`` here; :func:`evaluate` just does
    not count it."""
    problem = _approval_problem(policy, request, approval, now)
    if problem is not None:
        return problem
    if any(a.approver == approval.approver for a in existing):
        return _deny("duplicate_approver", f"{approval.approver} already decided on this "
                     "request", approval.approver)
    if _approval_expired(policy, request, approval, now):
        return _deny("expired", "the approval has expired", approval.approver)
    return None


def _approval_ttl(policy: Policy, request: Request) -> int:
    if request.action == SIGN:
        return policy.rule_for(request.key_id).approval_ttl_s
    return policy.key_changes.approval_ttl_s


def _approval_expired(policy: Policy, request: Request, a: Approval, now: float) -> bool:
    until = min(a.expires_at, a.signed_at + _approval_ttl(policy, request))
    return now >= until


def _approval_problem(policy: Policy, request: Request, a: Approval, now: float
                      ) -> Decision | None:
    binding = request.binding()
    if a.binding != binding:
        diff = sorted(k for k in _APPROVAL_BINDING if a.binding.get(k) != binding.get(k))
        return _deny("approval_for_other_request",
                     f"{a.approver}'s {a.decision} was made for another request "
                     f"({', '.join(diff)} differ)", a.approver)
    user = policy.user(a.approver)
    if user is None:
        return _deny("unknown_user", f"{a.approver} is not a user of this policy", a.approver)
    if not user.key.verify(a.message(), a.signature):
        return _deny("bad_signature", f"{a.approver}'s {a.decision} is not signed by "
                     "their key", a.approver)
    if a.signed_at > now + policy.clock_skew_s:
        return _deny("not_yet_valid", f"{a.approver}'s {a.decision} is dated in the future",
                     a.approver)
    if a.decision == "cancel":
        if a.approver != request.initiator:
            return _deny("not_initiator", "only the initiator may cancel a request", a.approver)
        return None
    if a.approver == request.initiator:
        return _deny("self_approval", "the initiator cannot approve or reject their own "
                     "request", a.approver)
    roles = (policy.rule_for(request.key_id).approver_roles if request.action == SIGN
             else frozenset(policy.key_changes.roles))
    if not any(user.has(r) for r in roles):
        return _deny("missing_role", f"{a.approver} holds none of the roles "
                     f"{', '.join(sorted(roles))}", a.approver)
    return None


def evaluate(
    policy: Policy,
    request: SignedRequest,
    approvals: Iterable[Approval],
    now: float,
    usage: Usage = 0,
) -> Decision:
    """Decide on ``request`` with the decisions recorded on it, at time ``now`` (Unix
    seconds), given the key's signature ``usage`` in the rule's window. Pure.

    Order: the request itself (cluster, policy hash, initiator, role, signature); every
    decision (bound to this request, known signer, signature, self-approval, role,
    duplicates) -- one unsound decision denies, since an honest coordinator never forwards
    one; a cancel or a rejection; the request's validity window; the rule's limits (raw
    digest / payload type, path, hours, rate); then the approvals counted (distinct people,
    each towards one group; expired ones do not count)."""
    if not isinstance(request, SignedRequest):
        raise TypeError("evaluate() takes a SignedRequest")
    req = request.request
    approvals = list(approvals)
    if req.cluster_id != policy.cluster_id:
        return _deny("wrong_cluster", f"request is for cluster {req.cluster_id!r}")
    if req.policy_hash != policy.hash:
        return _deny("policy_mismatch", "request was made under another policy")
    initiator = policy.user(req.initiator)
    if initiator is None:
        return _deny("unknown_user", f"{req.initiator} is not a user of this policy",
                     req.initiator)
    if req.action == SIGN:
        rule = policy.rule_for(req.key_id)
        init_roles, ttl = rule.initiator_roles, rule.request_ttl_s
    else:
        rule = None
        init_roles, ttl = policy.key_changes.roles, policy.key_changes.request_ttl_s
    if not any(initiator.has(r) for r in init_roles):
        return _deny("missing_role", f"{req.initiator} may not request {req.action} "
                     f"(needs {', '.join(init_roles)})", req.initiator)
    if not request.verify(policy):
        return _deny("bad_signature", "the request is not signed by its initiator's key",
                     req.initiator)

    seen: set[str] = set()
    counted_people: list[User] = []
    expired_approvals = []
    cancelled = rejected = None
    for a in approvals:
        problem = _approval_problem(policy, req, a, now)
        if problem is not None:
            return problem
        if a.approver in seen:
            return _deny("duplicate_approver", f"{a.approver} appears twice", a.approver)
        seen.add(a.approver)
        if a.decision == "cancel":
            cancelled = cancelled or a
        elif a.decision == "reject":
            rejected = rejected or a
        elif _approval_expired(policy, req, a, now):
            expired_approvals.append(a.approver)
        else:
            counted_people.append(policy.user(a.approver))
    if cancelled is not None:
        return _deny("cancelled", "the initiator cancelled the request", cancelled.approver)
    if rejected is not None:
        return _deny("rejected", f"{rejected.approver} rejected the request", rejected.approver)

    if req.created_at > now + policy.clock_skew_s:
        return _deny("not_yet_valid", "the request is dated in the future", req.initiator)
    if now >= min(req.expires_at, req.created_at + ttl):
        return _deny("expired", "the request has expired")

    if rule is not None:
        if req.digest is not None and not rule.allow_raw_digest:
            return _deny("raw_digest_forbidden", "this key signs payloads, not bare digests")
        if req.payload_type is not None and req.payload_type not in rule.payload_types:
            return _deny("payload_type_not_allowed", f"payload type {req.payload_type} is not allowed")
        if not any(path_matches(p, req.derivation_path) for p in rule.derivation_paths):
            return _deny("path_not_allowed", f"derivation path {req.derivation_path} is not "
                         "allowed for this key")
        if rule.hours_utc is not None and not _in_hours(rule.hours_utc, now):
            return _deny("outside_hours", f"signing is allowed {rule.hours_utc[0]:02d}:00 to "
                         f"{rule.hours_utc[1]:02d}:00 UTC")
        if rule.max_signatures is not None:
            used = usage(req.key_id, rule.window_s) if callable(usage) else int(usage)
            if used >= rule.max_signatures:
                return _deny("rate_limited", f"{used} signatures in the last {rule.window_s} s "
                             f"(limit {rule.max_signatures})")
        groups = rule.approvals
        people = counted_people
    else:
        groups = (ApprovalGroup(policy.key_changes.roles, policy.key_changes.quorum),)
        people = [initiator, *counted_people]  # the requesting admin counts

    counted, missing = _assign(groups, people)
    if missing:
        need = "; ".join(f"{n} more of {'/'.join(r)}" for r, n in missing)
        note = f" ({', '.join(expired_approvals)}: approval expired)" if expired_approvals else ""
        return Decision(PENDING, "pending_approval", f"waiting for approval: {need}{note}",
                        approvers=tuple(counted), missing=tuple(missing))
    return Decision(ALLOWED, None, "the policy is met", approvers=tuple(counted))


def check_job_binding(
    request: Request, *, action: str, key_id: str | None, digest: bytes | str | None = None,
    derivation_path: str | None = None,
) -> Decision | None:
    """A signer node's check that the job it is asked to join is the request's: same
    action, key, digest and path. None if it is, else ``request_mismatch``."""
    if isinstance(digest, (bytes, bytearray)):
        digest = bytes(digest).hex()
    diff = []
    if action != request.action:
        diff.append("action")
    if key_id != request.key_id:
        diff.append("key_id")
    if request.action == SIGN:
        try:
            path = normalize_path(derivation_path)
        except PolicyError:
            path = None
        if path != request.derivation_path:
            diff.append("derivation_path")
        if request.digest is not None and digest != request.digest:
            diff.append("digest")
    if diff:
        return _deny("request_mismatch", f"the job differs from the signed request in "
                     f"{', '.join(diff)}")
    return None


# =========================================================================== updates


@dataclass(frozen=True)
class PolicyUpdate:
    """A new policy with the signatures of the current policy's admins."""

    policy: Policy
    previous_policy_hash: str
    signatures: tuple[tuple[str, bytes], ...] = ()

    def statement(self) -> dict:
        return {"type": POLICY_UPDATE_TYPE, "cluster_id": self.policy.cluster_id,
                "previous_policy_hash": self.previous_policy_hash,
                "policy_hash": self.policy.hash, "version": self.policy.version}

    def message(self) -> bytes:
        """The bytes each admin signs."""
        return canonical_json(self.statement())

    def signed_by(self, admin: str, private_key: Any) -> PolicyUpdate:
        sig = sign_message(private_key, self.message())
        return replace(self, signatures=(*self.signatures, (admin, sig)))

    def to_json(self) -> dict:
        return {"policy": self.policy.canonical(),
                "previous_policy_hash": self.previous_policy_hash,
                "signatures": [{"user": u, "signature": s.hex()} for u, s in self.signatures]}

    @classmethod
    def from_json(cls, data: Any) -> PolicyUpdate:
        if isinstance(data, (bytes, str)):
            data = _parse(data)
        _want(isinstance(data, Mapping)
              and set(data) == {"policy", "previous_policy_hash", "signatures"},
              "a policy update is {policy, previous_policy_hash, signatures}")
        sigs = data["signatures"]
        _want(isinstance(sigs, list) and all(isinstance(s, Mapping) and set(s) == {"user", "signature"}
                                             for s in sigs), "signatures: [{user, signature}]")
        prev = data["previous_policy_hash"]
        _want(isinstance(prev, str) and _HEX32.match(prev) is not None,
              "previous_policy_hash must be 64 lowercase hex characters")
        return cls(Policy.from_mapping(data["policy"]), prev,
                   tuple((_check_id(s["user"], "user"), _sig_hex(s["signature"])) for s in sigs))


def verify_policy_update(current: Policy, update: PolicyUpdate) -> Policy:
    """The new policy if the current policy's ``policy_change`` quorum signed it, else
    :class:`PolicyDenied` (``wrong_cluster``, ``policy_mismatch``, ``stale_policy``,
    ``unknown_user``, ``missing_role``, ``bad_signature``, ``duplicate_approver``,
    ``missing_quorum``). Any unsound signature refuses the whole update."""
    new = update.policy
    if new.cluster_id != current.cluster_id:
        raise PolicyDenied("wrong_cluster", "the new policy is for another cluster")
    if update.previous_policy_hash != current.hash:
        raise PolicyDenied("policy_mismatch", "the update does not replace the current policy")
    if new.version <= current.version:
        raise PolicyDenied("stale_policy", f"the new policy's version ({new.version}) must be "
                           f"above the current one ({current.version})")
    rule = current.policy_change
    message = update.message()
    signers: list[User] = []
    for uid, sig in update.signatures:
        user = current.user(uid)
        if user is None:
            raise PolicyDenied("unknown_user", f"{uid} is not a user of the current policy",
                               subject=uid)
        if not any(user.has(r) for r in rule.roles):
            raise PolicyDenied("missing_role", f"{uid} holds none of {', '.join(rule.roles)}",
                               subject=uid)
        if not user.key.verify(message, sig):
            raise PolicyDenied("bad_signature", f"{uid}'s signature does not verify", subject=uid)
        if any(s.id == uid for s in signers):
            raise PolicyDenied("duplicate_approver", f"{uid} signed twice", subject=uid)
        signers.append(user)
    if len(signers) < rule.quorum:
        raise PolicyDenied("missing_quorum", f"{len(signers)} of the {rule.quorum} admin "
                           "signatures the current policy asks for")
    return new


# =========================================================================== defaults


DEFAULT_ROLES = ("initiator", "approver", "admin", "auditor")


def default_policy(cluster_id: str, user_keys: Mapping[str, str | bytes], *,
                   roles: Mapping[str, Sequence[str]] | None = None,
                   request_ttl_s: int = 86400, approval_ttl_s: int = 86400) -> Policy:
    """LocalCluster's default: one user per role (user id = role name unless ``roles``
    maps ids to roles); signing needs the initiator and one approver; key changes and policy
    changes one admin; any derivation path; raw digests and every payload type allowed;
    no rate limit, no hours. The auditor role only reads the audit log."""
    users = []
    for uid, key in user_keys.items():
        r = tuple(roles[uid]) if roles is not None else (uid,)
        users.append(User(uid, tuple(sorted(r)), UserKey.parse(key)))
    return Policy(
        cluster_id=cluster_id, version=1, users=tuple(sorted(users, key=lambda u: u.id)),
        signing=SigningRule(request_ttl_s=request_ttl_s, approval_ttl_s=approval_ttl_s,
                            allow_raw_digest=True),
        key_changes=QuorumRule(("admin",), 1, request_ttl_s, approval_ttl_s),
        policy_change=QuorumRule(("admin",), 1, request_ttl_s, approval_ttl_s),
    )


# =========================================================================== node helpers


def apply_updates(base: Policy, updates: Iterable[PolicyUpdate | Mapping | str | bytes]
                  ) -> Policy:
    """The policy in force after ``updates`` (in order), each verified against the one
    before it: what a node does at start-up with the base file and the updates it stored."""
    current = base
    for u in updates:
        upd = u if isinstance(u, PolicyUpdate) else PolicyUpdate.from_json(u)
        current = verify_policy_update(current, upd)
    return current


def authorize(
    policy: Policy, request: SignedRequest | Mapping | str | bytes,
    approvals: Iterable[Approval | Mapping | str | bytes], *, now: float, usage: Usage = 0,
    action: str | None = None, key_id: str | None = None, digest: bytes | str | None = None,
    derivation_path: str | None = None, policy_hash: str | None = None,
) -> Decision:
    """Everything a signer node checks before it joins a job, in one call: the job's
    ``policy_hash`` (if given) is ours, the request and approvals parse, the job is the
    signed request's (when ``action`` is given: key, digest, path), and :func:`evaluate`.
    Never raises on bad input: a malformed statement is ``denied``/``bad_request``."""
    if policy_hash is not None and policy_hash != policy.hash:
        return _deny("policy_mismatch", "the job was opened under another policy")
    try:
        sr = request if isinstance(request, SignedRequest) else SignedRequest.from_json(request)
        appr = [a if isinstance(a, Approval) else Approval.from_json(a) for a in approvals]
    except (PolicyError, CanonicalError) as exc:
        return _deny("bad_request", f"malformed statement: {exc}")
    if action is not None:
        mismatch = check_job_binding(sr.request, action=action, key_id=key_id, digest=digest,
                                     derivation_path=derivation_path)
        if mismatch is not None:
            return mismatch
    return evaluate(policy, sr, appr, now, usage)
