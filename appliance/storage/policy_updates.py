"""Policy updates the node accepted, in order (the policy in force is the base file with
these applied, each verified again at start-up), and the TLS certificate updates (rotations)."""

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


class CertUpdateRepository:
    """``node_cert_updates``: one row per version of the cluster's certificate updates."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, version: int, node_id: str, fingerprint: str, body: dict) -> None:
        self.db.execute("INSERT INTO node_cert_updates (version, node_id, tls_cert_sha256, body, time)"
                        " VALUES (?,?,?,?,?)", (version, node_id, fingerprint, json.dumps(body), self.db.now()))

    def all(self) -> list[dict]:
        return [json.loads(r[0]) for r in self.db.query("SELECT body FROM node_cert_updates ORDER BY version")]
