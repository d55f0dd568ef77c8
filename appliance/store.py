"""A node's durable state on SQLite: keys, sealed secrets, the sealed prime pool,
presignatures and sign requests (approvals are the node's: :mod:`appliance.node_store`).

Every secret reaches the store already sealed by the node's HSM (:mod:`hsm`): values are
opaque bytes here, and the store refuses one that does not even parse as a sealed blob
(:class:`NotSealedError`), so a plaintext cannot be stored by mistake.

SQLite settings: WAL journal, ``synchronous=FULL`` (a commit is on disk when it returns,
which the presignature rule below relies on), foreign keys on, ``secure_delete`` on,
a busy timeout so several connections (threads or processes) can share the file.
Schema changes are numbered migrations recorded in ``PRAGMA user_version``; a database
newer than this code is refused.

Presignatures: available -> reserved -> spent, or available -> spent. Never backwards.

* :meth:`Store.take_presignature` moves one available presignature of (key, signer set)
  to *spent* in one IMMEDIATE transaction, commits (fsync), and only then returns its
  sealed blob and HSM key label. Two takers never get the same one.
* :meth:`Store.reserve_presignature` moves one to *reserved*, bound to this Store object
  (a random ``instance_id``); :meth:`Store.spend_reserved` moves it on to *spent* and
  returns the blob - only for the same Store object. A process that dies holding a
  reservation leaves it reserved for ever: no other Store can spend it, and
  :meth:`Store.burn_stale_reservations` (called by the node at start-up) turns it into
  *spent*. So after a crash at any point a presignature may be lost, never used twice.
* Spending returns the blob and clears it from the row. The caller then unseals it with
  the presignature's own HSM key and destroys that key
  (:meth:`hsm.HSM.consume_presignature`), records that
  (:meth:`Store.mark_presignature_keys_destroyed`), and only then computes its partial
  signature. Keys of spent presignatures whose destruction was not recorded (crash, HSM
  away) are listed by :meth:`Store.presignature_keys_to_destroy`; the node destroys them
  at start-up (:func:`appliance.presig_keys.destroy_spent_presignature_keys`). Because the key is gone, a database restored from an old copy cannot
  unseal a spent presignature.

The node's sequence::

    taken = store.take_presignature(key_id, signer_set)            # durable: spent
    secret = await hsm.consume_presignature_async(taken.context, taken.sealed)
    store.mark_presignature_keys_destroyed([taken.hsm_key_label])
    ... compute and send the partial signature ...
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from appliance.errors import ApplianceError
from appliance.sealed import SealContext, canonical_signer_set, looks_sealed

# --------------------------------------------------------------------------- errors


class StoreError(ApplianceError):
    code = "store_error"


class NotFoundError(StoreError, KeyError):
    code = "not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConflictError(StoreError):
    code = "conflict"


class NotSealedError(StoreError, ValueError):
    """A value given as sealed does not parse as a sealed blob."""

    code = "not_sealed"


class PresignatureUnavailable(StoreError):
    """The presignature is not (or no longer) available to this caller."""

    code = "presignature_unavailable"


# --------------------------------------------------------------------------- records

SECRET_KINDS = ("share", "paillier", "ring_pedersen")
REQUEST_STATUSES = ("pending", "approved", "rejected", "signing", "signed", "failed", "expired")


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    threshold: int
    participants: tuple
    public_key: bytes
    chain_code: bytes
    epoch: int
    created_at: float


@dataclass(frozen=True)
class PresignatureRecord:
    """A presignature's public metadata (no blob)."""

    presig_id: bytes
    key_id: str
    epoch: int
    signer_set: tuple[int, ...]
    R: bytes
    hsm_key_label: str
    state: str
    created_at: float
    hsm_key_destroyed: bool


@dataclass(frozen=True)
class TakenPresignature:
    """A presignature durably marked spent, with what is needed to unseal it once."""

    presig_id: bytes
    key_id: str
    epoch: int
    signer_set: tuple[int, ...]
    R: bytes
    sealed: bytes
    hsm_key_label: str

    @property
    def context(self) -> SealContext:
        return SealContext.presignature(
            self.key_id, self.epoch, self.presig_id, self.R, self.signer_set
        )


@dataclass(frozen=True)
class Reservation:
    presig_id: bytes
    key_id: str
    epoch: int
    signer_set: tuple[int, ...]
    R: bytes
    request_id: str | None


