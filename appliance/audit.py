"""Tamper-evident audit log: one per node, append-only, hash-chained, checkpointed.

Entries
-------
Each entry is a JSON object with exactly these fields::

    type      "appliance/audit/v1"
    node      the node that wrote it
    seq       1, 2, 3, ... (no gaps)
    time      UTC, RFC 3339 with milliseconds ("2027-01-15T08:00:00.000Z")
    actor     user or node id, or null
    action    what happened ("sign_request", "approval", "policy_denied", "session_start", ...)
    key       key id, or null
    subject   request / operation / session id, or null
    digest    the request's digest (or payload hash), 64 hex, or null
    decision  short code ("allowed", "denied", "pending", "signed", "failed", ...), or null
    reason    reason code or short message, or null
    prev      hash of the previous entry (64 zeros for the first)

The stored bytes of an entry are its RFC 8785 canonical JSON; its hash is the SHA-256 of
those bytes, and the next entry's ``prev`` is that hash. The API takes only these fields,
each checked (ids, codes, hex), and refuses anything that looks like secret material (long
hex, decimal or base64 runs, PEM) with :class:`AuditFieldError`.

Export (JSON Lines), in order::

    {"entry":<the stored bytes, verbatim>,"hash":"<sha256 of them>"}
    {"checkpoint":{...},"cosignatures":{"node-2":"<hex>"},"signature":"<hex>"}

Each line is itself canonical JSON, so the exact stored bytes of every entry are in it.

Checkpoints
-----------
Every ``checkpoint_every`` entries and at :meth:`AuditLog.close`, the node signs
``{"type": "appliance/audit-checkpoint/v1", "node", "seq", "head", "time"}`` (canonical
JSON; the signed digest is its SHA-256) with its identity key through the injected
``signer(digest) -> 64-byte r||s`` (secp256k1). Peers co-sign it: the node sends the
checkpoint to each peer, which checks it with :meth:`AuditLog.witness` (valid signature, no
second head for a sequence number it already saw from that node), keeps it, and returns its
own signature; the node stores that with :meth:`AuditLog.add_cosignature`. A node that
rewrites its history then contradicts checkpoints its peers hold.

Fail closed
-----------
If an entry cannot be written (database gone, read-only, disk full, locked), the call raises
:class:`AuditUnavailable` and nothing is recorded: the caller must refuse the action.

Verification
------------
:func:`verify_export` checks every line, the chain, each checkpoint's signature and
co-signatures against the configured node keys, and names the first entry that is missing,
altered or out of order. Entries cut off the end (with their checkpoints) only show against
the checkpoints the peers witnessed: :mod:`appliance.audit_anchor`; the command
``appliance audit verify FILE`` (:mod:`appliance.audit_verify`) requires them by default.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import re
import sqlite3
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from appliance.canonical import CanonicalError, canonical_json, parse_canonical, parse_json
from appliance.errors import ApplianceError
from appliance.tss import ecdsa

log = logging.getLogger("appliance.audit")

ENTRY_TYPE = "appliance/audit/v1"
CHECKPOINT_TYPE = "appliance/audit-checkpoint/v1"
GENESIS = "0" * 64
ENTRY_FIELDS = ("type", "node", "seq", "time", "actor", "action", "key", "subject", "digest",
                "decision", "reason", "prev")
CHECKPOINT_FIELDS = ("type", "node", "seq", "head", "time")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
_ACTION = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_DECISION = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# secret-looking material: long hex or decimal runs (a 32-byte value is 64 hex or ~77 digits)
# in any text field; in the free-text reason also base64 runs and PEM armour
_SECRET_NUM = re.compile(r"[0-9a-fA-F]{48,}|[0-9]{40,}")
_SECRET_TEXT = re.compile(r"-----BEGIN|PRIVATE KEY|[A-Za-z0-9+/]{43,}")
MAX_REASON = 300


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


def _iso(t: float) -> str:
    ms = round(t * 1000)
    d = _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _sha(data: bytes) -> str:
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
        if not (isinstance(body["node"], str) and _ID.match(body["node"])
                and type(body["seq"]) is int and body["seq"] >= 1
                and isinstance(body["head"], str) and _HEX64.match(body["head"])
                and isinstance(body["time"], str) and _TIME.match(body["time"])):
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
    if not isinstance(v, str) or _ID.match(v) is None:
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


def _check_fields(actor: Any, action: Any, key: Any, subject: Any, digest: Any,
                  decision: Any, reason: Any) -> tuple:
    actor = _opt_id(actor, "actor")
    if not isinstance(action, str) or _ACTION.match(action) is None:
        raise AuditFieldError("audit action must match [a-z][a-z0-9_.]{0,63}")
    key = _opt_id(key, "key")
    subject = _opt_id(subject, "subject")
    if isinstance(digest, (bytes, bytearray)):
        digest = bytes(digest).hex()
    if digest is not None and (not isinstance(digest, str) or _HEX64.match(digest) is None):
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


# =========================================================================== the log

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_entries (
        seq   INTEGER PRIMARY KEY CHECK (seq >= 1),
        entry BLOB NOT NULL,
        hash  TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS audit_checkpoints (
        seq       INTEGER PRIMARY KEY,
        body      BLOB NOT NULL,
        signature BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_cosignatures (
        seq       INTEGER NOT NULL REFERENCES audit_checkpoints(seq),
        node      TEXT NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (seq, node)
    )""",
    """CREATE TABLE IF NOT EXISTS audit_witnessed (
        node      TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        head      TEXT NOT NULL,
        body      BLOB NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (node, seq)
    )""",
]

