"""The one migration list of a node's database: numbered, each applied once in its own
transaction, recorded in the ``schema_version`` table (and mirrored in ``PRAGMA user_version``,
so code older than the database refuses to open it).

A database of the previous layout (``appliance/store.py`` recorded its one migration in
``PRAGMA user_version`` only; ``appliance/node_store.py`` and ``appliance/nonce_ledger.py``
created their tables with ``IF NOT EXISTS`` at every open) opens and migrates: its
``user_version`` counts as the migrations already applied, and migrations 2 and 3 create the
node's and the nonce ledger's tables only where they are missing. Add a migration by
appending to :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
import time

from appliance.storage.errors import StoreError

#: (what it does, its statements), in order; migration n is MIGRATIONS[n - 1]
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("core: keys, sealed secrets, prime pool, presignatures, sign requests", [
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
    ]),
    ("node: key status, operations, signer sets, statements and decisions, policy updates, "
     "used jobs and requests, usage, request marks, two-phase key changes", [
        """CREATE TABLE IF NOT EXISTS node_keys (
                key_id TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                paillier_bits INTEGER NOT NULL,
                pending_epoch INTEGER,
                updated REAL NOT NULL
            )""",
        """CREATE TABLE IF NOT EXISTS node_operations (
                op_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                key_id TEXT,
                status TEXT NOT NULL,
                actor TEXT,
                result TEXT,
                error TEXT,
                created REAL NOT NULL,
                updated REAL NOT NULL
            )""",
        """CREATE TABLE IF NOT EXISTS node_requests (
                request_id TEXT PRIMARY KEY,
                signers TEXT
            )""",
        """CREATE TABLE IF NOT EXISTS node_statements (
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
            )""",
        """CREATE INDEX IF NOT EXISTS node_statements_subject ON node_statements (subject)""",
        """CREATE TABLE IF NOT EXISTS node_decisions (
                request_id TEXT NOT NULL,
                approver TEXT NOT NULL,
                decision TEXT NOT NULL,
                approval TEXT NOT NULL,           -- the signed Approval as JSON
                created REAL NOT NULL,
                PRIMARY KEY (request_id, approver)
            )""",
        """CREATE TABLE IF NOT EXISTS node_policy_updates (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                policy_hash TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL,
                time REAL NOT NULL
            )""",
        """CREATE TABLE IF NOT EXISTS node_used_jobs (
                job_id TEXT PRIMARY KEY,          -- every job id ever run or refused here (session ids
                time REAL NOT NULL                -- are H(job id, phase): never twice)
            )""",
        """CREATE TABLE IF NOT EXISTS node_used_requests (
                request_id TEXT PRIMARY KEY,      -- a request this node signed for (or ran the key change of)
                action TEXT NOT NULL,
                key_id TEXT,
                job_id TEXT NOT NULL,
                time REAL NOT NULL
            )""",
        """CREATE INDEX IF NOT EXISTS node_used_requests_key ON node_used_requests (key_id, action, time)""",
        """CREATE TABLE IF NOT EXISTS node_usage (
                request_id TEXT NOT NULL,
                key_id TEXT NOT NULL,
                asset TEXT NOT NULL,
                amount TEXT NOT NULL,             -- decimal (wei exceed 64 bits)
                time REAL NOT NULL
            )""",
        """CREATE INDEX IF NOT EXISTS node_usage_key ON node_usage (key_id, time)""",
        """CREATE TABLE IF NOT EXISTS node_request_marks (
                request_id TEXT PRIMARY KEY,      -- a sign request reserved cluster-wide for one signer set
                key_id TEXT NOT NULL,             -- (appliance/request_use.py): every holder of the key
                signers TEXT NOT NULL,            -- records it, signers or not; comma-separated indices
                time REAL NOT NULL
            )""",
        """CREATE INDEX IF NOT EXISTS node_request_marks_key ON node_request_marks (key_id, time)""",
        """CREATE TABLE IF NOT EXISTS node_pending (
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
            )""",
        """CREATE TABLE IF NOT EXISTS node_commits (
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
            )""",
    ]),
    ("auth: RFC 9421 nonces accepted (kept across restarts)", [
        """CREATE TABLE IF NOT EXISTS auth_nonces (
                key_id TEXT NOT NULL,
                nonce TEXT NOT NULL,
                created INTEGER NOT NULL,       -- the signature's created (unix seconds)
                PRIMARY KEY (key_id, nonce)
            )""",
        """CREATE INDEX IF NOT EXISTS auth_nonces_created ON auth_nonces (created)""",
    ]),
    ("node: TLS certificate updates (rotations signed by the admin quorum)", [
        """CREATE TABLE IF NOT EXISTS node_cert_updates (
                version INTEGER PRIMARY KEY,      -- the cluster's certificate update counter
                node_id TEXT NOT NULL,
                tls_cert_sha256 TEXT NOT NULL,
                body TEXT NOT NULL,               -- the signed update as JSON
                time REAL NOT NULL
            )""",
    ]),
    ("node: request claims, one per (initiator, nonce): the idempotency key, cluster-wide", [
        """CREATE TABLE IF NOT EXISTS node_request_claims (
                request_id TEXT PRIMARY KEY,      -- H(cluster, initiator, nonce): the first claim wins
                initiator TEXT NOT NULL,
                nonce TEXT NOT NULL,
                content TEXT NOT NULL,            -- what the first request asked for (appliance/request_claims.py)
                owner INTEGER NOT NULL,           -- the node that keeps the first request
                time REAL NOT NULL
            )""",
    ]),
    ("history: indexes for the paged listings (sign requests newest first, by key and by "
     "initiator; keys oldest first)", [
        "CREATE INDEX IF NOT EXISTS sign_requests_page ON sign_requests (created_at, request_id)",
        "CREATE INDEX IF NOT EXISTS sign_requests_key_page ON sign_requests (key_id, created_at, request_id)",
        "CREATE INDEX IF NOT EXISTS sign_requests_initiator_page ON sign_requests "
        "(initiator, created_at, request_id)",
        "CREATE INDEX IF NOT EXISTS keys_page ON keys (created_at, key_id)",
    ]),
    ("node: key versions (epochs) with their dates, kept after a key is deleted", [
        """CREATE TABLE key_versions (
                key_id TEXT NOT NULL,
                epoch INTEGER NOT NULL,
                created REAL NOT NULL,            -- its sealed share stored here
                committed REAL,                   -- put in use (every party had it)
                superseded REAL,                  -- a later epoch put in use
                destroyed REAL,                   -- its sealed share destroyed (finalize or delete)
                PRIMARY KEY (key_id, epoch)
            )""",
        """INSERT OR IGNORE INTO key_versions (key_id, epoch, created)
               SELECT key_id, epoch, min(created_at) FROM key_secrets GROUP BY key_id, epoch""",
    ]),
    ("node: each key's signature scheme (ecdsa-secp256k1, schnorr-bip340, ed25519)", [
        "ALTER TABLE node_keys ADD COLUMN scheme TEXT NOT NULL DEFAULT 'ecdsa-secp256k1'",
    ]),
    ("frost nonce pool: this node's sealed nonce pairs (own HSM key each) and the other "
     "holders' signed commitments", [
        """CREATE TABLE frost_nonces (
            nonce_id          BLOB PRIMARY KEY,
            key_id            TEXT NOT NULL,
            epoch             INTEGER NOT NULL,
            party             INTEGER NOT NULL,
            holder            INTEGER NOT NULL,   -- the one coordinator its commitment went to
            d_commit          BLOB NOT NULL,
            e_commit          BLOB NOT NULL,
            signature         BLOB NOT NULL,
            sealed            BLOB,
            hsm_key_label     TEXT NOT NULL UNIQUE,
            state             TEXT NOT NULL DEFAULT 'available'
                              CHECK (state IN ('available', 'spent')),
            picked            INTEGER NOT NULL DEFAULT 0,
            created_at        REAL NOT NULL,
            spent_at          REAL,
            hsm_key_destroyed INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX frost_nonces_key ON frost_nonces (key_id, epoch, holder, state, picked, created_at)",
        """CREATE TABLE frost_commitments (
            party      INTEGER NOT NULL,
            nonce_id   BLOB NOT NULL,
            key_id     TEXT NOT NULL,
            epoch      INTEGER NOT NULL,
            d_commit   BLOB NOT NULL,
            e_commit   BLOB NOT NULL,
            signature  BLOB NOT NULL,
            state      TEXT NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'used')),
            created_at REAL NOT NULL,
            PRIMARY KEY (party, nonce_id)
        )""",
        "CREATE INDEX frost_commitments_key ON frost_commitments (key_id, epoch, party, state, created_at)",
    ]),
    ("node: passkey (WebAuthn) assertions accepted, with their sign counters (issue 17)", [
        """CREATE TABLE node_passkey_assertions (
            credential_id TEXT NOT NULL,       -- base64url, as the policy names it
            assertion_id  TEXT NOT NULL,       -- SHA-256 hex of the assertion's bytes
            counter       INTEGER NOT NULL,    -- the authenticator's sign counter (0: none kept)
            time          REAL NOT NULL,
            PRIMARY KEY (credential_id, assertion_id)
        )""",
    ]),
    ("node: pooled aux-info per committee and each key's binding to one (issue 18)", [
        """CREATE TABLE aux_info (
            aux_id      TEXT PRIMARY KEY,
            committee   TEXT NOT NULL,         -- sorted node indices, JSON
            bits        INTEGER NOT NULL,
            fingerprint BLOB NOT NULL,         -- hash of the public data every party holds
            sealed      BLOB NOT NULL,         -- PooledAux, sealed (kind aux, key id = aux id)
            keys_bound  INTEGER NOT NULL DEFAULT 0 CHECK (keys_bound >= 0),
            created_at  REAL NOT NULL
        )""",
        "CREATE INDEX aux_info_committee ON aux_info (committee, bits, keys_bound)",
        """CREATE TABLE aux_bindings (
            key_id   TEXT PRIMARY KEY,
            aux_id   TEXT NOT NULL REFERENCES aux_info (aux_id),
            bound_at REAL NOT NULL
        )""",
    ]),
    ("node: the key state a commit decision names (each party compares it with what it prepared)", [
        "ALTER TABLE node_commits ADD COLUMN fingerprint TEXT",
    ]),
]
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    applied REAL NOT NULL
)"""


def current_version(db: sqlite3.Connection) -> int:
    """The migrations applied: the newest in ``schema_version`` or, for a database of the
    previous layout (no rows there), ``PRAGMA user_version``."""
    legacy = db.execute("PRAGMA user_version").fetchone()[0]
    has_table = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                           "name = 'schema_version'").fetchone() is not None
    recorded = db.execute("SELECT max(version) FROM schema_version").fetchone()[0] if has_table else None
    return max(legacy, recorded or 0)


def migrate(db: sqlite3.Connection) -> int:
    """Bring the database up to :data:`SCHEMA_VERSION`; call inside a write transaction.
    Returns the version it started from. A database newer than this code is refused."""
    version = current_version(db)
    if version > SCHEMA_VERSION:
        raise StoreError(f"database schema version {version} is newer than this code "
                         f"({SCHEMA_VERSION})")
    db.execute(_VERSION_TABLE)
    now = time.time()
    for v in range(1, version + 1):  # applied by the previous layout: recorded as such
        db.execute("INSERT OR IGNORE INTO schema_version VALUES (?, ?, ?)",
                   (v, MIGRATIONS[v - 1][0] + " (previous layout)", now))
    for v in range(version + 1, SCHEMA_VERSION + 1):
        name, statements = MIGRATIONS[v - 1]
        for stmt in statements:
            db.execute(stmt)
        db.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (v, name, now))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return version