@dataclass(frozen=True)
class SignRequest:
    request_id: str
    key_id: str
    initiator: str
    digest: bytes | None
    derivation_path: str | None
    payload: bytes | None
    payload_type: str | None
    request: bytes | None
    status: str
    result: bytes | None
    error: str | None
    presig_id: bytes | None
    created_at: float
    updated_at: float


# --------------------------------------------------------------------------- schema

MIGRATIONS: list[list[str]] = [
    # 1: initial schema
    [
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
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def _ss(signer_set: Iterable[int]) -> str:
    return ",".join(str(i) for i in canonical_signer_set(signer_set))


def _ss_parse(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def _sealed(value: Any, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or not looks_sealed(bytes(value)):
        raise NotSealedError(f"{what} must be a sealed blob (hsm.HSM.seal), not raw bytes")
    return bytes(value)


# --------------------------------------------------------------------------- store


class Store:
    """One connection to the node's database. Thread-safe (one lock per Store); several
    Store objects (threads, processes) may share a file."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.instance_id = secrets.token_hex(16)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), timeout=busy_timeout, isolation_level=None,
            check_same_thread=False,
        )
        try:
            self._configure(busy_timeout)
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    # -- connection ------------------------------------------------------------------
    def _configure(self, busy_timeout: float) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot put {str(self.path)!r} in WAL mode")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA secure_delete = ON")

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {version} is newer than this code "
                    f"({SCHEMA_VERSION})"
                )
            for v in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[v]:
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version = {v + 1}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE (takes the write lock up front), COMMIT
        on success (durable with synchronous=FULL), ROLLBACK on error."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _q(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (e.g. before copying the file)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def backup_to(self, path: str | Path) -> None:
        """A consistent copy of the database at ``path`` (SQLite online backup)."""
        dst = sqlite3.connect(str(path))
        try:
            with self._lock:
                self._db.backup(dst)
        finally:
            dst.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- keys ------------------------------------------------------------------------
    def put_key(
        self,
        key_id: str,
        *,
        threshold: int,
        participants: Sequence,
        public_key: bytes,
        chain_code: bytes,
        epoch: int = 0,
    ) -> KeyRecord:
        if not key_id:
            raise ValueError("key_id is required")
        if not 1 <= threshold <= len(participants):
            raise ValueError("threshold must be between 1 and the number of participants")
        parts = json.dumps(list(participants))
        now = time.time()
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key_id, threshold, parts, bytes(public_key), bytes(chain_code), epoch, now),
                )
        except sqlite3.IntegrityError:
            raise ConflictError(f"key {key_id!r} already exists") from None
        return self.get_key(key_id)

    def get_key(self, key_id: str) -> KeyRecord:
        rows = self._q("SELECT * FROM keys WHERE key_id = ?", (key_id,))
        if not rows:
            raise NotFoundError(f"no key {key_id!r}")
        return self._key(rows[0])

    def list_keys(self) -> list[KeyRecord]:
        return [self._key(r) for r in self._q("SELECT * FROM keys ORDER BY created_at, key_id")]

    @staticmethod
    def _key(r: tuple) -> KeyRecord:
        return KeyRecord(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6])

    def set_key_epoch(
        self, key_id: str, epoch: int, *, expected: int, participants: Sequence | None = None,
        threshold: int | None = None,
    ) -> KeyRecord:
        """Move a key to a new epoch (refresh/reshare) if it is still at ``expected``."""
        if epoch <= expected:
            raise ValueError("a new epoch must be greater than the current one")
        with self._tx() as db:
            row = db.execute("SELECT epoch FROM keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no key {key_id!r}")
            if row[0] != expected:
                raise ConflictError(f"key {key_id!r} is at epoch {row[0]}, not {expected}")
            db.execute("UPDATE keys SET epoch = ? WHERE key_id = ?", (epoch, key_id))
            if participants is not None:
                db.execute("UPDATE keys SET participants = ? WHERE key_id = ?",
                           (json.dumps(list(participants)), key_id))
            if threshold is not None:
                db.execute("UPDATE keys SET threshold = ? WHERE key_id = ?", (threshold, key_id))
        return self.get_key(key_id)

    # -- sealed secrets per key and epoch --------------------------------------------
    def put_sealed_secrets(self, key_id: str, epoch: int, sealed: dict[str, bytes]) -> None:
        """Store sealed secrets of ``key_id`` at ``epoch`` (kinds: share, paillier,
        ring_pedersen) in one transaction. Replacing an existing one is a conflict."""
        rows = []
        for kind, value in sealed.items():
            if kind not in SECRET_KINDS:
                raise ValueError(f"unknown secret kind {kind!r}")
            rows.append((key_id, epoch, kind, _sealed(value, f"the {kind}"), time.time()))
        try:
            with self._tx() as db:
                db.executemany("INSERT INTO key_secrets VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc):
                raise NotFoundError(f"no key {key_id!r}") from None
            raise ConflictError(f"secrets of key {key_id!r} epoch {epoch} already stored") from None

    def put_sealed_secret(self, key_id: str, epoch: int, kind: str, sealed: bytes) -> None:
        self.put_sealed_secrets(key_id, epoch, {kind: sealed})

    def get_sealed_secret(self, key_id: str, epoch: int, kind: str) -> bytes:
        rows = self._q(
            "SELECT sealed FROM key_secrets WHERE key_id = ? AND epoch = ? AND kind = ?",
            (key_id, epoch, kind),
        )
        if not rows:
            raise NotFoundError(f"no sealed {kind} for key {key_id!r} epoch {epoch}")
        return rows[0][0]

    def get_sealed_secrets(self, key_id: str, epoch: int) -> dict[str, bytes]:
        return dict(self._q(
            "SELECT kind, sealed FROM key_secrets WHERE key_id = ? AND epoch = ?", (key_id, epoch)
        ))

    def delete_sealed_secrets(self, key_id: str, *, before_epoch: int | None = None,
                              epoch: int | None = None) -> int:
        """Forget sealed secrets of ``key_id``: those of epochs before ``before_epoch`` (after a
        refresh or reshare has been confirmed by every member), or those of exactly ``epoch``
        (the pending epoch of a refresh that did not finish). Give exactly one of them.
        Returns the number of secrets deleted (``secure_delete`` overwrites them)."""
        if (before_epoch is None) == (epoch is None):
            raise ValueError("give exactly one of before_epoch and epoch")
        if before_epoch is not None:
            where, arg = "epoch < ?", before_epoch
        else:
            where, arg = "epoch = ?", epoch
        with self._tx() as db:
            return db.execute(
                f"DELETE FROM key_secrets WHERE key_id = ? AND {where}", (key_id, arg)
            ).rowcount

    def delete_key(self, key_id: str) -> list[str]:
        """Delete a key that never came into use (an unfinished DKG, import or reshare to a
        new member) with its sealed secrets and presignatures. Returns the HSM key labels of
        its presignatures whose keys are not recorded as destroyed (destroy them, then
        nothing of the key is left). A key that sign requests refer to is a
        :class:`ConflictError` (its history stays); an unknown key is :class:`NotFoundError`."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM keys WHERE key_id = ?", (key_id,)).fetchone() is None:
                raise NotFoundError(f"no key {key_id!r}")
            if db.execute("SELECT 1 FROM sign_requests WHERE key_id = ? LIMIT 1",
                          (key_id,)).fetchone() is not None:
                raise ConflictError(f"key {key_id!r} has sign requests; it cannot be deleted")
            labels = [r[0] for r in db.execute(
                "SELECT hsm_key_label FROM presignatures WHERE key_id = ? AND hsm_key_destroyed = 0",
                (key_id,))]
            db.execute("DELETE FROM key_secrets WHERE key_id = ?", (key_id,))
            db.execute("DELETE FROM presignatures WHERE key_id = ?", (key_id,))
            db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
        return labels

    # -- sealed prime pool -----------------------------------------------------------
    def add_sealed_primes(self, bits: int, sealed: Iterable[bytes]) -> int:
        now = time.time()
        rows = [(bits, _sealed(s, "a prime"), now) for s in sealed]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO prime_pool (bits, sealed, created_at) VALUES (?, ?, ?)", rows
            )
        return len(rows)

    def take_sealed_prime(self, bits: int) -> tuple[int, bytes] | None:
        """Remove and return the oldest sealed prime of ``bits`` bits (each is handed
        out once; lost if the caller crashes before using it)."""
        with self._tx() as db:
            row = db.execute(
                "DELETE FROM prime_pool WHERE id = (SELECT id FROM prime_pool WHERE bits = ? "
                "ORDER BY id LIMIT 1) RETURNING id, sealed", (bits,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def count_sealed_primes(self, bits: int) -> int:
        return self._q("SELECT count(*) FROM prime_pool WHERE bits = ?", (bits,))[0][0]

    # -- presignatures ---------------------------------------------------------------
    def add_presignature(
        self,
        presig_id: bytes,
        *,
        key_id: str,
        epoch: int,
        signer_set: Iterable[int],
        R: bytes,
        sealed: bytes,
        hsm_key_label: str,
    ) -> None:
        """Record a presignature sealed under its own HSM key (``hsm_key_label``)."""
        ss = _ss(signer_set)
        blob = _sealed(sealed, "a presignature")
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO presignatures (presig_id, key_id, epoch, signer_set, r_point, "
                    "sealed, hsm_key_label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (bytes(presig_id), key_id, epoch, ss, bytes(R), blob, hsm_key_label,
                     time.time()),
                )
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc):
                raise NotFoundError(f"no key {key_id!r}") from None
            raise ConflictError("this presignature (or its HSM key label) exists") from None

    _PRESIG_COLS = ("presig_id, key_id, epoch, signer_set, r_point, hsm_key_label, state, "
                    "created_at, hsm_key_destroyed")

    def get_presignature(self, presig_id: bytes) -> PresignatureRecord:
        rows = self._q(
            f"SELECT {self._PRESIG_COLS} FROM presignatures WHERE presig_id = ?",
            (bytes(presig_id),),
        )
        if not rows:
            raise NotFoundError("no such presignature")
        r = rows[0]
        return PresignatureRecord(r[0], r[1], r[2], _ss_parse(r[3]), r[4], r[5], r[6], r[7],
                                  bool(r[8]))

    def list_presignatures(
        self, key_id: str, *, state: str | None = None
    ) -> list[PresignatureRecord]:
        sql = f"SELECT {self._PRESIG_COLS} FROM presignatures WHERE key_id = ?"
        args: list = [key_id]
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        return [
            PresignatureRecord(r[0], r[1], r[2], _ss_parse(r[3]), r[4], r[5], r[6], r[7],
                               bool(r[8]))
            for r in self._q(sql + " ORDER BY created_at", args)
        ]

    def count_presignatures(
        self, key_id: str, signer_set: Iterable[int] | None = None, *, state: str = "available",
        epoch: int | None = None,
    ) -> int:
        sql = "SELECT count(*) FROM presignatures WHERE key_id = ? AND state = ?"
        args: list = [key_id, state]
        if signer_set is not None:
            sql += " AND signer_set = ?"
            args.append(_ss(signer_set))
        if epoch is not None:
            sql += " AND epoch = ?"
            args.append(epoch)
        return self._q(sql, args)[0][0]

    def take_presignature(
        self, key_id: str, signer_set: Iterable[int], *, epoch: int | None = None
    ) -> TakenPresignature | None:
        """Atomically mark one available presignature of (key, signer set[, epoch])
        spent, commit durably, and return its sealed blob and HSM key label; None if
        there is none. Unseal it with :meth:`hsm.HSM.consume_presignature`."""
        where = "key_id = ? AND signer_set = ? AND state = 'available'"
        args: list = [key_id, _ss(signer_set)]
        if epoch is not None:
            where += " AND epoch = ?"
            args.append(epoch)
        return self._take(where, args)

    def take_presignature_by_id(self, presig_id: bytes) -> TakenPresignature:
        """Spend a given presignature: available, or reserved by this Store object.
        :class:`PresignatureUnavailable` otherwise (spent, reserved by someone else)."""
        taken = self._take(
            "presig_id = ? AND (state = 'available' OR (state = 'reserved' AND reserved_by = ?))",
            [bytes(presig_id), self.instance_id],
        )
        if taken is None:
            raise PresignatureUnavailable("this presignature is spent or reserved elsewhere")
        return taken

    def _take(self, where: str, args: Sequence) -> TakenPresignature | None:
        with self._tx() as db:
            # Read the blob first, inside the same write transaction (nobody else can
            # change the row until COMMIT), then spend it, which clears the blob.
            row = db.execute(
                f"SELECT presig_id, sealed FROM presignatures WHERE {where} "
                f"ORDER BY created_at, presig_id LIMIT 1", args,
            ).fetchone()
            if row is None:
                return None
            presig_id, sealed = row
            spent = db.execute(
                "UPDATE presignatures SET state = 'spent', sealed = NULL, spent_at = ? "
                "WHERE presig_id = ? RETURNING presig_id, key_id, epoch, signer_set, "
                "r_point, hsm_key_label", (time.time(), presig_id),
            ).fetchone()
        # committed (durable) before the blob is handed out
        return TakenPresignature(spent[0], spent[1], spent[2], _ss_parse(spent[3]), spent[4],
                                 sealed, spent[5])

    def reserve_presignature(
        self,
        key_id: str,
        signer_set: Iterable[int],
        *,
        request_id: str | None = None,
        presig_id: bytes | None = None,
    ) -> Reservation | None:
        """Move one available presignature (or the given one) to *reserved*, bound to
        this Store object; None if there is none. A reservation never goes back to
        available: it is spent (:meth:`spend_reserved`) or burnt."""
        where = "key_id = ? AND signer_set = ? AND state = 'available'"
        args: list = [key_id, _ss(signer_set)]
        if presig_id is not None:
            where += " AND presig_id = ?"
            args.append(bytes(presig_id))
        with self._tx() as db:
            row = db.execute(
                f"UPDATE presignatures SET state = 'reserved', reserved_by = ?, "
                f"request_id = ?, reserved_at = ? WHERE presig_id = (SELECT presig_id FROM "
                f"presignatures WHERE {where} ORDER BY created_at, presig_id LIMIT 1) "
                f"RETURNING presig_id, key_id, epoch, signer_set, r_point, request_id",
                (self.instance_id, request_id, time.time(), *args),
            ).fetchone()
        if row is None:
            return None
        return Reservation(row[0], row[1], row[2], _ss_parse(row[3]), row[4], row[5])

    def spend_reserved(self, presig_id: bytes) -> TakenPresignature:
        """Spend a presignature this Store object reserved (durably, before returning)."""
        taken = self._take(
            "presig_id = ? AND state = 'reserved' AND reserved_by = ?",
            [bytes(presig_id), self.instance_id],
        )
        if taken is None:
            raise PresignatureUnavailable("no reservation of this presignature by this store")
        return taken

    def burn_stale_reservations(self) -> list[str]:
        """Reservations made by other Store objects (a process that died) become spent.
        Returns the HSM key labels to destroy. Call at node start-up, before serving."""
        with self._tx() as db:
            rows = db.execute(
                "UPDATE presignatures SET state = 'spent', sealed = NULL, spent_at = ? "
                "WHERE state = 'reserved' AND reserved_by IS NOT ? RETURNING hsm_key_label",
                (time.time(), self.instance_id),
            ).fetchall()
        return [r[0] for r in rows]

    def discard_presignatures(self, key_id: str, *, before_epoch: int | None = None) -> list[str]:
        """Spend (without use) the unspent presignatures of a key (all, or those of
        epochs before ``before_epoch``); returns HSM key labels to destroy."""
        where = "key_id = ? AND state != 'spent'"
        args: list = [key_id]
        if before_epoch is not None:
            where += " AND epoch < ?"
            args.append(before_epoch)
        with self._tx() as db:
            rows = db.execute(
                f"UPDATE presignatures SET state = 'spent', sealed = NULL, spent_at = ? "
                f"WHERE {where} RETURNING hsm_key_label", (time.time(), *args),
            ).fetchall()
        return [r[0] for r in rows]

    def presignature_keys_to_destroy(self) -> list[str]:
        """HSM key labels of spent presignatures whose key destruction is not recorded."""
        return [r[0] for r in self._q(
            "SELECT hsm_key_label FROM presignatures WHERE state = 'spent' "
            "AND hsm_key_destroyed = 0 ORDER BY spent_at"
        )]

    def mark_presignature_keys_destroyed(self, labels: Iterable[str]) -> None:
        labels = list(labels)
        with self._tx() as db:
            db.executemany(
                "UPDATE presignatures SET hsm_key_destroyed = 1 "
                "WHERE hsm_key_label = ? AND state = 'spent'", [(lb,) for lb in labels],
            )

    # -- sign requests ----------------------------------------------------------------
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
        now = time.time()
        try:
            with self._tx() as db:
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
        rows = self._q(f"SELECT {self._REQ_COLS} FROM sign_requests WHERE request_id = ?",
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
        return [SignRequest(*r) for r in self._q(sql + " ORDER BY created_at", args)]

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
        with self._tx() as db:
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
                (status, result, error, presig_id, time.time(), request_id),
            )
        return self.get_sign_request(request_id)

    def note_presignature(self, request_id: str, presig_id: bytes) -> None:
        """Record which stored presignature a request's signature used (its status is
        left alone)."""
        with self._tx() as db:
            db.execute("UPDATE sign_requests SET presig_id = ?, updated_at = ? WHERE request_id = ?",
                       (bytes(presig_id), time.time(), request_id))
