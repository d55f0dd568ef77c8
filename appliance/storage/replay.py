"""Replay and double-signing protection (fsynced): every job id ever run or refused here,
the requests this node signed for (with the amounts they move, for window limits), and the
cluster-wide reservation of a sign request for one signer set, and the claims of request
ids (one per initiator and nonce: the idempotency key)."""

from __future__ import annotations

import sqlite3

from appliance.storage.database import Database


class UsedJobs:
    """``node_used_jobs``: session ids are H(job id, phase), so a job id never runs twice."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def use(self, job_id: str) -> bool:
        """Record a job id durably; False if it was ever seen before."""
        try:
            self.db.execute("INSERT INTO node_used_jobs (job_id, time) VALUES (?,?)",
                            (job_id, self.db.now()))
        except sqlite3.IntegrityError:
            return False
        return True

    def used(self, job_id: str, *, older_than: float = 0.0) -> bool:
        """Was this job id ever run or refused here (at least ``older_than`` seconds ago)?"""
        return self.db.one("SELECT 1 FROM node_used_jobs WHERE job_id=? AND time<=?",
                           (job_id, self.db.now() - older_than)) is not None


class UsedRequests:
    """``node_used_requests``, ``node_usage`` and ``node_request_marks``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def use(self, request_id: str, action: str, key_id: str | None, job_id: str,
            amounts: dict[str, int] | None = None) -> bool:
        """Mark a request as signed here (with the amounts it moves) in one fsynced
        transaction; False if it already was (a signer takes part once per request)."""
        now = self.db.now()
        try:
            with self.db.tx(durable=True) as c:
                c.execute("INSERT INTO node_used_requests (request_id, action, key_id, job_id, time)"
                          " VALUES (?,?,?,?,?)", (request_id, action, key_id, job_id, now))
                for asset, amount in (amounts or {}).items():
                    c.execute("INSERT INTO node_usage (request_id, key_id, asset, amount, time)"
                              " VALUES (?,?,?,?,?)", (request_id, key_id, asset, str(int(amount)), now))
        except sqlite3.IntegrityError:
            return False
        return True

    def used(self, request_id: str) -> bool:
        return self.db.one("SELECT 1 FROM node_used_requests WHERE request_id=?",
                           (request_id,)) is not None

    def mark(self, request_id: str, key_id: str, signers: list[int]) -> bool:
        """Reserve a sign request for one signer set (fsynced). True if it now is, or already
        was, reserved for exactly that set; False if another set holds it."""
        want = ",".join(str(i) for i in sorted(signers))
        with self.db.tx(durable=True) as c:
            # the first set to arrive holds the request
            c.execute("INSERT OR IGNORE INTO node_request_marks (request_id, key_id, signers, time)"
                      " VALUES (?,?,?,?)", (request_id, key_id, want, self.db.now()))
            row = c.execute("SELECT signers, key_id FROM node_request_marks WHERE request_id=?",
                            (request_id,)).fetchone()
        return row is not None and row[0] == want and row[1] == key_id

    def marked_since(self, key_id: str, since: float, *, besides: str | None = None) -> int:
        """Sign requests of the key reserved since ``since`` (``besides``: not counting that
        request): each counts once, on every holder that recorded its reservation."""
        return int(self.db.one(
            "SELECT count(*) FROM node_request_marks WHERE key_id=? AND time>? AND request_id IS NOT ?",
            (key_id, since, besides))[0])

    def note_assertion(self, credential_id: str, counter: int, assertion_id: str, *,
                       in_order: bool = True) -> bool:
        """``node_passkey_assertions``: the passkey assertions this node accepted, with their
        sign counters. One seen before passes again (the same approval re-checked). A new one
        with counter 0 (an authenticator that keeps none) passes unless one above 0 was
        recorded for the credential; one above 0 must be above every counter recorded
        (``in_order``: a decision, posted as the authenticator made it), or (a signer, whose
        jobs may arrive in another order than the approvals were made) one no other assertion
        of the credential had."""
        with self.db.tx(durable=True) as c:
            if c.execute("SELECT 1 FROM node_passkey_assertions WHERE credential_id=? AND "
                         "assertion_id=?", (credential_id, assertion_id)).fetchone() is not None:
                return True
            top = c.execute("SELECT max(counter) FROM node_passkey_assertions WHERE credential_id=?",
                            (credential_id,)).fetchone()[0] or 0
            if counter == 0:
                if top > 0:
                    return False
            elif in_order and counter <= top:
                return False
            elif c.execute("SELECT 1 FROM node_passkey_assertions WHERE credential_id=? AND counter=?",
                           (credential_id, counter)).fetchone() is not None:
                return False
            c.execute("INSERT INTO node_passkey_assertions (credential_id, assertion_id, counter, time)"
                      " VALUES (?,?,?,?)", (credential_id, assertion_id, counter, self.db.now()))
        return True

    def amounts_since(self, key_id: str, since: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for asset, amount in self.db.query(
                "SELECT asset, amount FROM node_usage WHERE key_id=? AND time>?", (key_id, since)):
            out[asset] = out.get(asset, 0) + int(amount)
        return out


class RequestClaims:
    """``node_request_claims``: the first request seen under an (initiator, nonce), and the
    node that keeps it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, request_id: str, initiator: str, nonce: str, content: str, owner: int) -> dict:
        """Record the claim unless one is recorded (fsynced); the recorded one (the first)."""
        with self.db.tx(durable=True) as c:
            c.execute("INSERT OR IGNORE INTO node_request_claims (request_id, initiator, nonce, content, owner,"
                      " time) VALUES (?,?,?,?,?,?)", (request_id, initiator, nonce, content, owner, self.db.now()))
            row = c.execute("SELECT content, owner FROM node_request_claims WHERE request_id=?",
                            (request_id,)).fetchone()
        return {"content": row[0], "owner": int(row[1])}

    def owner(self, request_id: str) -> int | None:
        """The node the first claim of ``request_id`` names as keeping it (None: unclaimed here)."""
        row = self.db.one("SELECT owner FROM node_request_claims WHERE request_id=?", (request_id,))
        return None if row is None else int(row[0])
