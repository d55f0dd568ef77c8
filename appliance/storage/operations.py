"""Key operations (keygen, import, refresh, reshare, delete): an id, a status, a result."""

from __future__ import annotations

import json
from typing import Any

from appliance.storage.database import Database

_COLS = ("op_id", "kind", "key_id", "status", "actor", "result", "error", "created", "updated")


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)


def _uj(v: str | bytes | None) -> Any:
    return None if v is None else json.loads(v)


class OperationRepository:
    """``node_operations``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, op_id: str, kind: str, key_id: str | None, actor: str | None,
            status: str = "running") -> None:
        now = self.db.now()
        self.db.execute("INSERT INTO node_operations (op_id, kind, key_id, status, actor, created,"
                        " updated) VALUES (?,?,?,?,?,?,?)", (op_id, kind, key_id, status, actor, now, now))

    def finish(self, op_id: str, status: str, result: dict | None = None,
               error: dict | None = None) -> None:
        self.db.execute("UPDATE node_operations SET status=?, result=?, error=?, updated=? WHERE op_id=?",
                        (status, _j(result), _j(error), self.db.now(), op_id))

    def set_running(self, op_id: str, key_id: str | None) -> None:
        self.db.execute("UPDATE node_operations SET status='running', key_id=coalesce(?, key_id),"
                        " updated=? WHERE op_id=?", (key_id, self.db.now(), op_id))

    def pending_ids(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT op_id FROM node_operations WHERE status='pending'")]

    def get(self, op_id: str) -> dict | None:
        row = self.db.one(f"SELECT {', '.join(_COLS)} FROM node_operations WHERE op_id=?", (op_id,))
        if not row:
            return None
        d = dict(zip(_COLS, row))
        d["result"], d["error"] = _uj(d["result"]), _uj(d["error"])
        return d

    def fail_running(self, why: dict) -> None:
        """What was running when the node stopped did not finish (operations waiting for
        approvals stay pending: nothing of them was running)."""
        self.db.execute("UPDATE node_operations SET status='failed', error=?, updated=? WHERE status IN"
                        " ('running')", (_j(why), self.db.now()))
