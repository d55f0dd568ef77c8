"""The node's view of its durable state: :class:`appliance.store.Store` (keys, sealed shares,
sealed primes, presignatures, sign requests) plus the few things the node layer adds in
tables of its own in the same SQLite file (``node_*``: key life cycle, key operations,
sign-request signer sets, the event log that issue 6's audit log replaces).

Key life cycle on a node: a DKG or refresh leaves its result *pending* (the sealed share is
stored, the key or its new epoch is not in use) until the coordinator has seen every
party's matching result and sends *commit*; a job that does not finish is *abandoned*.
Every secret is an HSM-sealed blob (the core store refuses anything else).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from appliance.store import ConflictError, NotFoundError, PresignatureUnavailable, Store
from hsm.blob import presig_key_label

SCHEMA = """
CREATE TABLE IF NOT EXISTS node_keys (
    key_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    paillier_bits INTEGER NOT NULL,
    pending_epoch INTEGER,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS node_operations (
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
CREATE TABLE IF NOT EXISTS node_requests (
    request_id TEXT PRIMARY KEY,
    signers TEXT
);
CREATE TABLE IF NOT EXISTS node_events (
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


def _uj(v: str | bytes | None) -> Any:
    return None if v is None else json.loads(v)


class NodeStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.core = Store(path)
        self.db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 10000")
        # the node's own bookkeeping (operations, events) need not be fsynced per commit:
        # secrets, keys, presignature spending and requests are in the core store (FULL)
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()
        self.core.close()

    def _x(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, args)

    # -- keys -------------------------------------------------------------------------

    def put_pending_key(self, key_id: str, public_key: bytes, threshold: int, participants: list[int],
                        epoch: int, bits: int, blob: bytes, chain_code: bytes) -> None:
        self.core.put_key(key_id, threshold=threshold, participants=participants, public_key=public_key,
                          chain_code=chain_code, epoch=epoch)
        self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
        self._x("INSERT INTO node_keys (key_id, status, paillier_bits, updated) VALUES (?,?,?,?)",
                (key_id, "pending", bits, time.time()))

    def set_key_status(self, key_id: str, status: str) -> None:
        self._x("UPDATE node_keys SET status=?, updated=? WHERE key_id=?", (status, time.time(), key_id))

    def abandon_key(self, key_id: str) -> None:
        """A DKG that did not finish: the key is never used (its sealed share stays sealed)."""
        self._x("UPDATE node_keys SET status='abandoned', updated=? WHERE key_id=? AND status='pending'",
                (time.time(), key_id))

    def put_pending_share(self, key_id: str, epoch: int, blob: bytes) -> None:
        try:
            self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
        except ConflictError:
            # left over from a refresh to this epoch that was abandoned: never in use
            row = self._x("SELECT pending_epoch FROM node_keys WHERE key_id=?", (key_id,)).fetchone()
            if self.core.get_key(key_id).epoch >= epoch or (row and row[0] == epoch):
                raise
            self._x("DELETE FROM key_secrets WHERE key_id=? AND epoch=?", (key_id, epoch))
            self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
        self._x("UPDATE node_keys SET pending_epoch=?, updated=? WHERE key_id=?", (epoch, time.time(), key_id))

    def commit_pending_share(self, key_id: str, *, participants: list[int] | None = None,
                             threshold: int | None = None) -> list[str]:
        """Move the key to its pending epoch (with a new committee after a reshare); returns
        HSM key labels of presignatures to destroy."""
        row = self._x("SELECT pending_epoch FROM node_keys WHERE key_id=?", (key_id,)).fetchone()
        if row is None or row[0] is None:
            return []
        new = int(row[0])
        old = self.core.get_key(key_id).epoch
        self.core.set_key_epoch(key_id, new, expected=old, participants=participants, threshold=threshold)
        self._x("UPDATE node_keys SET pending_epoch=NULL, updated=? WHERE key_id=?", (time.time(), key_id))
        self.core.delete_sealed_secrets(key_id, before_epoch=new)
        return self.core.discard_presignatures(key_id, before_epoch=new)

    def retire_key(self, key_id: str) -> list[str]:
        """This node left the key's committee (reshare confirmed by every new member): its
        share is deleted; returns HSM key labels of presignatures to destroy."""
        rec = self.core.get_key(key_id)
        self._x("UPDATE node_keys SET status='retired', pending_epoch=NULL, updated=? WHERE key_id=?",
                (time.time(), key_id))
        self.core.delete_sealed_secrets(key_id, before_epoch=rec.epoch + 1)
        return self.core.discard_presignatures(key_id)

    def drop_pending_share(self, key_id: str) -> None:
        self._x("UPDATE node_keys SET pending_epoch=NULL, updated=? WHERE key_id=?", (time.time(), key_id))

    def get_key(self, key_id: str) -> dict | None:
        try:
            rec = self.core.get_key(key_id)
        except NotFoundError:
            return None
        row = self._x("SELECT status, paillier_bits FROM node_keys WHERE key_id=?", (key_id,)).fetchone()
        return self._key_dict(rec, row)

    def share_blob(self, key_id: str, epoch: int) -> bytes:
        return self.core.get_sealed_secret(key_id, epoch, "share")

    def list_keys(self, status: str | None = "active") -> list[dict]:
        meta = {r[0]: (r[1], r[2]) for r in self._x("SELECT key_id, status, paillier_bits FROM node_keys")}
        out = [self._key_dict(rec, meta.get(rec.key_id)) for rec in self.core.list_keys()]
        return [k for k in out if status is None or k["status"] == status]

    @staticmethod
    def _key_dict(rec, row) -> dict:
        return {"key_id": rec.key_id, "public_key": rec.public_key, "threshold": rec.threshold,
                "participants": list(rec.participants), "epoch": rec.epoch, "chain_code": rec.chain_code,
                "created": rec.created_at, "status": row[0] if row else "unknown",
                "paillier_bits": row[1] if row else 0}

    # -- operations -------------------------------------------------------------------

    def put_operation(self, op_id: str, kind: str, key_id: str | None, actor: str | None,
                      status: str = "running") -> None:
        now = time.time()
        self._x("INSERT INTO node_operations (op_id, kind, key_id, status, actor, created, updated)"
                " VALUES (?,?,?,?,?,?,?)", (op_id, kind, key_id, status, actor, now, now))

    def finish_operation(self, op_id: str, status: str, result: dict | None = None,
                         error: dict | None = None) -> None:
        self._x("UPDATE node_operations SET status=?, result=?, error=?, updated=? WHERE op_id=?",
                (status, _j(result), _j(error), time.time(), op_id))

    def get_operation(self, op_id: str) -> dict | None:
        row = self._x("SELECT op_id, kind, key_id, status, actor, result, error, created, updated"
                      " FROM node_operations WHERE op_id=?", (op_id,)).fetchone()
        if not row:
            return None
        keys = ("op_id", "kind", "key_id", "status", "actor", "result", "error", "created", "updated")
        d = dict(zip(keys, row))
        d["result"], d["error"] = _uj(d["result"]), _uj(d["error"])
        return d

    def recover_after_restart(self, why: dict) -> None:
        """What was running when the node stopped did not finish."""
        now = time.time()
        self._x("UPDATE node_operations SET status='failed', error=?, updated=? WHERE status IN"
                " ('running','pending')", (_j(why), now))
        for req in self.core.list_sign_requests(status="signing"):
            self.core.update_sign_request(req.request_id, status="failed", error=_j(why))
        self._x("UPDATE node_keys SET status='abandoned', updated=? WHERE status='pending'", (now,))
        self._x("UPDATE node_keys SET pending_epoch=NULL WHERE pending_epoch IS NOT NULL")

    # -- sign requests ----------------------------------------------------------------

    def put_sign_request(self, request_id: str, key_id: str, digest: bytes, path: str | None,
                         initiator: str, signers: list[str]) -> None:
        self.core.create_sign_request(request_id, key_id=key_id, initiator=initiator, digest=digest,
                                      derivation_path=path)
        self._x("INSERT INTO node_requests (request_id, signers) VALUES (?,?)", (request_id, _j(signers)))
        self.core.update_sign_request(request_id, status="signing", expected_status="pending")

    def update_sign_request(self, request_id: str, *, status: str, signers: list[str] | None = None,
                            signature: dict | None = None, error: dict | None = None) -> None:
        if signers is not None:
            self._x("UPDATE node_requests SET signers=? WHERE request_id=?", (_j(signers), request_id))
        self.core.update_sign_request(
            request_id, status=status,
            result=None if signature is None else json.dumps(signature).encode(),
            error=_j(error))

    def get_sign_request(self, request_id: str) -> dict | None:
        try:
            r = self.core.get_sign_request(request_id)
        except NotFoundError:
            return None
        return self._req_dict(r)

    def list_sign_requests(self, statuses: tuple[str, ...]) -> list[dict]:
        out = []
        for st in statuses:
            out += [self._req_dict(r) for r in self.core.list_sign_requests(status=st)]
        return sorted(out, key=lambda d: d["created"])

    def _req_dict(self, r) -> dict:
        row = self._x("SELECT signers FROM node_requests WHERE request_id=?", (r.request_id,)).fetchone()
        return {"request_id": r.request_id, "key_id": r.key_id, "digest": r.digest,
                "derivation_path": r.derivation_path, "initiator": r.initiator, "status": r.status,
                "signers": _uj(row[0]) if row else None,
                "signature": _uj(r.result), "error": _uj(r.error),
                "created": r.created_at, "updated": r.updated_at}

    # -- presignatures ----------------------------------------------------------------

    def add_presignature(self, presig_id: bytes, key_id: str, epoch: int, signers: list[int],
                         R: bytes, blob: bytes) -> None:
        self.core.add_presignature(presig_id, key_id=key_id, epoch=epoch, signer_set=signers, R=R,
                                   sealed=blob, hsm_key_label=presig_key_label(presig_id))

    def count_presignatures(self, key_id: str, signers: list[int]) -> int:
        return self.core.count_presignatures(key_id, signers)

    def ready_signer_sets(self, key_id: str) -> dict[tuple[int, ...], int]:
        out: dict[tuple[int, ...], int] = {}
        for rec in self.core.list_presignatures(key_id, state="available"):
            out[tuple(rec.signer_set)] = out.get(tuple(rec.signer_set), 0) + 1
        return out

    def take_any_presignature(self, key_id: str, signers: list[int], epoch: int):
        """Pick one available presignature of this signer set and spend it (durably)."""
        return self.core.take_presignature(key_id, signers, epoch=epoch)

    def take_presignature(self, presig_id: bytes, *, reserved: bool):
        """Spend it durably (mine: reserved by this node; a peer's job: by id); None if gone."""
        try:
            if reserved:
                return self.core.spend_reserved(presig_id)
            return self.core.take_presignature_by_id(presig_id)
        except PresignatureUnavailable:
            return None

    def presignature_keys_destroyed(self, labels: list[str]) -> None:
        self.core.mark_presignature_keys_destroyed(labels)

    # -- primes (safe primes; a safe prime also serves as a Blum prime) ----------------

    def add_prime(self, bits: int, blob: bytes) -> None:
        self.core.add_sealed_primes(bits, [blob])

    def take_prime(self, bits: int) -> tuple[int, bytes] | None:
        return self.core.take_sealed_prime(bits)

    def count_primes(self, bits: int) -> int:
        return self.core.count_sealed_primes(bits)

    # -- events (the hook issue 6's audit log replaces) -------------------------------

    def add_event(self, actor: str | None, action: str, key_id: str | None = None,
                  subject: str | None = None, decision: str | None = None, reason: str | None = None) -> int:
        cur = self._x("INSERT INTO node_events (time, actor, action, key_id, subject, decision, reason)"
                      " VALUES (?,?,?,?,?,?,?)", (time.time(), actor, action, key_id, subject, decision, reason))
        return int(cur.lastrowid)

    def events(self, since: int = 0, limit: int = 1000) -> list[dict]:
        cols = ("seq", "time", "actor", "action", "key_id", "subject", "decision", "reason")
        rows = self._x(f"SELECT {', '.join(cols)} FROM node_events WHERE seq>? ORDER BY seq LIMIT ?",
                       (since, limit)).fetchall()
        return [dict(zip(cols, r)) for r in rows]
