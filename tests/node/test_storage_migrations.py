"""appliance.storage: one migration list recorded in schema_version; a database of the
previous layout (appliance/store.py, node_store.py, nonce_ledger.py before issue 13) opens and
migrates; one connection for the node; a state change commits whole or not at all."""

from __future__ import annotations

import os
import sqlite3

import pytest

from appliance.storage import MIGRATIONS, SCHEMA_VERSION, Database, NodeStore, NotFoundError, StoreError


def fake_sealed() -> bytes:
    """A syntactically valid sealed blob (never unsealed here)."""
    return bytes([1, 13]) + b"appliance/kek" + os.urandom(12 + 40)


# ---- the previous layout, copied verbatim from the code before issue 13 (fixtures) ----------

# appliance/store.py MIGRATIONS[0], recorded as PRAGMA user_version = 1
LEGACY_CORE = [
        """CREATE TABLE keys (
            key_id       TEXT PRIMARY KEY,
            threshold    INTEGER NOT NULL CHECK (threshold >= 1),
            participants TEXT NOT NULL,
            public_key   BLOB NOT NULL,
            chain_code   BLOB NOT NULL,
            epoch        INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
            created_at   REAL NOT NULL
        )""",
        """CREATE TABLE key_secrets (
            key_id     TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            epoch      INTEGER NOT NULL,
            kind       TEXT NOT NULL CHECK (kind IN ('share', 'paillier', 'ring_pedersen')),
            sealed     BLOB NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (key_id, epoch, kind)
        )""",
        """CREATE TABLE prime_pool (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            bits       INTEGER NOT NULL,
            sealed     BLOB NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX prime_pool_bits ON prime_pool (bits, id)",
        """CREATE TABLE presignatures (
            presig_id         BLOB PRIMARY KEY,
            key_id            TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            epoch             INTEGER NOT NULL,
            signer_set        TEXT NOT NULL,
            r_point           BLOB NOT NULL,
            sealed            BLOB,
            hsm_key_label     TEXT NOT NULL UNIQUE,
            state             TEXT NOT NULL DEFAULT 'available'
                              CHECK (state IN ('available', 'reserved', 'spent')),
            reserved_by       TEXT,
            request_id        TEXT,
            created_at        REAL NOT NULL,
            reserved_at       REAL,
            spent_at          REAL,
            hsm_key_destroyed INTEGER NOT NULL DEFAULT 0,
            CHECK ((state = 'spent') = (sealed IS NULL))
        )""",
        "CREATE INDEX presig_pick ON presignatures (key_id, signer_set, state, created_at)",
        "CREATE INDEX presig_destroy ON presignatures (state, hsm_key_destroyed)",
        """CREATE TABLE sign_requests (
            request_id      TEXT PRIMARY KEY,
            key_id          TEXT NOT NULL REFERENCES keys(key_id),
            initiator       TEXT NOT NULL,
            digest          BLOB,
            derivation_path TEXT,
            payload         BLOB,
            payload_type    TEXT,
            request         BLOB,
            status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                            ('pending', 'approved', 'rejected', 'signing', 'signed',
                             'failed', 'expired')),
            result          BLOB,
            error           TEXT,
            presig_id       BLOB,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL
        )""",
        "CREATE INDEX sign_requests_status ON sign_requests (status, created_at)",
        # unused since the node keeps signed decisions (node_decisions); kept because
        # migration 1 is history: dropping it would be a migration of its own
        """CREATE TABLE approvals (
            request_id TEXT NOT NULL REFERENCES sign_requests(request_id) ON DELETE CASCADE,
            user       TEXT NOT NULL,
            role       TEXT NOT NULL,
            decision   TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
            evidence   BLOB NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (request_id, user)
        )""",
]
# appliance/node_store.py: executed with IF NOT EXISTS at every open (no version)
LEGACY_NODE_SCHEMA = """CREATE TABLE IF NOT EXISTS node_keys (
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
LEGACY_POLICY_SCHEMA = """CREATE TABLE IF NOT EXISTS node_statements (
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
LEGACY_DURABLE_SCHEMA = """CREATE TABLE IF NOT EXISTS node_used_jobs (
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
LEGACY_LIFECYCLE_SCHEMA = """CREATE TABLE IF NOT EXISTS node_pending (
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
# appliance/nonce_ledger.py
LEGACY_NONCE_SCHEMA = """CREATE TABLE IF NOT EXISTS auth_nonces (
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created INTEGER NOT NULL,       -- the signature's created (unix seconds)
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX IF NOT EXISTS auth_nonces_created ON auth_nonces (created);
"""


def legacy_database(path) -> None:
    """A node.db as the previous code left it, with a row in most tables."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for stmt in LEGACY_CORE:
        db.execute(stmt)
    db.execute("PRAGMA user_version = 1")
    for script in (LEGACY_NODE_SCHEMA, LEGACY_LIFECYCLE_SCHEMA, LEGACY_POLICY_SCHEMA,
                   LEGACY_DURABLE_SCHEMA, LEGACY_NONCE_SCHEMA):
        db.executescript(script)
    db.execute("INSERT INTO keys VALUES ('key-1', 2, '[1, 2, 3]', ?, ?, 0, 1.0)",
               (b"\x02" + b"\x01" * 32, b"\x07" * 32))
    db.execute("INSERT INTO key_secrets VALUES ('key-1', 0, 'share', ?, 1.0)", (fake_sealed(),))
    db.execute("INSERT INTO node_keys VALUES ('key-1', 'active', 2048, NULL, 1.0)")
    db.execute("INSERT INTO sign_requests (request_id, key_id, initiator, digest, status,"
               " created_at, updated_at) VALUES ('req_1', 'key-1', 'alice', ?, 'signed', 1.0, 2.0)",
               (b"\x11" * 32,))
    db.execute("INSERT INTO node_requests VALUES ('req_1', '[\"node-1\", \"node-2\"]')")
    db.execute("INSERT INTO node_operations VALUES ('op_1', 'keygen', 'key-1', 'done', 'admin',"
               " NULL, NULL, 1.0, 2.0)")
    db.execute("INSERT INTO node_used_jobs VALUES ('job-1', 1.0)")
    db.execute("INSERT INTO node_policy_updates (policy_hash, body, time) VALUES ('h1', '{\"v\": 2}', 1.0)")
    db.execute("INSERT INTO auth_nonces VALUES ('alice', 'n-1', 1700000000)")
    db.close()


def versions(path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        db.close()


def test_a_database_of_the_previous_layout_opens_and_migrates(tmp_path):
    path = tmp_path / "node.db"
    legacy_database(path)
    store = NodeStore(path)
    try:
        key = store.get_key("key-1")
        assert (key["status"], key["paillier_bits"], key["participants"]) == ("active", 2048, [1, 2, 3])
        assert store.share_blob("key-1", 0)[:2] == bytes([1, 13])
        req = store.get_sign_request("req_1")
        assert (req["status"], req["signers"]) == ("signed", ["node-1", "node-2"])
        assert store.get_operation("op_1")["status"] == "done"
        assert store.job_id_used("job-1") and not store.use_job_id("job-1")
        assert store.policy_updates() == [{"v": 2}]
        assert not store.nonces.check_and_add("alice", "n-1", 1700000000, forget_before=0)
        assert store.database.schema_version == SCHEMA_VERSION == len(MIGRATIONS) == 12
    finally:
        store.close()
    db = sqlite3.connect(path)
    names = [r[0] for r in db.execute("SELECT name FROM schema_version ORDER BY version")]
    db.close()
    assert names[0].endswith("(previous layout)") and not names[1].endswith("(previous layout)")
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))
    NodeStore(path).close()  # applied once: opening again changes nothing
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))


