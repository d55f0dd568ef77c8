"""The node's view of its durable state: :class:`appliance.store.Store` (keys, sealed shares,
sealed primes, presignatures, sign requests) plus the few things the node layer adds in
tables of its own in the same SQLite file (``node_*``: key life cycle, key operations,
sign-request signer sets, policy statements and decisions).

Key life cycle on a node: a DKG or refresh leaves its result *pending* (the sealed share is
stored, the key or its new epoch is not in use; ``node_pending`` records what it would commit)
until the coordinator has seen every party's matching result, recorded its decision
(``node_commits``) and sends *commit*; old shares stay until every party confirmed and the
coordinator sends *finalize*. A job that does not finish is *abandoned* (its pending share
deleted, the old epoch stays in use).
Every secret is an HSM-sealed blob (the core store refuses anything else).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from appliance.nonce_ledger import NonceLedger
from appliance.sealed import presig_key_label
from appliance.store import ConflictError, NotFoundError, PresignatureUnavailable, Store

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
"""


# the policy side (issue 6/7): signed statements and decisions, policy updates, and what
# must survive a crash exactly (fsynced: synchronous=FULL on their own connection)
POLICY_SCHEMA = """
CREATE TABLE IF NOT EXISTS node_statements (
    request_id TEXT PRIMARY KEY,      -- the signed request's id (req_...)
    subject TEXT NOT NULL,            -- the sign request (= request_id) or the operation id
    action TEXT NOT NULL,
    key_id TEXT,
    request TEXT NOT NULL,            -- the SignedRequest as JSON
    payload TEXT,                     -- the payload as sent (JSON), or the key operation's body
    network TEXT,
    decoded TEXT,                     -- what this node decoded (summary shown to approvers)
    final TEXT,                       -- a status the core store has no name for (cancelled)
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS node_statements_subject ON node_statements (subject);
CREATE TABLE IF NOT EXISTS node_decisions (
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    decision TEXT NOT NULL,
    approval TEXT NOT NULL,           -- the signed Approval as JSON
    created REAL NOT NULL,
    PRIMARY KEY (request_id, approver)
);
CREATE TABLE IF NOT EXISTS node_policy_updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_hash TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    time REAL NOT NULL
);
"""
DURABLE_SCHEMA = """
CREATE TABLE IF NOT EXISTS node_used_jobs (
    job_id TEXT PRIMARY KEY,          -- every job id ever run or refused here (session ids
    time REAL NOT NULL                -- are H(job id, phase): never twice)
);
CREATE TABLE IF NOT EXISTS node_used_requests (
    request_id TEXT PRIMARY KEY,      -- a request this node signed for (or ran the key change of)
    action TEXT NOT NULL,
    key_id TEXT,
    job_id TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS node_used_requests_key ON node_used_requests (key_id, action, time);
CREATE TABLE IF NOT EXISTS node_usage (
    request_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,             -- decimal (wei exceed 64 bits)
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS node_usage_key ON node_usage (key_id, time);
CREATE TABLE IF NOT EXISTS node_request_marks (
    request_id TEXT PRIMARY KEY,      -- a sign request reserved cluster-wide for one signer set
    key_id TEXT NOT NULL,             -- (appliance/request_use.py): every holder of the key
    signers TEXT NOT NULL,            -- records it, signers or not; comma-separated indices
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS node_request_marks_key ON node_request_marks (key_id, time);
"""