Signer = Callable[[bytes], bytes]


class AuditLog:
    """The node's audit log in SQLite (its own ``audit_*`` tables).

    ``db``: a path (this object opens its own connection: WAL, ``synchronous=FULL``) or an
    open ``sqlite3.Connection`` in autocommit mode (``isolation_level=None``) that nobody
    else uses for transactions at the same time. ``signer(digest32) -> r||s`` signs
    checkpoints (the HSM identity key); without one no checkpoints are made.
    ``clock() -> float`` gives Unix seconds. Thread-safe.
    """

    def __init__(self, db: str | Path | sqlite3.Connection, node_id: str, *,
                 signer: Signer | None = None, checkpoint_every: int = 100,
                 clock: Callable[[], float] = time.time, busy_timeout: float = 10.0,
                 on_append: Callable[[AuditEntry], None] | None = None) -> None:
        if _ID.match(node_id or "") is None:
            raise AuditFieldError("node id must be an id")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.node_id = node_id
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self.on_append = on_append
        self._lock = threading.RLock()
        self._own = not isinstance(db, sqlite3.Connection)
        try:
            if self._own:
                self._db = sqlite3.connect(str(db), timeout=busy_timeout, isolation_level=None,
                                           check_same_thread=False)
                self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
            else:
                self._db = db
                if db.isolation_level is not None:
                    raise AuditError("give AuditLog a connection with isolation_level=None")
            with self._tx() as c:
                for stmt in _SCHEMA:
                    c.execute(stmt)
                first = c.execute("SELECT entry FROM audit_entries ORDER BY seq LIMIT 1"
                                  ).fetchone()
            if first is not None and parse_json(bytes(first[0]))["node"] != node_id:
                raise AuditError("this audit log belongs to another node")
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot open the audit log: {exc}") from None

    # -- transactions ------------------------------------------------------------------
    class _Tx:
        def __init__(self, log: AuditLog) -> None:
            self.log = log

        def __enter__(self) -> sqlite3.Connection:
            self.log._lock.acquire()
            try:
                self.log._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.log._lock.release()
                raise
            return self.log._db

        def __exit__(self, et, ev, tb) -> None:
            try:
                if et is None:
                    self.log._db.execute("COMMIT")
                else:
                    try:
                        self.log._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
            finally:
                self.log._lock.release()

    def _tx(self) -> AuditLog._Tx:
        return AuditLog._Tx(self)

    # -- writing -----------------------------------------------------------------------
    def append(self, actor: str | None, action: str, *, key: str | None = None,
               subject: str | None = None, digest: bytes | str | None = None,
               decision: str | None = None, reason: str | None = None) -> AuditEntry:
        """Write one entry durably, or raise :class:`AuditUnavailable` (nothing written)."""
        actor, action, key, subject, digest, decision, reason = _check_fields(
            actor, action, key, subject, digest, decision, reason)
        try:
            with self._tx() as c:
                row = c.execute("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
                seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
                raw = canonical_json({
                    "type": ENTRY_TYPE, "node": self.node_id, "seq": seq,
                    "time": _iso(self.clock()), "actor": actor, "action": action, "key": key,
                    "subject": subject, "digest": digest, "decision": decision,
                    "reason": reason, "prev": prev,
                })
                h = _sha(raw)
                c.execute("INSERT INTO audit_entries (seq, entry, hash) VALUES (?, ?, ?)",
                          (seq, raw, h))
        except (sqlite3.Error, CanonicalError) as exc:
            raise AuditUnavailable(f"the audit log cannot record ({exc.__class__.__name__}: "
                                   f"{exc}); the action is refused") from None
        entry = AuditEntry(seq, raw, h)
        if self.on_append is not None:
            try:
                self.on_append(entry)
            except Exception:  # a metrics hook must not undo a durable entry
                log.exception("audit on_append hook failed")
        if self.signer is not None and self.checkpoint_due:
            try:
                self.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the entry is durable; retried later
                log.warning("audit checkpoint failed (will retry): %s", exc)
        return entry

    def record(self, actor: str | None, action: str, *, key_id: str | None = None,
               subject: str | None = None, digest: bytes | str | None = None,
               decision: str | None = None, reason: str | None = None) -> AuditEntry:
        """:meth:`append` with the node's historic keyword names (``key_id``)."""
        return self.append(actor, action, key=key_id, subject=subject, digest=digest,
                           decision=decision, reason=reason)

    # -- reading -----------------------------------------------------------------------
    def _read(self, sql: str, args: tuple = ()) -> list:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot read the audit log: {exc}") from None

    def head(self) -> tuple[int, str]:
        """(last sequence number, its hash); (0, GENESIS) when empty."""
        rows = self._read("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)

    def iter_entries(self, since: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        """Entries with ``seq > since`` in order."""
        sql = "SELECT seq, entry, hash FROM audit_entries WHERE seq > ? ORDER BY seq"
        args: tuple = (since,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        for seq, raw, h in self._read(sql, args):
            yield AuditEntry(seq, bytes(raw), h)

    def entries(self, since: int = 0, limit: int = 1000) -> list[dict]:
        """Entries after ``since`` as dicts (fields and ``hash``), for a JSON API."""
        return [e.to_json() for e in self.iter_entries(since, limit)]

    def checkpoints(self, since: int = 0) -> list[Checkpoint]:
        rows = self._read("SELECT seq, body, signature FROM audit_checkpoints WHERE seq > ? "
                          "ORDER BY seq", (since,))
        cos: dict[int, dict[str, bytes]] = {}
        for seq, node, sig in self._read("SELECT seq, node, signature FROM audit_cosignatures "
                                         "WHERE seq > ?", (since,)):
            cos.setdefault(seq, {})[node] = bytes(sig)
        out = []
        for seq, body, sig in rows:
            b = parse_json(bytes(body))
            out.append(Checkpoint(b["node"], b["seq"], b["head"], b["time"], bytes(sig),
                                  cos.get(seq, {})))
        return out

    def export_lines(self, since: int = 0) -> Iterator[bytes]:
        """The JSON Lines export (without newlines): entries after ``since``, each
        checkpoint right after the entry it covers."""
        cps: dict[int, Checkpoint] = {c.seq: c for c in self.checkpoints(since)}
        for e in self.iter_entries(since):
            yield e.line()
            cp = cps.get(e.seq)
            if cp is not None:
                yield cp.line()

    def export(self, out: IO[bytes] | str | Path, since: int = 0) -> int:
        """Write the export to a binary file object or a path; returns the line count."""
        if isinstance(out, (str, Path)):
            with open(out, "wb") as f:
                return self.export(f, since)
        n = 0
        for line in self.export_lines(since):
            out.write(line + b"\n")
            n += 1
        return n

    def export_bytes(self, since: int = 0) -> bytes:
        """The export as one body (``application/jsonl``)."""
        return b"".join(line + b"\n" for line in self.export_lines(since))

    def verify(self, node_keys: Mapping[str, bytes | str] | None = None) -> VerifyReport:
        """Check this log's own chain (and checkpoint signatures when ``node_keys``)."""
        return verify_export(self.export_lines(), node_keys or {}, node_id=self.node_id,
                             check_signatures=node_keys is not None)

    # -- checkpoints -------------------------------------------------------------------
    @property
    def last_checkpoint_seq(self) -> int:
        rows = self._read("SELECT max(seq) FROM audit_checkpoints")
        return rows[0][0] or 0

    @property
    def checkpoint_due(self) -> bool:
        return self.head()[0] - self.last_checkpoint_seq >= self.checkpoint_every

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head (if there are entries since the last checkpoint) and store
        the checkpoint; returns it (or None if there is nothing new). The signer may raise:
        then nothing is stored."""
        if self.signer is None:
            raise AuditError("this audit log has no signer")
        seq, head = self.head()
        if seq == 0 or seq == self.last_checkpoint_seq:
            return None
        cp = Checkpoint(self.node_id, seq, head, _iso(self.clock()), b"")
        sig = bytes(self.signer(cp.digest()))
        if len(sig) != 64:
            raise AuditError("the checkpoint signer must return 64 bytes (r||s)")
        cp = Checkpoint(cp.node, cp.seq, cp.head, cp.time, sig)
        try:
            with self._tx() as c:
                c.execute("INSERT OR IGNORE INTO audit_checkpoints (seq, body, signature) "
                          "VALUES (?, ?, ?)", (seq, cp.message(), sig))
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot store the checkpoint: {exc}") from None
        return cp

    def latest_checkpoint(self) -> Checkpoint | None:
        last = self.last_checkpoint_seq
        cps = self.checkpoints(last - 1) if last else []
        return cps[-1] if cps else None

    def add_cosignature(self, seq: int, node: str, signature: bytes,
                        node_keys: Mapping[str, bytes | str]) -> None:
        """Store a peer's co-signature of this node's checkpoint ``seq`` after checking it."""
        cps = [c for c in self.checkpoints(seq - 1) if c.seq == seq]
        if not cps:
            raise AuditError(f"no checkpoint at {seq}")
        if node == self.node_id or node not in node_keys:
            raise AuditError(f"{node!r} is not a peer node")
        if not verify_node_signature(node_keys[node], cps[0].digest(), signature):
            raise AuditError(f"{node}'s co-signature of checkpoint {seq} does not verify")
        try:
            with self._tx() as c:
                c.execute("INSERT OR REPLACE INTO audit_cosignatures (seq, node, signature) "
                          "VALUES (?, ?, ?)", (seq, node, bytes(signature)))
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot store the co-signature: {exc}") from None

    def witness(self, checkpoint: Checkpoint | Mapping | bytes | str,
                node_keys: Mapping[str, bytes | str]) -> bytes:
        """Peer side: check another node's checkpoint (its signature; not older than, nor
        contradicting, what this node already saw from it), keep it, and return this node's
        co-signature (by ``signer``). Raises :class:`AuditError` if it is refused."""
        if self.signer is None:
            raise AuditError("this audit log has no signer")
        cp = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.from_json(checkpoint)
        if cp.node == self.node_id or cp.node not in node_keys:
            raise AuditError(f"{cp.node!r} is not a peer node")
        if not verify_node_signature(node_keys[cp.node], cp.digest(), cp.signature):
            raise AuditError(f"checkpoint {cp.seq} of {cp.node} is not signed by its key")
        try:
            with self._tx() as c:
                same = c.execute("SELECT head FROM audit_witnessed WHERE node = ? AND seq = ?",
                                 (cp.node, cp.seq)).fetchone()
                if same is not None and same[0] != cp.head:
                    raise AuditError(f"{cp.node} signed two different heads for entry {cp.seq}: "
                                     "its log was rewritten")
                later = c.execute("SELECT max(seq) FROM audit_witnessed WHERE node = ?",
                                  (cp.node,)).fetchone()[0]
                if same is None and later is not None and later > cp.seq:
                    raise AuditError(f"{cp.node}'s checkpoint {cp.seq} is older than one already "
                                     f"witnessed ({later})")
                c.execute("INSERT OR IGNORE INTO audit_witnessed (node, seq, head, body, "
                          "signature) VALUES (?, ?, ?, ?, ?)",
                          (cp.node, cp.seq, cp.head, cp.message(), cp.signature))
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot store the witnessed checkpoint: {exc}") from None
        return bytes(self.signer(cp.digest()))

    def latest_witnessed(self, node: str) -> Checkpoint | None:
        """The newest checkpoint of ``node`` this node co-signed (what it serves auditors)."""
        cps = self.witnessed(node, newest_only=True)
        return cps[0] if cps else None

    def latest_cosigned_checkpoint(self) -> Checkpoint | None:
        """This node's newest checkpoint that at least one peer co-signed."""
        seq = self._read("SELECT max(seq) FROM audit_cosignatures")[0][0]
        return next((c for c in self.checkpoints(seq - 1) if c.seq == seq), None) if seq else None

    def witnessed(self, node: str, *, newest_only: bool = False) -> list[Checkpoint]:
        """Checkpoints of ``node`` this node co-signed (an auditor's outside anchor)."""
        return [Checkpoint.from_json({"checkpoint": parse_json(bytes(b)), "signature": s.hex()})
                for b, s in self._read("SELECT body, signature FROM audit_witnessed WHERE "
                                       "node = ? ORDER BY seq DESC LIMIT ?",
                                       (node, 1 if newest_only else -1))][::-1]

    def close(self) -> Checkpoint | None:
        """Checkpoint the head (when there is a signer and something new) and close."""
        cp = None
        if self.signer is not None:
            try:
                cp = self.checkpoint()
            except Exception as exc:  # noqa: BLE001
                log.warning("final audit checkpoint failed: %s", exc)
        if self._own:
            with self._lock:
                self._db.close()
        return cp


# =========================================================================== verification


@dataclass
class VerifyReport:
    ok: bool
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    node: str | None = None
    checkpoints: int = 0
    cosignatures: int = 0
    last_checkpoint_seq: int | None = None
    error: str | None = None
    bad_seq: int | None = None  # the entry named
    line: int | None = None  # 1-based line of the export where it was found
    code: str | None = None  # a failure's name (see appliance.audit_anchor), when it has one
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ok:
            where = f" (line {self.line})" if self.line is not None else ""
            return f"FAIL: {self.error}{where}"
        span = f"{self.first_seq}..{self.last_seq}" if self.entries else "none"
        cp = (f"{self.checkpoints} checkpoint(s) verified, last at {self.last_checkpoint_seq}, "
              f"{self.cosignatures} co-signature(s)") if self.checkpoints else "no checkpoints"
        return (f"OK: node {self.node}, {self.entries} entries ({span}), head {self.head}, {cp}"
                + "".join(f"; {n}" for n in self.notes))


class _Fail(Exception):
    def __init__(self, message: str, seq: int | None, line: int | None) -> None:
        super().__init__(message)
        self.message, self.seq, self.line = message, seq, line


def _as_bytes(line: bytes | str) -> bytes:
    return line.encode("utf-8") if isinstance(line, str) else bytes(line)


def _check_entry_fields(e: Any, seq_hint: Any, lineno: int) -> None:
    if not isinstance(e, dict) or set(e) != set(ENTRY_FIELDS) or e.get("type") != ENTRY_TYPE:
        raise _Fail(f"entry {seq_hint} altered: not an audit entry", _int_or_none(seq_hint),
                    lineno)
    ok = (type(e["seq"]) is int and e["seq"] >= 1 and isinstance(e["node"], str)
          and isinstance(e["time"], str) and _TIME.match(e["time"])
          and isinstance(e["prev"], str) and _HEX64.match(e["prev"]))
    if ok:
        try:
            _check_fields(e["actor"], e["action"], e["key"], e["subject"], e["digest"],
                          e["decision"], e["reason"])
        except AuditFieldError:
            ok = False
    if not ok:
        raise _Fail(f"entry {seq_hint} altered: a field is malformed", _int_or_none(seq_hint),
                    lineno)


def _int_or_none(v: Any) -> int | None:
    return v if type(v) is int else None


def verify_export(
    lines: Iterable[bytes | str],
    node_keys: Mapping[str, bytes | str],
    *,
    node_id: str | None = None,
    min_cosignatures: int = 0,
    require_checkpoint: bool = False,
    check_signatures: bool = True,
    allow_partial: bool = False,
    anchors: Iterable[Checkpoint | Mapping | bytes | str] = (),
) -> VerifyReport:
    """Verify a JSON Lines export.

    ``node_keys``: node id -> identity public key (compressed secp256k1, bytes or hex), the
    cluster's configuration. ``node_id``: whose log this must be. ``min_cosignatures``:
    co-signatures (by other configured nodes) each checkpoint must carry.
    ``require_checkpoint``: the last entry must be covered by a checkpoint (an export taken
    after a clean shutdown). ``allow_partial``: the export may start after entry 1 (the
    first ``prev`` is then taken on trust). ``anchors``: checkpoints obtained elsewhere
    (e.g. :meth:`AuditLog.witnessed` on a peer), checked like the export's own; one beyond
    the last entry shows that entries were cut off the end.

    Returns a :class:`VerifyReport`; ``ok`` False names the first entry that is missing,
    altered or out of order (``bad_seq``) and the export line (``line``)."""
    report = VerifyReport(ok=True)
    try:
        _verify(list(lines), node_keys, node_id, min_cosignatures, require_checkpoint,
                check_signatures, allow_partial, list(anchors), report)
    except _Fail as f:
        report.ok = False
        report.error, report.bad_seq, report.line = f.message, f.seq, f.line
    return report


def _verify(lines, node_keys, node_id, min_cos, require_cp, check_sigs, allow_partial,
            anchors, report) -> None:
    entries: list[tuple[int, dict, str, int]] = []  # (seq, fields, hash, lineno)
    cps: list[tuple[Checkpoint, int]] = []
    for i, raw_line in enumerate(lines, 1):
        raw = _as_bytes(raw_line).rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            obj = parse_json(raw)
        except CanonicalError:
            raise _Fail(f"line {i} is not JSON (an entry was altered or cut)", None, i) from None
        seq_hint = obj.get("entry", {}).get("seq") if isinstance(obj, dict) and isinstance(
            obj.get("entry"), dict) else None
        try:
            parse_canonical(raw)
        except CanonicalError:
            what = f"entry {seq_hint}" if seq_hint is not None else f"line {i}"
            raise _Fail(f"{what} altered: not in canonical form", _int_or_none(seq_hint),
                        i) from None
        if isinstance(obj, dict) and set(obj) == {"entry", "hash"}:
            e, h = obj["entry"], obj["hash"]
            _check_entry_fields(e, seq_hint, i)
            actual = _sha(canonical_json(e))
            if h != actual:
                raise _Fail(f"entry {e['seq']} altered: its content does not match its hash",
                            e["seq"], i)
            entries.append((e["seq"], e, h, i))
        elif isinstance(obj, dict) and "checkpoint" in obj:
            try:
                cps.append((Checkpoint.from_json(obj), i))
            except AuditError as exc:
                s = obj["checkpoint"].get("seq") if isinstance(obj["checkpoint"], dict) else None
                raise _Fail(f"checkpoint for entry {s} malformed: {exc}", _int_or_none(s),
                            i) from None
        else:
            raise _Fail(f"line {i} is neither an entry nor a checkpoint", None, i)

    if not entries:
        if cps:
            raise _Fail(f"entry {cps[0][0].seq} missing: a checkpoint covers it but the export "
                        "has no entries", cps[0][0].seq, cps[0][1])
        report.notes.append("the export is empty")
        return

    # one node's log
    node = node_id or entries[0][1]["node"]
    report.node = node
    for seq, e, _, ln in entries:
        if e["node"] != node:
            raise _Fail(f"entry {seq} altered or out of place: written by {e['node']}, not "
                        f"{node}", seq, ln)

    # order, gaps and the chain
    lines_of: dict[int, list[int]] = {}
    for seq, _, _, ln in entries:
        lines_of.setdefault(seq, []).append(ln)
    first = entries[0][0]
    if first != 1 and not allow_partial:
        if 1 in lines_of:
            raise _Fail(f"entry 1 out of order (found at line {lines_of[1][0]})", 1,
                        entries[0][3])
        raise _Fail("entry 1 missing", 1, entries[0][3])
    if first == 1 and entries[0][1]["prev"] != GENESIS:
        raise _Fail("entry 1 altered: it does not start the chain", 1, entries[0][3])
    if first != 1:
        report.notes.append(f"partial export from entry {first}: its link to entry "
                            f"{first - 1} is taken on trust")
    hash_of: dict[int, str] = {}
    prev_hash = entries[0][1]["prev"]
    # chain breaks, to name the altered entry: (k-1 -> k) broken
    breaks: set[int] = set()
    for idx, (seq, e, h, ln) in enumerate(entries):
        expected = first + idx
        if seq != expected:
            if seq > expected:
                if expected in lines_of:
                    raise _Fail(f"entry {expected} out of order (found at line "
                                f"{lines_of[expected][0]}, expected at line {ln})", expected, ln)
                raise _Fail(f"entry {expected} missing (line {ln} holds entry {seq})",
                            expected, ln)
            raise _Fail(f"entry {seq} out of order or repeated (line {ln}, after entry "
                        f"{expected - 1})", seq, ln)
        if idx > 0 and e["prev"] != prev_hash:
            breaks.add(seq)
        hash_of[seq] = h
        prev_hash = h
    if breaks:
        j = min(breaks)
        # an entry whose hash was recomputed after an edit breaks the link after it;
        # one whose prev was edited breaks the links before and after it
        bad = j if (j + 1 in breaks) else j - 1
        raise _Fail(f"entry {bad} altered: the chain breaks between entries {j - 1} and {j}",
                    bad, next(ln for s, _, _, ln in entries if s == bad))
    last = entries[-1][0]
    report.entries = len(entries)
    report.first_seq, report.last_seq, report.head = first, last, hash_of[last]

    # checkpoints (the export's own, then outside anchors)
    anchor_cps = []
    for a in anchors:
        cp = a if isinstance(a, Checkpoint) else Checkpoint.from_json(a)
        anchor_cps.append((cp, None))
    for cp, ln in cps + anchor_cps:
        src = "checkpoint" if ln is not None else "witnessed checkpoint"
        if cp.node != node:
            raise _Fail(f"{src} for entry {cp.seq} is for node {cp.node}, not {node}", cp.seq, ln)
        if check_sigs:
            key = node_keys.get(cp.node)
            if key is None:
                raise _Fail(f"{src} for entry {cp.seq}: {cp.node} is not a configured node",
                            cp.seq, ln)
            if not verify_node_signature(key, cp.digest(), cp.signature):
                raise _Fail(f"{src} for entry {cp.seq} forged: its signature does not verify "
                            f"with {cp.node}'s key", cp.seq, ln)
        if cp.seq > last:
            raise _Fail(f"entry {last + 1} missing: a {src} covers entries up to {cp.seq} but "
                        f"the export ends at {last}", last + 1, ln)
        if cp.seq < first:
            report.notes.append(f"{src} for entry {cp.seq} precedes the export")
            continue
        if hash_of[cp.seq] != cp.head:
            raise _Fail(f"entry {cp.seq} altered (or the {src} for it forged): the signed head "
                        "differs from the chain", cp.seq, ln)
        if check_sigs:
            good = 0
            for peer, sig in sorted(cp.cosignatures.items()):
                if peer == node or peer not in node_keys:
                    raise _Fail(f"{src} for entry {cp.seq}: co-signer {peer} is not a peer node",
                                cp.seq, ln)
                if not verify_node_signature(node_keys[peer], cp.digest(), sig):
                    raise _Fail(f"{src} for entry {cp.seq}: {peer}'s co-signature is forged",
                                cp.seq, ln)
                good += 1
            if ln is not None and good < min_cos:
                raise _Fail(f"checkpoint for entry {cp.seq} has {good} co-signature(s), "
                            f"{min_cos} required", cp.seq, ln)
            report.cosignatures += good
        report.checkpoints += 1
        report.last_checkpoint_seq = max(report.last_checkpoint_seq or 0, cp.seq)
    if require_cp and report.last_checkpoint_seq != last:
        raise _Fail(f"entries after {report.last_checkpoint_seq or 0} are not covered by a "
                    "signed checkpoint (entries may have been cut off the end)",
                    (report.last_checkpoint_seq or 0) + 1, None)
    if not check_sigs:
        report.notes.append("checkpoint signatures not checked")


# =========================================================================== CLI helpers


def node_keys_from_cluster(cluster: Any) -> dict[str, bytes]:
    """node id -> identity key from a ``ClusterConfig``, a cluster.toml mapping, or a path
    to cluster.toml (or to a node.toml that names it)."""
    if isinstance(cluster, (str, Path)):
        path = Path(cluster)
        with open(path, "rb") as f:
            m = tomllib.load(f)
        if "nodes" not in m and isinstance(m.get("cluster"), str):
            return node_keys_from_cluster(path.parent / m["cluster"])
        cluster = m
    if isinstance(cluster, Mapping):
        return {str(n["id"]): bytes.fromhex(n["identity_key"]) for n in cluster.get("nodes", [])}
    return {n.id: bytes(n.identity_key) for n in cluster.nodes}


def verify_file(path: str | Path, node_keys: Mapping[str, bytes | str], **kw: Any
                ) -> VerifyReport:
    with open(path, "rb") as f:
        return verify_export(f.read().split(b"\n"), node_keys, **kw)