def test_a_new_database_records_every_migration_once(tmp_path):
    path = tmp_path / "node.db"
    NodeStore(path).close()
    NodeStore(path).close()
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))


def test_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "node.db"
    NodeStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(StoreError, match="newer than this code"):
        NodeStore(path)


def test_the_node_store_opens_one_connection(tmp_path, monkeypatch):
    opened = []
    real = sqlite3.connect

    def counting(*a, **kw):
        opened.append(a[0] if a else kw.get("database"))
        return real(*a, **kw)

    monkeypatch.setattr(sqlite3, "connect", counting)
    NodeStore(tmp_path / "node.db").close()
    assert opened == [str(tmp_path / "node.db")]


def test_a_pending_key_is_stored_whole_or_not_at_all(tmp_path):
    """put_pending_key writes the key, its sealed share and its status: a failure in the
    last step leaves no half-made key behind (the key and share were committed before)."""
    store = NodeStore(tmp_path / "node.db")
    try:
        store.database.execute("INSERT INTO node_keys (key_id, status, paillier_bits, updated)"
                               " VALUES ('key-1', 'abandoned', 2048, 0)")  # a leftover row
        with pytest.raises(sqlite3.IntegrityError):
            store.put_pending_key("key-1", b"\x02" + b"\x01" * 32, 2, [1, 2, 3], 0, 2048,
                                  fake_sealed(), b"\x07" * 32)
        with pytest.raises(NotFoundError):
            store.core.get_key("key-1")
        assert store.core.get_sealed_secrets("key-1", 0) == {}
    finally:
        store.close()


def test_nested_transactions_are_savepoints_and_durable_writes_stand_alone(tmp_path):
    db = Database(tmp_path / "node.db")
    try:
        with db.tx():
            db.execute("INSERT INTO node_used_jobs VALUES ('a', 0)")
            with pytest.raises(sqlite3.IntegrityError):
                with db.tx():
                    db.execute("INSERT INTO node_used_jobs VALUES ('b', 0)")
                    db.execute("INSERT INTO node_used_jobs VALUES ('b', 0)")
            with pytest.raises(StoreError, match="durable write must commit on its own"):
                with db.tx(durable=True):
                    pass
        assert db.query("SELECT job_id FROM node_used_jobs") == [("a",)]
    finally:
        db.close()