# key changes in two phases (issue 8): a party *prepares* (its new sealed share is stored,
# not in use) and records what it would commit; the coordinator records its commit decision
# before telling anyone, then asks every party to *commit* (the new epoch is in use, the old
# share kept) and, once every party has confirmed, to *finalize* (old shares and old
# presignatures destroyed). A party that missed a commit asks the coordinator later.
LIFECYCLE_SCHEMA = """
CREATE TABLE IF NOT EXISTS node_pending (
    key_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,               -- keygen | import | refresh | reshare
    role TEXT NOT NULL,               -- new (no share before) | member | leaver
    new_epoch INTEGER NOT NULL,
    coordinator INTEGER NOT NULL,
    participants TEXT NOT NULL,       -- the committee once committed (JSON)
    threshold INTEGER NOT NULL,
    fingerprint TEXT,
    state TEXT NOT NULL DEFAULT 'prepared',  -- prepared | committed (until finalized)
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS node_commits (
    job_id TEXT PRIMARY KEY,          -- a key change this node coordinated and decided to commit
    key_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    new_epoch INTEGER NOT NULL,
    parties TEXT NOT NULL,
    acked TEXT NOT NULL,              -- parties that confirmed the commit
    finalized TEXT NOT NULL,          -- parties that destroyed the old epoch
    state TEXT NOT NULL,              -- committing | finalized
    created REAL NOT NULL,
    updated REAL NOT NULL
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
        # the node's own bookkeeping (operations, signer sets) need not be fsynced per commit:
        # secrets, keys, presignature spending and requests are in the core store (FULL)
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)
        # key-change bookkeeping must survive a crash: its own fsynced connection
        self.lc = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        self.lc.execute("PRAGMA busy_timeout = 10000")
        self.lc.execute("PRAGMA synchronous = FULL")
        self.lc.executescript(LIFECYCLE_SCHEMA)
        self.db.executescript(POLICY_SCHEMA)
        self.durable = sqlite3.connect(str(path), timeout=10.0, isolation_level=None,
                                       check_same_thread=False)
        self.durable.execute("PRAGMA busy_timeout = 10000")
        self.durable.execute("PRAGMA synchronous = FULL")
        self.durable.executescript(DURABLE_SCHEMA)
        self.nonces = NonceLedger(path)  # RFC 9421 nonces accepted here, kept across restarts

    def close(self) -> None:
        self.lc.close()
        self.db.close()
        self.durable.close()
        self.nonces.close()
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

    def put_pending_share(self, key_id: str, epoch: int, blob: bytes) -> None:
        """The sealed share of a refresh/reshare's new epoch, not in use until committed."""
        try:
            self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
        except ConflictError:
            # left over from a key change to this epoch that did not finish: never in use
            prepared = self.pending(key_id)
            if self.core.get_key(key_id).epoch >= epoch or (prepared is not None and prepared["state"] == "prepared"):
                raise
            self.core.delete_sealed_secrets(key_id, epoch=epoch)
            self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
        self._x("UPDATE node_keys SET pending_epoch=?, updated=? WHERE key_id=?", (epoch, time.time(), key_id))

    # -- two-phase key changes: prepare -> commit -> finalize (or abandon) -------------

    _PENDING = ("key_id", "job_id", "kind", "role", "new_epoch", "coordinator", "participants",
                "threshold", "fingerprint", "state", "created")

    def prepare(self, key_id: str, job_id: str, kind: str, role: str, new_epoch: int, coordinator: int,
                participants: list[int], threshold: int, fingerprint: str | None = None) -> None:
        """Record (fsynced) what this party commits when the coordinator says so: ``role`` is
        ``new`` (the key was not held here: its pending key becomes active), ``member`` (the
        pending share of ``new_epoch`` becomes the key's share) or ``leaver`` (the key stops
        being usable here)."""
        if role not in ("new", "member", "leaver"):
            raise ValueError(f"unknown role {role!r}")
        self.lc.execute(f"INSERT OR REPLACE INTO node_pending ({', '.join(self._PENDING)}) VALUES "
                        f"({', '.join('?' * len(self._PENDING))})",
                        (key_id, job_id, kind, role, new_epoch, coordinator, json.dumps(list(participants)),
                         threshold, fingerprint, "prepared", time.time()))

    def _pending_row(self, row) -> dict | None:
        if row is None:
            return None
        d = dict(zip(self._PENDING, row))
        d["participants"] = json.loads(d["participants"])
        return d

    def pending(self, key_id: str) -> dict | None:
        return self._pending_row(self.lc.execute(
            f"SELECT {', '.join(self._PENDING)} FROM node_pending WHERE key_id=?", (key_id,)).fetchone())

    def pending_for_job(self, job_id: str) -> dict | None:
        return self._pending_row(self.lc.execute(
            f"SELECT {', '.join(self._PENDING)} FROM node_pending WHERE job_id=?", (job_id,)).fetchone())

    def list_pending(self, state: str = "prepared") -> list[dict]:
        rows = self.lc.execute(f"SELECT {', '.join(self._PENDING)} FROM node_pending WHERE state=?"
                               " ORDER BY created", (state,))
        return [self._pending_row(r) for r in rows.fetchall()]

    def commit_prepared(self, job_id: str) -> dict | None:
        """Put the prepared change of ``job_id`` in use (old shares stay until finalize);
        returns the pending record, or None if there is none (already committed/abandoned)."""
        p = self.pending_for_job(job_id)
        if p is None or p["state"] != "prepared":
            return None
        key_id, now = p["key_id"], time.time()
        if p["role"] == "new":
            self.set_key_status(key_id, "active")
        elif p["role"] == "member":
            rec = self.core.get_key(key_id)
            if rec.epoch < p["new_epoch"]:
                self.core.set_key_epoch(key_id, p["new_epoch"], expected=rec.epoch,
                                        participants=p["participants"], threshold=p["threshold"])
            self._x("UPDATE node_keys SET status='active', pending_epoch=NULL, updated=? WHERE key_id=?",
                    (now, key_id))
        else:
            self._x("UPDATE node_keys SET status='retired', pending_epoch=NULL, updated=? WHERE key_id=?",
                    (now, key_id))
        # kept (committed) until the coordinator's finalize, which only it may send
        self.lc.execute("UPDATE node_pending SET state='committed' WHERE job_id=?", (job_id,))
        return p

    def abandon_prepared(self, job_id: str) -> list[str]:
        """The change of ``job_id`` will not happen: drop what it prepared (the old epoch stays
        in use). Returns HSM key labels of presignatures to destroy."""
        p = self.pending_for_job(job_id)
        if p is None or p["state"] != "prepared":
            return []
        labels: list[str] = []
        if p["role"] == "new":
            labels = self.abandon_key(p["key_id"])
        elif p["role"] == "member":
            self.drop_pending_share(p["key_id"], p["new_epoch"])
        self.lc.execute("DELETE FROM node_pending WHERE job_id=?", (job_id,))
        return labels

    def finalize_key(self, key_id: str, epoch: int) -> list[str]:
        """Every party confirmed ``epoch``: destroy this node's sealed shares of earlier epochs
        (all of them where this node left the committee) and discard older presignatures.
        Idempotent; does nothing before this node committed. Returns HSM key labels to destroy."""
        try:
            rec = self.core.get_key(key_id)
        except NotFoundError:
            return []
        row = self._x("SELECT status FROM node_keys WHERE key_id=?", (key_id,)).fetchone()
        retired = row is not None and row[0] == "retired"
        if not retired and rec.epoch < epoch:
            return []
        self.core.delete_sealed_secrets(key_id, before_epoch=epoch)
        self.lc.execute("DELETE FROM node_pending WHERE key_id=? AND state='committed' AND new_epoch<=?",
                        (key_id, epoch))
        return self.core.discard_presignatures(key_id, before_epoch=None if retired else epoch)

    def abandon_key(self, key_id: str) -> list[str]:
        """A key that never came into use here (unfinished DKG, import, or reshare to this node):
        deleted with its sealed share. Returns HSM key labels of presignatures to destroy."""
        row = self._x("SELECT status FROM node_keys WHERE key_id=?", (key_id,)).fetchone()
        if row is None or row[0] not in ("pending", "abandoned"):
            return []
        try:
            labels = self.core.delete_key(key_id)
        except NotFoundError:
            labels = []
        except ConflictError:  # pragma: no cover - a pending key has no sign requests
            self.set_key_status(key_id, "abandoned")
            return []
        self._x("DELETE FROM node_keys WHERE key_id=?", (key_id,))
        return labels

    def drop_pending_share(self, key_id: str, epoch: int | None = None) -> None:
        """Forget the pending share of a refresh/reshare that did not finish."""
        row = self._x("SELECT pending_epoch FROM node_keys WHERE key_id=?", (key_id,)).fetchone()
        pend = epoch if epoch is not None else (row[0] if row else None)
        if pend is not None:
            try:
                if self.core.get_key(key_id).epoch < pend:
                    self.core.delete_sealed_secrets(key_id, epoch=pend)
            except NotFoundError:
                pass
        self._x("UPDATE node_keys SET pending_epoch=NULL, updated=? WHERE key_id=?", (time.time(), key_id))

    # -- the coordinator's commit decisions --------------------------------------------

    _COMMITS = ("job_id", "key_id", "kind", "new_epoch", "parties", "acked", "finalized", "state",
                "created", "updated")

    def record_commit(self, job_id: str, key_id: str, kind: str, new_epoch: int, parties: list[int]) -> None:
        """The coordinator's decision to commit (fsynced before any party is told)."""
        now = time.time()
        self.lc.execute("INSERT OR IGNORE INTO node_commits (job_id, key_id, kind, new_epoch, parties, acked,"
                        " finalized, state, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (job_id, key_id, kind, new_epoch, json.dumps(sorted(parties)), "[]", "[]",
                         "committing", now, now))

    def _commit_row(self, row) -> dict | None:
        if row is None:
            return None
        d = dict(zip(self._COMMITS, row))
        for k in ("parties", "acked", "finalized"):
            d[k] = json.loads(d[k])
        return d

    def commit_record(self, job_id: str) -> dict | None:
        return self._commit_row(self.lc.execute(
            f"SELECT {', '.join(self._COMMITS)} FROM node_commits WHERE job_id=?", (job_id,)).fetchone())

    def open_commits(self) -> list[dict]:
        rows = self.lc.execute(f"SELECT {', '.join(self._COMMITS)} FROM node_commits WHERE state != 'finalized'"
                               " ORDER BY created").fetchall()
        return [self._commit_row(r) for r in rows]

    def commit_progress(self, job_id: str, *, acked: list[int] = (), finalized: list[int] = ()) -> dict | None:
        rec = self.commit_record(job_id)
        if rec is None:
            return None
        a = sorted(set(rec["acked"]) | set(acked))
        f = sorted(set(rec["finalized"]) | set(finalized))
        state = "finalized" if set(f) >= set(rec["parties"]) else "committing"
        self.lc.execute("UPDATE node_commits SET acked=?, finalized=?, state=?, updated=? WHERE job_id=?",
                        (json.dumps(a), json.dumps(f), state, time.time(), job_id))
        return self.commit_record(job_id)

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

    def set_operation_running(self, op_id: str, key_id: str | None) -> None:
        self._x("UPDATE node_operations SET status='running', key_id=coalesce(?, key_id), updated=?"
                " WHERE op_id=?", (key_id, time.time(), op_id))

    def pending_operation_ids(self) -> list[str]:
        return [r[0] for r in self._x("SELECT op_id FROM node_operations WHERE status='pending'")]

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
        # (operations waiting for approvals stay pending: nothing of them was running)
        self._x("UPDATE node_operations SET status='failed', error=?, updated=? WHERE status IN"
                " ('running')", (_j(why), now))
        for req in self.core.list_sign_requests(status="signing"):
            self.core.update_sign_request(req.request_id, status="failed", error=_j(why))
        # prepared key changes (node_pending) stay: the node asks their coordinator whether
        # they were committed; anything else pending did not finish
        prepared = {r[0] for r in self.lc.execute("SELECT key_id FROM node_pending WHERE state='prepared'")}
        for (key_id,) in self._x("SELECT key_id FROM node_keys WHERE status='pending'").fetchall():
            if key_id not in prepared:
                self.abandon_key(key_id)
        for key_id, epoch in self._x("SELECT key_id, pending_epoch FROM node_keys"
                                     " WHERE pending_epoch IS NOT NULL").fetchall():
            if key_id not in prepared:
                self.drop_pending_share(key_id, epoch)

    # -- sign requests ----------------------------------------------------------------

    def put_sign_request(self, request_id: str, key_id: str, digest: bytes | None, path: str | None,
                         initiator: str, signers: list[str] | None, *, payload: Any = None,
                         payload_type: str | None = None, request: dict | None = None,
                         status: str = "signing") -> None:
        """A new sign request (``payload``: as sent, stored as JSON; ``request``: the signed
        statement); ``status`` pending (waiting for approvals) or signing."""
        self.core.create_sign_request(
            request_id, key_id=key_id, initiator=initiator, digest=digest, derivation_path=path,
            payload=None if payload is None else json.dumps(payload).encode(),
            payload_type=payload_type,
            request=None if request is None else json.dumps(request).encode())
        self._x("INSERT INTO node_requests (request_id, signers) VALUES (?,?)", (request_id, _j(signers)))
        if status != "pending":
            self.core.update_sign_request(request_id, status=status, expected_status="pending")

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
                "presignature": r.presig_id.hex() if r.presig_id else None,
                "created": r.created_at, "updated": r.updated_at}

    # -- presignatures ----------------------------------------------------------------

    def add_presignature(self, presig_id: bytes, key_id: str, epoch: int, signers: list[int],
                         R: bytes, blob: bytes) -> None:
        self.core.add_presignature(presig_id, key_id=key_id, epoch=epoch, signer_set=signers, R=R,
                                   sealed=blob, hsm_key_label=presig_key_label(presig_id))

    def count_presignatures(self, key_id: str, signers: list[int] | None = None, epoch: int | None = None) -> int:
        return self.core.count_presignatures(key_id, signers, epoch=epoch)

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

    # -- policy: statements, decisions, updates (issue 6) -----------------------------

    def put_statement(self, request_id: str, subject: str, action: str, key_id: str | None,
                      request: dict, *, payload: Any = None, network: str | None = None,
                      decoded: dict | None = None) -> None:
        self._x("INSERT INTO node_statements (request_id, subject, action, key_id, request, payload,"
                " network, decoded, created) VALUES (?,?,?,?,?,?,?,?,?)",
                (request_id, subject, action, key_id, json.dumps(request), _j(payload), network,
                 _j(decoded), time.time()))

    def get_statement(self, request_id: str) -> dict | None:
        cols = ("request_id", "subject", "action", "key_id", "request", "payload", "network",
                "decoded", "final", "created")
        row = self._x(f"SELECT {', '.join(cols)} FROM node_statements WHERE request_id=? OR subject=?"
                      " ORDER BY created LIMIT 1", (request_id, request_id)).fetchone()
        if row is None:
            return None
        d = dict(zip(cols, row))
        for k in ("request", "payload", "decoded"):
            d[k] = _uj(d[k])
        return d

    def set_statement_final(self, request_id: str, final: str) -> None:
        self._x("UPDATE node_statements SET final=? WHERE request_id=?", (final, request_id))

    def add_decision(self, request_id: str, approver: str, decision: str, approval: dict) -> bool:
        """Record one person's signed decision; False if they already decided."""
        try:
            self._x("INSERT INTO node_decisions (request_id, approver, decision, approval, created)"
                    " VALUES (?,?,?,?,?)", (request_id, approver, decision, json.dumps(approval),
                                            time.time()))
        except sqlite3.IntegrityError:
            return False
        return True

    def decisions(self, request_id: str) -> list[dict]:
        rows = self._x("SELECT approval FROM node_decisions WHERE request_id=? ORDER BY created, approver",
                       (request_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def last_approvals(self, exclude_request: str) -> list[dict]:
        """Approvals recorded for the most recent other request (used by a test-only fault)."""
        row = self._x("SELECT request_id FROM node_decisions WHERE request_id != ? AND decision='approve'"
                      " ORDER BY created DESC LIMIT 1", (exclude_request,)).fetchone()
        return self.decisions(row[0]) if row else []

    def add_policy_update(self, policy_hash: str, body: dict) -> None:
        self.durable.execute("INSERT OR IGNORE INTO node_policy_updates (policy_hash, body, time)"
                             " VALUES (?,?,?)", (policy_hash, json.dumps(body), time.time()))

    def policy_updates(self) -> list[dict]:
        return [json.loads(r[0]) for r in
                self.durable.execute("SELECT body FROM node_policy_updates ORDER BY seq").fetchall()]

    # -- replay and double-signing protection (fsynced) -------------------------------

    def use_job_id(self, job_id: str) -> bool:
        """Record a job id durably; False if it was ever seen before (never run a session twice)."""
        try:
            self.durable.execute("INSERT INTO node_used_jobs (job_id, time) VALUES (?,?)",
                                 (job_id, time.time()))
        except sqlite3.IntegrityError:
            return False
        return True

    def job_id_used(self, job_id: str, *, older_than: float = 0.0) -> bool:
        """Was this job id ever run or refused here (at least ``older_than`` seconds ago)?"""
        return self.durable.execute("SELECT 1 FROM node_used_jobs WHERE job_id=? AND time<=?",
                                    (job_id, time.time() - older_than)).fetchone() is not None

    def use_request(self, request_id: str, action: str, key_id: str | None, job_id: str,
                    amounts: dict[str, int] | None = None) -> bool:
        """Mark a request as signed here (with the amounts it moves, for window limits) in one
        fsynced transaction; False if it already was (a signer takes part once per request)."""
        now = time.time()
        c = self.durable
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("INSERT INTO node_used_requests (request_id, action, key_id, job_id, time)"
                          " VALUES (?,?,?,?,?)", (request_id, action, key_id, job_id, now))
            except sqlite3.IntegrityError:
                c.execute("ROLLBACK")
                return False
            for asset, amount in (amounts or {}).items():
                c.execute("INSERT INTO node_usage (request_id, key_id, asset, amount, time)"
                          " VALUES (?,?,?,?,?)", (request_id, key_id, asset, str(int(amount)), now))
            c.execute("COMMIT")
        except BaseException:
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return True

    def request_used(self, request_id: str) -> bool:
        return self.durable.execute("SELECT 1 FROM node_used_requests WHERE request_id=?",
                                    (request_id,)).fetchone() is not None

    def mark_request(self, request_id: str, key_id: str, signers: list[int]) -> bool:
        """Reserve a sign request for one signer set (fsynced). True if it now is, or already
        was, reserved for exactly that set; False if another set holds it."""
        want = ",".join(str(i) for i in sorted(signers))
        # one autocommitted (synchronous=FULL) insert: the first set to arrive holds the request
        self.durable.execute("INSERT OR IGNORE INTO node_request_marks (request_id, key_id, signers, time)"
                             " VALUES (?,?,?,?)", (request_id, key_id, want, time.time()))
        row = self.durable.execute("SELECT signers, key_id FROM node_request_marks WHERE request_id=?",
                                   (request_id,)).fetchone()
        return row is not None and row[0] == want and row[1] == key_id

    def signatures_since(self, key_id: str, since: float, *, besides: str | None = None) -> int:
        """Sign requests of the key reserved since ``since`` (``besides``: not counting that
        request, the one being decided): each counts once, on every holder that recorded its
        reservation, whether or not this node signed it."""
        return int(self.durable.execute(
            "SELECT count(*) FROM node_request_marks WHERE key_id=? AND time>? AND request_id IS NOT ?",
            (key_id, since, besides)).fetchone()[0])

    def amounts_since(self, key_id: str, since: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for asset, amount in self.durable.execute(
                "SELECT asset, amount FROM node_usage WHERE key_id=? AND time>?", (key_id, since)):
            out[asset] = out.get(asset, 0) + int(amount)
        return out
