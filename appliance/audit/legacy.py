"""Moving a node's audit log of the old layout (its own file, ``audit.db``) into the node's
database, once, at start.

Everything is copied verbatim (entries with their exact bytes and hashes, checkpoints,
co-signatures, the peers' checkpoints this node witnessed), so the hash chain and every
signature stay valid; in one transaction of the node's database; then the old file is
renamed ``audit.db.migrated-<unix time>`` (never deleted). A node whose database already
holds entries that differ from the old file's refuses (:class:`AuditLogConflict`): which
one is the log is for an operator to decide, not for the node.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from appliance.audit.connection import TxProvider
from appliance.audit.log import SCHEMA
from appliance.audit.records import AuditError
from appliance.canonical import CanonicalError, parse_json


class AuditLogConflict(AuditError):
    """The node's database and a legacy audit file hold different logs."""

    code = "audit_log_conflict"


@dataclass(frozen=True)
class Adopted:
    entries: int  # entries copied (0 when they were there already)
    renamed_to: Path


_COPIES = (  # (table, its columns), in an order that keeps the foreign key
    ("audit_checkpoints", "seq, body, signature"),
    ("audit_cosignatures", "seq, node, signature"),
    ("audit_witnessed", "node, seq, head, body, signature"),
)


def adopt_legacy_log(provider: TxProvider, legacy: Path, node_id: str, *, now: float) -> Adopted | None:
    """Move ``legacy`` (an ``audit.db`` of the old layout) into ``provider`` (the node's
    database) and rename it aside; None if there is no such file. Raises
    :class:`AuditLogConflict` (nothing moved, nothing renamed) if both hold entries that
    differ, or the file is another node's log."""
    legacy = Path(legacy)
    if not legacy.is_file():
        return None
    old = sqlite3.connect(str(legacy), isolation_level=None)
    try:
        old.execute("PRAGMA busy_timeout = 10000")
        tables = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with provider.tx() as c:
            for stmt in SCHEMA:
                c.execute(stmt)
            copied = _copy(old, c, tables, legacy.name, node_id)
        old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        old.close()
    return Adopted(copied, _rename_aside(legacy, now))


def _copy(old: sqlite3.Connection, new: sqlite3.Connection, tables: set[str], name: str,
          node_id: str) -> int:
    copied = 0
    if "audit_entries" in tables:
        first = old.execute("SELECT entry FROM audit_entries ORDER BY seq LIMIT 1").fetchone()
        if first is not None and _node_of(first[0]) != node_id:
            raise AuditLogConflict(f"{name} is not the audit log of {node_id}")
        if new.execute("SELECT count(*) FROM audit_entries").fetchone()[0] == 0:
            cur = new.executemany("INSERT INTO audit_entries (seq, entry, hash) VALUES (?, ?, ?)",
                                  old.execute("SELECT seq, entry, hash FROM audit_entries ORDER BY seq"))
            copied = cur.rowcount
        else:  # moved already (a stop before the rename), or two different logs
            for seq, entry, h in old.execute("SELECT seq, entry, hash FROM audit_entries ORDER BY seq"):
                row = new.execute("SELECT entry, hash FROM audit_entries WHERE seq = ?", (seq,)).fetchone()
                if row is None or bytes(row[0]) != bytes(entry) or row[1] != h:
                    raise AuditLogConflict(
                        f"node.db and {name} hold different audit entries (first difference at "
                        f"entry {seq}); keep one log: move the other file aside")
    for table, cols in _COPIES:
        if table in tables:
            marks = ", ".join("?" * len(cols.split(",")))
            new.executemany(f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({marks})",
                            old.execute(f"SELECT {cols} FROM {table}"))
    return max(copied, 0)


def _node_of(raw: bytes) -> str | None:
    try:
        return parse_json(bytes(raw)).get("node")
    except (CanonicalError, AttributeError):
        return None


def _rename_aside(legacy: Path, now: float) -> Path:
    """``audit.db`` -> ``audit.db.migrated-<unix time>`` (a free name: never over a file),
    with any ``-wal``/``-shm`` left beside it; the directory synced."""
    base = f"{legacy.name}.migrated-{int(now)}"
    target, n = legacy.with_name(base), 1
    while target.exists():
        target, n = legacy.with_name(f"{base}.{n}"), n + 1
    os.rename(legacy, target)
    for suffix in ("-wal", "-shm"):
        side = legacy.with_name(legacy.name + suffix)
        if side.exists():
            os.rename(side, target.with_name(target.name + suffix))
    fd = os.open(legacy.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target
