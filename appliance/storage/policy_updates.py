"""Policy updates the node accepted, in order (the policy in force is the base file with
these applied, each verified again at start-up)."""

from __future__ import annotations

import json

from appliance.storage.database import Database


class PolicyUpdateRepository:
    """``node_policy_updates``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, policy_hash: str, body: dict) -> None:
        self.db.execute("INSERT OR IGNORE INTO node_policy_updates (policy_hash, body, time)"
                        " VALUES (?,?,?)", (policy_hash, json.dumps(body), self.db.now()))

    def all(self) -> list[dict]:
        return [json.loads(r[0]) for r in
                self.db.query("SELECT body FROM node_policy_updates ORDER BY seq")]
