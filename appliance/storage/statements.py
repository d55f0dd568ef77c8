"""Policy statements: the signed requests the node was given (with the payload as sent and
what the node decoded) and the signed decisions on them."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from appliance.storage.database import Database

_COLS = ("request_id", "subject", "action", "key_id", "request", "payload", "network", "decoded",
         "final", "created")


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)


def _uj(v: str | bytes | None) -> Any:
    return None if v is None else json.loads(v)


class StatementRepository:
    """``node_statements`` and ``node_decisions``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, request_id: str, subject: str, action: str, key_id: str | None,
            request: dict, *, payload: Any = None, network: str | None = None,
            decoded: dict | None = None) -> None:
        self.db.execute("INSERT INTO node_statements (request_id, subject, action, key_id, request,"
                        " payload, network, decoded, created) VALUES (?,?,?,?,?,?,?,?,?)",
                        (request_id, subject, action, key_id, json.dumps(request), _j(payload),
                         network, _j(decoded), self.db.now()))

    def get(self, request_id: str) -> dict | None:
        """By the request's id or by its subject (a sign request or an operation)."""
        row = self.db.one(f"SELECT {', '.join(_COLS)} FROM node_statements WHERE request_id=? OR"
                          " subject=? ORDER BY created LIMIT 1", (request_id, request_id))
        if row is None:
            return None
        d = dict(zip(_COLS, row))
        for k in ("request", "payload", "decoded"):
            d[k] = _uj(d[k])
        return d

    def set_final(self, request_id: str, final: str) -> None:
        self.db.execute("UPDATE node_statements SET final=? WHERE request_id=?", (final, request_id))

    def add_decision(self, request_id: str, approver: str, decision: str, approval: dict) -> bool:
        """Record one person's signed decision; False if they already decided."""
        try:
            self.db.execute("INSERT INTO node_decisions (request_id, approver, decision, approval,"
                            " created) VALUES (?,?,?,?,?)",
                            (request_id, approver, decision, json.dumps(approval), self.db.now()))
        except sqlite3.IntegrityError:
            return False
        return True

    def decisions(self, request_id: str) -> list[dict]:
        rows = self.db.query("SELECT approval FROM node_decisions WHERE request_id=?"
                             " ORDER BY created, approver", (request_id,))
        return [json.loads(r[0]) for r in rows]

    def last_approved_request(self, exclude_request: str) -> str | None:
        row = self.db.one("SELECT request_id FROM node_decisions WHERE request_id != ? AND"
                          " decision='approve' ORDER BY created DESC LIMIT 1", (exclude_request,))
        return row[0] if row else None
