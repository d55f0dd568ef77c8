"""Sign requests: the request, its status (compare-and-set), its result; and the signer
set the node chose for it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from appliance.storage.database import Database
from appliance.storage.errors import ConflictError, NotFoundError
from appliance.storage.records import REQUEST_STATUSES, SignRequest


class SignRequestRepository:
    """``sign_requests``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_sign_request(
        self,
        request_id: str,
        *,
        key_id: str,
        initiator: str,
        digest: bytes | None = None,
        derivation_path: str | None = None,
        payload: bytes | None = None,
        payload_type: str | None = None,
        request: bytes | None = None,
    ) -> SignRequest:
        if digest is None and payload is None:
            raise ValueError("a sign request needs a digest or a payload")
        if digest is not None and len(digest) != 32:
            raise ValueError("a digest is 32 bytes")
        now = self.db.now()
        try:
            with self.db.tx() as db:
                db.execute(
                    "INSERT INTO sign_requests (request_id, key_id, initiator, digest, "
                    "derivation_path, payload, payload_type, request, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (request_id, key_id, initiator, digest, derivation_path, payload,
                     payload_type, request, now, now),
                )
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc):
                raise NotFoundError(f"no key {key_id!r}") from None
            raise ConflictError(f"sign request {request_id!r} exists") from None
        return self.get_sign_request(request_id)

    _REQ_COLS = ("request_id, key_id, initiator, digest, derivation_path, payload, "
                 "payload_type, request, status, result, error, presig_id, created_at, "
                 "updated_at")

    def get_sign_request(self, request_id: str) -> SignRequest:
        rows = self.db.query(f"SELECT {self._REQ_COLS} FROM sign_requests WHERE request_id = ?",
                       (request_id,))
        if not rows:
            raise NotFoundError(f"no sign request {request_id!r}")
        return SignRequest(*rows[0])

    def list_sign_requests(
        self, *, status: str | None = None, key_id: str | None = None
    ) -> list[SignRequest]:
        sql = f"SELECT {self._REQ_COLS} FROM sign_requests WHERE 1"
        args: list = []
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if key_id is not None:
            sql += " AND key_id = ?"
            args.append(key_id)
        return [SignRequest(*r) for r in self.db.query(sql + " ORDER BY created_at", args)]

    def page_sign_requests(
        self, *, statuses: Sequence[str] | None = None, key_id: str | None = None,
        initiator: str | None = None, created_after: float | None = None,
        created_before: float | None = None, after: tuple[float, str] | None = None, limit: int = 100,
        scope: Any = None,
    ) -> list[SignRequest]:
        """Up to ``limit`` requests, newest first by (created_at, request_id), strictly after
        ``after`` (the last one of the previous page). ``statuses``: as shown, where the
        statement's final status (``cancelled``) stands for the stored one. Times exclusive."""
        cols = ", ".join(f"r.{c.strip()}" for c in self._REQ_COLS.split(","))
        sql = (f"SELECT {cols} FROM sign_requests r LEFT JOIN node_statements s "
               "ON s.request_id = r.request_id WHERE 1")
        args: list = []
        if statuses is not None:
            sql += f" AND coalesce(s.final, r.status) IN ({', '.join('?' * len(statuses))})"
            args += list(statuses)
        for clause, value in (("r.key_id = ?", key_id), ("r.initiator = ?", initiator),
                              ("r.created_at > ?", created_after), ("r.created_at < ?", created_before)):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        if scope is not None:  # appliance.ports.ReadScope: who may read what, in the query
            parts: list[str] = []
            if scope.keys is not None:
                parts.append(f"r.key_id IN ({', '.join('?' * len(scope.keys))})" if scope.keys else "0")
                args += list(scope.keys)
            if scope.except_keys:
                parts.append(f"r.key_id NOT IN ({', '.join('?' * len(scope.except_keys))})")
                args += list(scope.except_keys)
            keys = " AND ".join(parts) or "1"
            if scope.or_initiator is not None:
                sql += f" AND (({keys}) OR r.initiator = ?)"
                args.append(scope.or_initiator)
            else:
                sql += f" AND {keys}"
            if scope.not_initiator is not None:
                sql += " AND r.initiator != ?"
                args.append(scope.not_initiator)
        if after is not None:
            sql += " AND (r.created_at, r.request_id) < (?, ?)"
            args += [after[0], after[1]]
        sql += " ORDER BY r.created_at DESC, r.request_id DESC LIMIT ?"
        return [SignRequest(*r) for r in self.db.query(sql, [*args, limit])]

    def update_sign_request(
        self,
        request_id: str,
        *,
        status: str,
        expected_status: str | Sequence[str] | None = None,
        result: bytes | None = None,
        error: str | None = None,
        presig_id: bytes | None = None,
    ) -> SignRequest:
        """Set the status (compare-and-set against ``expected_status`` if given)."""
        if status not in REQUEST_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.db.tx() as db:
            row = db.execute("SELECT status FROM sign_requests WHERE request_id = ?",
                             (request_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no sign request {request_id!r}")
            if expected_status is not None:
                allowed = ((expected_status,) if isinstance(expected_status, str)
                           else tuple(expected_status))
                if row[0] not in allowed:
                    raise ConflictError(f"sign request {request_id!r} is {row[0]}")
            db.execute(
                "UPDATE sign_requests SET status = ?, result = coalesce(?, result), "
                "error = coalesce(?, error), presig_id = coalesce(?, presig_id), "
                "updated_at = ? WHERE request_id = ?",
                (status, result, error, presig_id, self.db.now(), request_id),
            )
        return self.get_sign_request(request_id)

    def note_presignature(self, request_id: str, presig_id: bytes) -> None:
        """Record which stored presignature a request's signature used (its status is
        left alone)."""
        with self.db.tx() as db:
            db.execute("UPDATE sign_requests SET presig_id = ?, updated_at = ? WHERE request_id = ?",
                       (bytes(presig_id), self.db.now(), request_id))


class RequestSignersRepository:
    """``node_requests``: the signers (node ids) the node chose for a sign request."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, request_id: str, signers: list[str] | None) -> None:
        self.db.execute("INSERT INTO node_requests (request_id, signers) VALUES (?,?)",
                        (request_id, _j(signers)))

    def set(self, request_id: str, signers: list[str]) -> None:
        self.db.execute("UPDATE node_requests SET signers=? WHERE request_id=?",
                        (_j(signers), request_id))

    def get(self, request_id: str) -> Any:
        row = self.db.one("SELECT signers FROM node_requests WHERE request_id=?", (request_id,))
        return json.loads(row[0]) if row and row[0] is not None else None


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)
