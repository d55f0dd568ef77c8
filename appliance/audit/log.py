"""The node's audit log in SQLite: :class:`AuditLog` (append, export, checkpoints,
co-signatures, witnessing a peer's checkpoints)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

from appliance.audit.records import (
    ENTRY_TYPE, GENESIS, ID, AuditEntry, AuditError, AuditFieldError,
    AuditUnavailable, Checkpoint, check_fields, check_request_id, iso_time, sha256_hex, verify_node_signature,
)
from appliance.audit.connection import OwnConnection, TxProvider
from appliance.audit.verify import VerifyReport, verify_export
from appliance.canonical import CanonicalError, canonical_json, parse_json

log = logging.getLogger("appliance.audit")

SUBJECT_SQL = "json_extract(CAST(entry AS TEXT), '$.subject')"
#: the most entries :meth:`AuditLog.about` returns
MAX_ABOUT = 200

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_entries (
        seq   INTEGER PRIMARY KEY CHECK (seq >= 1),
        entry BLOB NOT NULL,
        hash  TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    # the entries about one subject (a request's page in the console), found by index: an
    # expression over the canonical entry, so the append-only rows stay as they are
    f"CREATE INDEX IF NOT EXISTS audit_entries_subject ON audit_entries({SUBJECT_SQL})",
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

    ``db``: a path (this object opens its own connection: WAL, ``synchronous=FULL``), an
    open ``sqlite3.Connection`` in autocommit mode (``isolation_level=None``) that nobody
    else uses for transactions at the same time, or a transaction provider
    (:mod:`appliance.audit.connection`: the node's one ``Database``, so that an entry and
    the state change it records commit in one transaction). ``signer(digest32) -> r||s``
    signs checkpoints (the HSM identity key); without one no checkpoints are made.
    ``clock() -> float`` gives Unix seconds. Thread-safe.

    The tables are created here (``CREATE ... IF NOT EXISTS``), not in the node's migration
    list: the same schema serves a node's ``node.db``, a standalone file and a legacy
    ``audit.db``, and the storage layer need not know the audit package.
    """

    def __init__(self, db: str | Path | sqlite3.Connection | TxProvider, node_id: str, *,
                 signer: Signer | None = None, checkpoint_every: int = 100,
                 clock: Callable[[], float] = time.time, busy_timeout: float = 10.0,
                 on_append: Callable[[AuditEntry], None] | None = None) -> None:
        if ID.match(node_id or "") is None:
            raise AuditFieldError("node id must be an id")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.node_id = node_id
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self.on_append = on_append
        try:
            if isinstance(db, (str, Path, sqlite3.Connection)):
                try:
                    self._provider: TxProvider = OwnConnection(db, busy_timeout=busy_timeout)
                except ValueError as exc:
                    raise AuditError(str(exc)) from None
                self._own: OwnConnection | None = self._provider
            else:
                self._provider, self._own = db, None
            try:
                with self._tx() as c:
                    for stmt in SCHEMA:
                        c.execute(stmt)
                    first = c.execute("SELECT entry FROM audit_entries ORDER BY seq LIMIT 1"
                                      ).fetchone()
                if first is not None and parse_json(bytes(first[0]))["node"] != node_id:
                    raise AuditError("this audit log belongs to another node")
            except BaseException:
                if self._own is not None:
                    self._own.close()
                raise
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot open the audit log: {exc}") from None

    def _tx(self):
        """A write transaction of the provider (a savepoint inside one already open)."""
        return self._provider.tx()

    # -- writing -----------------------------------------------------------------------
    def append(self, actor: str | None, action: str, *, key: str | None = None,
               subject: str | None = None, digest: bytes | str | None = None,
               decision: str | None = None, reason: str | None = None,
               request_id: str | None = None) -> AuditEntry:
        """Write one entry durably, or raise :class:`AuditUnavailable` (nothing written).
        ``request_id``: the X-Request-Id that caused it (the field is left out when None, so
        an entry without one has the format it always had)."""
        actor, action, key, subject, digest, decision, reason = check_fields(
            actor, action, key, subject, digest, decision, reason)
        request_id = check_request_id(request_id)
        try:
            with self._tx() as c:
                row = c.execute("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
                seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
                body = {
                    "type": ENTRY_TYPE, "node": self.node_id, "seq": seq,
                    "time": iso_time(self.clock()), "actor": actor, "action": action, "key": key,
                    "subject": subject, "digest": digest, "decision": decision,
                    "reason": reason, "prev": prev,
                }
                if request_id is not None:
                    body["request_id"] = request_id
                raw = canonical_json(body)
                h = sha256_hex(raw)
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
               decision: str | None = None, reason: str | None = None,
               request_id: str | None = None) -> AuditEntry:
        """:meth:`append` with the node's historic keyword names (``key_id``)."""
        return self.append(actor, action, key=key_id, subject=subject, digest=digest,
                           decision=decision, reason=reason, request_id=request_id)

    # -- reading -----------------------------------------------------------------------
    def _read(self, sql: str, args: tuple = ()) -> list:
        try:
            return self._provider.query(sql, args)
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

    def about(self, subject: str, limit: int = MAX_ABOUT) -> list[dict]:
        """The last ``limit`` (at most :data:`MAX_ABOUT`) entries whose ``subject`` is exactly
        ``subject``, oldest first (an indexed query: the log is not scanned)."""
        rows = self._read(f"SELECT seq, entry, hash FROM audit_entries WHERE {SUBJECT_SQL} = ? "
                          "ORDER BY seq DESC LIMIT ?", (subject, min(int(limit), MAX_ABOUT)))
        return [AuditEntry(seq, bytes(raw), h).to_json() for seq, raw, h in reversed(rows)]

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
        cp = Checkpoint(self.node_id, seq, head, iso_time(self.clock()), b"")
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
        if self._own is not None:
            self._own.close()
        return cp
