"""What an audit log holds: entries and checkpoints, their fields and grammars, the
errors, and the node identity-key signature check (see :mod:`appliance.audit`)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.canonical import canonical_json, parse_json
from appliance.errors import ApplianceError
from appliance.tss import ecdsa

ENTRY_TYPE = "appliance/audit/v1"
CHECKPOINT_TYPE = "appliance/audit-checkpoint/v1"
GENESIS = "0" * 64
ENTRY_FIELDS = ("type", "node", "seq", "time", "actor", "action", "key", "subject", "digest",
                "decision", "reason", "prev")
#: fields an entry may carry in addition (entries written before them stay valid, unchanged):
#: ``request_id``, the X-Request-Id of the request that caused the entry (appliance/logs.py)
OPTIONAL_ENTRY_FIELDS = ("request_id",)
CHECKPOINT_FIELDS = ("type", "node", "seq", "head", "time")

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
_ACTION = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_DECISION = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# secret-looking material: long hex or decimal runs (a 32-byte value is 64 hex or ~77 digits)
# in any text field; in the free-text reason also base64 runs and PEM armour
_SECRET_NUM = re.compile(r"[0-9a-fA-F]{48,}|[0-9]{40,}")
_SECRET_TEXT = re.compile(r"-----BEGIN|PRIVATE KEY|[A-Za-z0-9+/]{43,}")
MAX_REASON = 300
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# =========================================================================== errors


class AuditError(ApplianceError):
    code = "audit_error"


class AuditUnavailable(AuditError):
    """The audit log cannot record: refuse the action (fail closed)."""

    code = "audit_unavailable"


class AuditFieldError(AuditError, ValueError):
    """A field that is not allowed in an entry (wrong shape, or secret-looking)."""

    code = "audit_field_refused"


# =========================================================================== records


def iso_time(t: float) -> str:
    ms = round(t * 1000)
    d = _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    raw: bytes  # the stored canonical bytes
    hash: str

    @property
    def fields(self) -> dict:
        return parse_json(self.raw)

    def to_json(self) -> dict:
        """The entry's fields and its hash (for a JSON API)."""
        return {**self.fields, "hash": self.hash}

    def line(self) -> bytes:
        """The export line: the stored bytes verbatim inside canonical JSON."""
        return b'{"entry":' + self.raw + b',"hash":"' + self.hash.encode() + b'"}'


@dataclass(frozen=True)
class Checkpoint:
    node: str
    seq: int
    head: str
    time: str
    signature: bytes
    cosignatures: dict[str, bytes] = field(default_factory=dict)

    def body(self) -> dict:
        return {"type": CHECKPOINT_TYPE, "node": self.node, "seq": self.seq, "head": self.head,
                "time": self.time}

    def message(self) -> bytes:
        return canonical_json(self.body())

    def digest(self) -> bytes:
        """What the node's identity key (and each co-signer's) signs."""
        return hashlib.sha256(self.message()).digest()

    def to_json(self) -> dict:
        return {"checkpoint": self.body(), "signature": self.signature.hex(),
                "cosignatures": {k: v.hex() for k, v in sorted(self.cosignatures.items())}}

    def line(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        if isinstance(data, (bytes, str)):
            data = parse_json(data)
        if not isinstance(data, Mapping) or set(data) - {"cosignatures"} != {"checkpoint",
                                                                             "signature"}:
            raise AuditError("a checkpoint is {checkpoint, signature, cosignatures}")
        body = data["checkpoint"]
        if not isinstance(body, Mapping) or set(body) != set(CHECKPOINT_FIELDS) \
                or body["type"] != CHECKPOINT_TYPE:
            raise AuditError("bad checkpoint body")
        if not (isinstance(body["node"], str) and ID.match(body["node"])
                and type(body["seq"]) is int and body["seq"] >= 1
                and isinstance(body["head"], str) and HEX64.match(body["head"])
                and isinstance(body["time"], str) and TIME.match(body["time"])):
            raise AuditError("bad checkpoint body")
        cos = data.get("cosignatures", {})
        if not isinstance(cos, Mapping):
            raise AuditError("bad checkpoint co-signatures")
        try:
            sig = bytes.fromhex(data["signature"])
            cosig = {str(k): bytes.fromhex(v) for k, v in cos.items()}
        except (TypeError, ValueError):
            raise AuditError("checkpoint signatures are hex") from None
        return cls(body["node"], body["seq"], body["head"], body["time"], sig, cosig)


def verify_node_signature(public_key: bytes | str, digest: bytes, signature: bytes) -> bool:
    """A node identity-key signature: secp256k1 ECDSA, 64-byte r||s over a 32-byte digest."""
    try:
        pk = bytes.fromhex(public_key) if isinstance(public_key, str) else bytes(public_key)
        if len(signature) != 64:
            return False
        sig = ecdsa.Signature(int.from_bytes(signature[:32], "big"),
                              int.from_bytes(signature[32:], "big"))
        return bool(ecdsa.verify(pk, digest, sig))
    except (ApplianceError, ValueError, TypeError):
        return False


# =========================================================================== field checks


def _opt_id(v: Any, what: str) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or ID.match(v) is None:
        raise AuditFieldError(f"audit {what} must be an id ([A-Za-z0-9._:@+-], up to 128)")
    return v


def _secret_text(v: str) -> bool:
    for m in _SECRET_TEXT.finditer(v):
        run = m.group(0)
        if run.startswith("-----") or run == "PRIVATE KEY":
            return True
        # base64 of random bytes mixes upper case, lower case and digits
        if (any(c.isupper() for c in run) and any(c.islower() for c in run)
                and any(c.isdigit() for c in run)):
            return True
    return False


def check_request_id(v: Any) -> str | None:
    if v is not None and (not isinstance(v, str) or REQUEST_ID.match(v) is None):
        raise AuditFieldError("audit request_id must match [A-Za-z0-9._-]{1,64}")
    return v


def check_fields(actor: Any, action: Any, key: Any, subject: Any, digest: Any,
                  decision: Any, reason: Any) -> tuple:
    actor = _opt_id(actor, "actor")
    if not isinstance(action, str) or _ACTION.match(action) is None:
        raise AuditFieldError("audit action must match [a-z][a-z0-9_.]{0,63}")
    key = _opt_id(key, "key")
    subject = _opt_id(subject, "subject")
    if isinstance(digest, (bytes, bytearray)):
        digest = bytes(digest).hex()
    if digest is not None and (not isinstance(digest, str) or HEX64.match(digest) is None):
        raise AuditFieldError("audit digest must be 32 bytes (64 lowercase hex)")
    if decision is not None and (not isinstance(decision, str) or _DECISION.match(decision) is None):
        raise AuditFieldError("audit decision must be a short code ([a-z][a-z0-9_]{0,31})")
    if reason is not None:
        if not isinstance(reason, str):
            raise AuditFieldError("audit reason must be text")
        reason = " ".join(reason.split())  # no control characters or newlines
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 3] + "..."
    for name, v in (("actor", actor), ("key", key), ("subject", subject), ("reason", reason)):
        if v is not None and (_SECRET_NUM.search(v) or (name == "reason" and _secret_text(v))):
            raise AuditFieldError(f"audit {name} looks like it carries key or secret material: "
                                  "refused")
    return actor, action, key, subject, digest, decision, reason
