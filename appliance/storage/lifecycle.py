"""Key changes in two phases (fsynced). A party *prepares* (its new sealed share is stored,
not in use) and records what it would commit (``node_pending``); the coordinator records its
commit decision before telling anyone (``node_commits``), then asks every party to *commit*
(the new epoch is in use, the old share kept) and, once every party has confirmed, to
*finalize* (old shares and old presignatures destroyed). A party that missed a commit asks
the coordinator later."""

from __future__ import annotations

import json

from appliance.storage.database import Database

PENDING_COLS = ("key_id", "job_id", "kind", "role", "new_epoch", "coordinator", "participants",
                "threshold", "fingerprint", "state", "created")
COMMIT_COLS = ("job_id", "key_id", "kind", "new_epoch", "parties", "acked", "finalized", "state",
               "created", "updated", "fingerprint")
ROLES = ("new", "member", "leaver", "delete")


def _pending_row(row: tuple | None) -> dict | None:
    if row is None:
        return None
    d = dict(zip(PENDING_COLS, row))
    d["participants"] = json.loads(d["participants"])
    return d


def _commit_row(row: tuple | None) -> dict | None:
    if row is None:
        return None
    d = dict(zip(COMMIT_COLS, row))
    for k in ("parties", "acked", "finalized"):
        d[k] = json.loads(d[k])
    return d


class PendingChanges:
    """``node_pending``: what this party commits when its coordinator says so."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def prepare(self, key_id: str, job_id: str, kind: str, role: str, new_epoch: int,
                coordinator: int, participants: list[int], threshold: int,
                fingerprint: str | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.db.execute(f"INSERT OR REPLACE INTO node_pending ({', '.join(PENDING_COLS)}) VALUES "
                        f"({', '.join('?' * len(PENDING_COLS))})",
                        (key_id, job_id, kind, role, new_epoch, coordinator,
                         json.dumps(list(participants)), threshold, fingerprint, "prepared",
                         self.db.now()))

    def for_key(self, key_id: str) -> dict | None:
        return _pending_row(self.db.one(
            f"SELECT {', '.join(PENDING_COLS)} FROM node_pending WHERE key_id=?", (key_id,)))

    def for_job(self, job_id: str) -> dict | None:
        return _pending_row(self.db.one(
            f"SELECT {', '.join(PENDING_COLS)} FROM node_pending WHERE job_id=?", (job_id,)))

    def with_state(self, state: str) -> list[dict]:
        rows = self.db.query(f"SELECT {', '.join(PENDING_COLS)} FROM node_pending WHERE state=?"
                             " ORDER BY created", (state,))
        return [_pending_row(r) for r in rows]

    def set_committed(self, job_id: str) -> None:
        self.db.execute("UPDATE node_pending SET state='committed' WHERE job_id=?", (job_id,))

    def delete_job(self, job_id: str) -> None:
        self.db.execute("DELETE FROM node_pending WHERE job_id=?", (job_id,))

    def delete_committed(self, key_id: str, up_to_epoch: int) -> None:
        self.db.execute("DELETE FROM node_pending WHERE key_id=? AND state='committed' AND"
                        " new_epoch<=?", (key_id, up_to_epoch))


class CommitDecisions:
    """``node_commits``: the coordinator's decisions to commit, and who confirmed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, job_id: str, key_id: str, kind: str, new_epoch: int, parties: list[int],
               fingerprint: str | None = None) -> None:
        now = self.db.now()
        self.db.execute("INSERT OR IGNORE INTO node_commits (job_id, key_id, kind, new_epoch, parties,"
                        " acked, finalized, state, created, updated, fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (job_id, key_id, kind, new_epoch, json.dumps(sorted(parties)), "[]", "[]",
                         "committing", now, now, fingerprint))

    def get(self, job_id: str) -> dict | None:
        return _commit_row(self.db.one(
            f"SELECT {', '.join(COMMIT_COLS)} FROM node_commits WHERE job_id=?", (job_id,)))

    def open(self) -> list[dict]:
        rows = self.db.query(f"SELECT {', '.join(COMMIT_COLS)} FROM node_commits WHERE"
                             " state != 'finalized' ORDER BY created")
        return [_commit_row(r) for r in rows]

    def progress(self, job_id: str, *, acked: list[int] = (), finalized: list[int] = ()) -> dict | None:
        with self.db.tx():
            rec = self.get(job_id)
            if rec is None:
                return None
            a = sorted(set(rec["acked"]) | set(acked))
            f = sorted(set(rec["finalized"]) | set(finalized))
            state = "finalized" if set(f) >= set(rec["parties"]) else "committing"
            self.db.execute("UPDATE node_commits SET acked=?, finalized=?, state=?, updated=? WHERE"
                            " job_id=?", (json.dumps(a), json.dumps(f), state, self.db.now(), job_id))
            return self.get(job_id)
