"""The node's SQLite state as the node layer needs it (keys with sealed shares, operations,
sign-requests, sealed presignatures, sealed primes, an event log).

This is the node's own thin store until ``appliance.store`` (owned by the storage work)
offers the same; every secret column holds an HSM-sealed blob (``hsm.blob.looks_sealed``
is checked on write), never a plaintext. Calls are short and made from the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from hsm.blob import looks_sealed

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    public_key BLOB,
    threshold INTEGER NOT NULL,
    participants TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    paillier_bits INTEGER NOT NULL DEFAULT 0,
    share_blob BLOB,
    fingerprint BLOB,
    status TEXT NOT NULL,
    pending_blob BLOB,
    pending_epoch INTEGER,
    pending_fingerprint BLOB,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    op_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    key_id TEXT,
    status TEXT NOT NULL,
    actor TEXT,
    result TEXT,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sign_requests (
    request_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    digest BLOB NOT NULL,
    derivation_path TEXT,
    initiator TEXT NOT NULL,
    status TEXT NOT NULL,
    signers TEXT,
    signature TEXT,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS presignatures (
    presig_id BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    signers TEXT NOT NULL,
    R BLOB NOT NULL,
    blob BLOB NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS presig_ready ON presignatures (key_id, signers, state);
CREATE TABLE IF NOT EXISTS primes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    bits INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    key_id TEXT,
    subject TEXT,
    decision TEXT,
    reason TEXT
);
"""


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)


def _uj(v: str | None) -> Any:
    return None if v is None else json.loads(v)


class NodeStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        self.db.close()

    def _tx(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, args)

    # -- keys -------------------------------------------------------------------------

    def put_pending_key(self, key_id: str, public_key: bytes, threshold: int, participants: list[int],
                        epoch: int, bits: int, blob: bytes, fingerprint: bytes) -> None:
        if not looks_sealed(blob):
            raise ValueError("refusing to store an unsealed share")
        now = time.time()
        self._tx("INSERT INTO keys (key_id, public_key, threshold, participants, epoch, paillier_bits,"
                 " share_blob, fingerprint, status, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (key_id, public_key, threshold, _j(participants), epoch, bits, blob, fingerprint,
                  "pending", now, now))

    def set_key_status(self, key_id: str, status: str) -> None:
        self._tx("UPDATE keys SET status=?, updated=? WHERE key_id=?", (status, time.time(), key_id))

    def delete_key(self, key_id: str) -> None:
        self._tx("DELETE FROM keys WHERE key_id=?", (key_id,))

    def put_pending_share(self, key_id: str, epoch: int, blob: bytes, fingerprint: bytes) -> None:
        if not looks_sealed(blob):
            raise ValueError("refusing to store an unsealed share")
        self._tx("UPDATE keys SET pending_blob=?, pending_epoch=?, pending_fingerprint=?, updated=?"
                 " WHERE key_id=?", (blob, epoch, fingerprint, time.time(), key_id))

    def commit_pending_share(self, key_id: str) -> bool:
        cur = self._tx("UPDATE keys SET share_blob=pending_blob, epoch=pending_epoch,"
                       " fingerprint=pending_fingerprint, pending_blob=NULL, pending_epoch=NULL,"
                       " pending_fingerprint=NULL, updated=? WHERE key_id=? AND pending_blob IS NOT NULL",
                       (time.time(), key_id))
        return cur.rowcount == 1

    def drop_pending_share(self, key_id: str) -> None:
        self._tx("UPDATE keys SET pending_blob=NULL, pending_epoch=NULL, pending_fingerprint=NULL"
                 " WHERE key_id=?", (key_id,))

    def get_key(self, key_id: str) -> dict | None:
        row = self._tx("SELECT * FROM keys WHERE key_id=?", (key_id,)).fetchone()
        return self._key_row(row) if row else None

    def list_keys(self, status: str | None = "active") -> list[dict]:
        if status is None:
            rows = self._tx("SELECT * FROM keys ORDER BY created").fetchall()
        else:
            rows = self._tx("SELECT * FROM keys WHERE status=? ORDER BY created", (status,)).fetchall()
        return [self._key_row(r) for r in rows]

    @staticmethod
    def _key_row(row: sqlite3.Row) -> dict:
        d = dict(row)
        d["participants"] = _uj(d["participants"])
        return d

    # -- operations -------------------------------------------------------------------

    def put_operation(self, op_id: str, kind: str, key_id: str | None, actor: str | None,
                      status: str = "running") -> None:
        now = time.time()
        self._tx("INSERT INTO operations (op_id, kind, key_id, status, actor, created, updated)"
                 " VALUES (?,?,?,?,?,?,?)", (op_id, kind, key_id, status, actor, now, now))

    def finish_operation(self, op_id: str, status: str, result: dict | None = None,
                         error: dict | None = None) -> None:
        self._tx("UPDATE operations SET status=?, result=?, error=?, updated=? WHERE op_id=?",
                 (status, _j(result), _j(error), time.time(), op_id))

    def get_operation(self, op_id: str) -> dict | None:
        row = self._tx("SELECT * FROM operations WHERE op_id=?", (op_id,)).fetchone()
        if not row:
            return None
        d = dict(row)
        d["result"], d["error"] = _uj(d["result"]), _uj(d["error"])
        return d

    def fail_running_operations(self, why: dict) -> None:
        """At start-up: what was running when the node stopped did not finish."""
        self._tx("UPDATE operations SET status='failed', error=?, updated=? WHERE status IN"
                 " ('running','pending')", (_j(why), time.time()))
        self._tx("UPDATE sign_requests SET status='failed', error=?, updated=? WHERE status IN"
                 " ('signing')", (_j(why), time.time()))

    # -- sign requests ----------------------------------------------------------------

    def put_sign_request(self, request_id: str, key_id: str, digest: bytes, path: str | None,
                         initiator: str, status: str) -> None:
        now = time.time()
        self._tx("INSERT INTO sign_requests (request_id, key_id, digest, derivation_path, initiator,"
                 " status, created, updated) VALUES (?,?,?,?,?,?,?,?)",
                 (request_id, key_id, digest, path, initiator, status, now, now))

    def update_sign_request(self, request_id: str, *, status: str, signers: list[str] | None = None,
                            signature: dict | None = None, error: dict | None = None) -> None:
        self._tx("UPDATE sign_requests SET status=?, signers=COALESCE(?, signers), signature=?,"
                 " error=?, updated=? WHERE request_id=?",
                 (status, _j(signers), _j(signature), _j(error), time.time(), request_id))

    def get_sign_request(self, request_id: str) -> dict | None:
        row = self._tx("SELECT * FROM sign_requests WHERE request_id=?", (request_id,)).fetchone()
        return self._req_row(row) if row else None

    def list_sign_requests(self, statuses: tuple[str, ...]) -> list[dict]:
        q = ",".join("?" * len(statuses))
        rows = self._tx(f"SELECT * FROM sign_requests WHERE status IN ({q}) ORDER BY created",
                        statuses).fetchall()
        return [self._req_row(r) for r in rows]

    @staticmethod
    def _req_row(row: sqlite3.Row) -> dict:
        d = dict(row)
        for k in ("signers", "signature", "error"):
            d[k] = _uj(d[k])
        return d

    # -- presignatures ----------------------------------------------------------------

    def put_presignature(self, presig_id: bytes, key_id: str, epoch: int, signers: list[int],
                         R: bytes, blob: bytes, state: str = "ready") -> None:
        if not looks_sealed(blob):
            raise ValueError("refusing to store an unsealed presignature")
        self._tx("INSERT INTO presignatures (presig_id, key_id, epoch, signers, R, blob, state, created)"
                 " VALUES (?,?,?,?,?,?,?,?)",
                 (presig_id, key_id, epoch, _j(sorted(signers)), R, blob, state, time.time()))

    def set_presignature_state(self, presig_id: bytes, state: str) -> None:
        self._tx("UPDATE presignatures SET state=? WHERE presig_id=?", (state, presig_id))

    def count_presignatures(self, key_id: str, epoch: int, signers: list[int]) -> int:
        row = self._tx("SELECT COUNT(*) FROM presignatures WHERE key_id=? AND epoch=? AND signers=?"
                       " AND state='ready'", (key_id, epoch, _j(sorted(signers)))).fetchone()
        return int(row[0])

    def pick_presignature(self, key_id: str, epoch: int, signers: list[int]) -> bytes | None:
        """Reserve a ready presignature of this signer set (state -> reserved)."""
        row = self._tx("SELECT presig_id FROM presignatures WHERE key_id=? AND epoch=? AND signers=?"
                       " AND state='ready' ORDER BY created LIMIT 1",
                       (key_id, epoch, _j(sorted(signers)))).fetchone()
        if row is None:
            return None
        cur = self._tx("UPDATE presignatures SET state='reserved' WHERE presig_id=? AND state='ready'",
                       (row[0],))
        return bytes(row[0]) if cur.rowcount == 1 else None

    def ready_signer_sets(self, key_id: str, epoch: int) -> dict[tuple[int, ...], int]:
        rows = self._tx("SELECT signers, COUNT(*) FROM presignatures WHERE key_id=? AND epoch=?"
                        " AND state='ready' GROUP BY signers", (key_id, epoch)).fetchall()
        return {tuple(_uj(r[0])): int(r[1]) for r in rows}

    def take_presignature(self, presig_id: bytes, key_id: str) -> dict | None:
        """Mark it spent, durably, before it is used; None if unknown or already spent."""
        row = self._tx("SELECT * FROM presignatures WHERE presig_id=? AND key_id=?",
                       (presig_id, key_id)).fetchone()
        if row is None or row["state"] == "spent":
            return None
        cur = self._tx("UPDATE presignatures SET state='spent' WHERE presig_id=? AND state!='spent'",
                       (presig_id,))
        if cur.rowcount != 1:
            return None
        d = dict(row)
        d["signers"] = _uj(d["signers"])
        return d

    def delete_presignatures(self, key_id: str, *, below_epoch: int | None = None) -> list[bytes]:
        if below_epoch is None:
            rows = self._tx("SELECT presig_id FROM presignatures WHERE key_id=?", (key_id,)).fetchall()
            self._tx("DELETE FROM presignatures WHERE key_id=?", (key_id,))
        else:
            rows = self._tx("SELECT presig_id FROM presignatures WHERE key_id=? AND epoch<?",
                            (key_id, below_epoch)).fetchall()
            self._tx("DELETE FROM presignatures WHERE key_id=? AND epoch<?", (key_id, below_epoch))
        return [bytes(r[0]) for r in rows]

    def purge_spent_presignatures(self) -> None:
        self._tx("DELETE FROM presignatures WHERE state='spent'")

    # -- primes -----------------------------------------------------------------------

    def add_prime(self, kind: str, bits: int, blob: bytes) -> None:
        if not looks_sealed(blob):
            raise ValueError("refusing to store an unsealed prime")
        self._tx("INSERT INTO primes (kind, bits, blob) VALUES (?,?,?)", (kind, bits, blob))

    def take_prime(self, kind: str, bits: int) -> tuple[int, bytes] | None:
        row = self._tx("SELECT id, blob FROM primes WHERE kind=? AND bits=? ORDER BY id LIMIT 1",
                       (kind, bits)).fetchone()
        if row is None:
            return None
        cur = self._tx("DELETE FROM primes WHERE id=?", (row[0],))
        return (int(row[0]), bytes(row[1])) if cur.rowcount == 1 else None

    def count_primes(self, kind: str, bits: int) -> int:
        return int(self._tx("SELECT COUNT(*) FROM primes WHERE kind=? AND bits=?", (kind, bits)).fetchone()[0])

    # -- events (the hook issue 6's audit log replaces) -------------------------------

    def add_event(self, actor: str | None, action: str, key_id: str | None = None,
                  subject: str | None = None, decision: str | None = None, reason: str | None = None) -> int:
        cur = self._tx("INSERT INTO events (time, actor, action, key_id, subject, decision, reason)"
                       " VALUES (?,?,?,?,?,?,?)", (time.time(), actor, action, key_id, subject, decision, reason))
        return int(cur.lastrowid)

    def events(self, since: int = 0, limit: int = 1000) -> list[dict]:
        rows = self._tx("SELECT * FROM events WHERE seq>? ORDER BY seq LIMIT ?", (since, limit)).fetchall()
        return [dict(r) for r in rows]
