"""Keys: the key record (threshold, participants, public key, chain code, epoch), its
sealed secrets per epoch, and the node's status of each key (pending, active, retired)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from appliance.storage.database import Database
from appliance.storage.errors import ConflictError, DuplicateKeyError, NotFoundError
from appliance.storage.records import SECRET_KINDS, KeyRecord, require_sealed


class KeyRepository:
    """``keys`` and ``key_secrets``."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        now = self.db.now()
        try:
            with self.db.tx() as db:
                db.execute(
                    "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key_id, threshold, parts, bytes(public_key), bytes(chain_code), epoch, now),
                )
        except sqlite3.IntegrityError:
            raise DuplicateKeyError(f"key {key_id!r} already exists") from None
        return self.get_key(key_id)

    def get_key(self, key_id: str) -> KeyRecord:
        rows = self.db.query("SELECT * FROM keys WHERE key_id = ?", (key_id,))
        if not rows:
            raise NotFoundError(f"no key {key_id!r}")
        return self._key(rows[0])

    def list_keys(self) -> list[KeyRecord]:
        return [self._key(r) for r in self.db.query("SELECT * FROM keys ORDER BY created_at, key_id")]

    def page_keys(self, *, status: str | tuple[str, ...] | None = None, after: tuple[float, str] | None = None,
                  limit: int = 100) -> list[KeyRecord]:
        """Up to ``limit`` keys, oldest first by (created_at, key_id), strictly after ``after``;
        ``status``: the node's status (or one of the statuses) of the key (``node_keys``)."""
        sql = "SELECT k.* FROM keys k"
        args: list = []
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            sql += f" JOIN node_keys n ON n.key_id = k.key_id AND n.status IN ({','.join('?' * len(statuses))})"
            args += statuses
        if after is not None:
            sql += " WHERE (k.created_at, k.key_id) > (?, ?)"
            args += [after[0], after[1]]
        sql += " ORDER BY k.created_at, k.key_id LIMIT ?"
        return [self._key(r) for r in self.db.query(sql, [*args, limit])]

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
        with self.db.tx() as db:
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
            rows.append((key_id, epoch, kind, require_sealed(value, f"the {kind}"), self.db.now()))
        try:
            with self.db.tx() as db:
                db.executemany("INSERT INTO key_secrets VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc):
                raise NotFoundError(f"no key {key_id!r}") from None
            raise ConflictError(f"secrets of key {key_id!r} epoch {epoch} already stored") from None

    def put_sealed_secret(self, key_id: str, epoch: int, kind: str, sealed: bytes) -> None:
        self.put_sealed_secrets(key_id, epoch, {kind: sealed})

    def get_sealed_secret(self, key_id: str, epoch: int, kind: str) -> bytes:
        rows = self.db.query(
            "SELECT sealed FROM key_secrets WHERE key_id = ? AND epoch = ? AND kind = ?",
            (key_id, epoch, kind),
        )
        if not rows:
            raise NotFoundError(f"no sealed {kind} for key {key_id!r} epoch {epoch}")
        return rows[0][0]

    def get_sealed_secrets(self, key_id: str, epoch: int) -> dict[str, bytes]:
        return dict(self.db.query(
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
        with self.db.tx() as db:
            return db.execute(
                f"DELETE FROM key_secrets WHERE key_id = ? AND {where}", (key_id, arg)
            ).rowcount

    def delete_key(self, key_id: str) -> list[str]:
        """Delete a key that never came into use (an unfinished DKG, import or reshare to a
        new member) with its sealed secrets and presignatures. Returns the HSM key labels of
        its presignatures whose keys are not recorded as destroyed (destroy them, then
        nothing of the key is left). A key that sign requests refer to is a
        :class:`ConflictError` (its history stays); an unknown key is :class:`NotFoundError`."""
        with self.db.tx() as db:
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


class KeyStatusRepository:
    """``node_keys``: the node's life-cycle status of a key, its Paillier size and the epoch
    of a refresh/reshare not yet committed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, key_id: str, status: str, paillier_bits: int, scheme: str = "ecdsa-secp256k1") -> None:
        self.db.execute("INSERT INTO node_keys (key_id, status, paillier_bits, updated, scheme) VALUES (?,?,?,?,?)",
                        (key_id, status, paillier_bits, self.db.now(), scheme))

    def set_status(self, key_id: str, status: str, *, clear_pending_epoch: bool = False) -> None:
        sql = "UPDATE node_keys SET status=?, updated=?" + (", pending_epoch=NULL" if clear_pending_epoch else "")
        self.db.execute(sql + " WHERE key_id=?", (status, self.db.now(), key_id))

    def set_pending_epoch(self, key_id: str, epoch: int | None) -> None:
        self.db.execute("UPDATE node_keys SET pending_epoch=?, updated=? WHERE key_id=?",
                        (epoch, self.db.now(), key_id))

    def status(self, key_id: str) -> str | None:
        row = self.db.one("SELECT status FROM node_keys WHERE key_id=?", (key_id,))
        return row[0] if row else None

    def pending_epoch(self, key_id: str) -> int | None:
        row = self.db.one("SELECT pending_epoch FROM node_keys WHERE key_id=?", (key_id,))
        return row[0] if row else None

    def meta(self, key_id: str) -> tuple[str, int, str] | None:
        """(status, paillier_bits, scheme), or None for a key the node has no status of."""
        row = self.db.one("SELECT status, paillier_bits, scheme FROM node_keys WHERE key_id=?", (key_id,))
        return (row[0], row[1], row[2]) if row else None

    def all_meta(self) -> dict[str, tuple[str, int, str]]:
        return {r[0]: (r[1], r[2], r[3]) for r in
                self.db.query("SELECT key_id, status, paillier_bits, scheme FROM node_keys")}

    def with_status(self, status: str) -> list[str]:
        return [r[0] for r in self.db.query("SELECT key_id FROM node_keys WHERE status=?", (status,))]

    def with_pending_epoch(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self.db.query(
            "SELECT key_id, pending_epoch FROM node_keys WHERE pending_epoch IS NOT NULL")]

    def delete(self, key_id: str) -> None:
        self.db.execute("DELETE FROM node_keys WHERE key_id=?", (key_id,))


class KeyVersionRepository:
    """``key_versions``: each epoch of a key this node held, with its dates (created, put in
    use, superseded by a later epoch, its sealed share destroyed). Kept after a delete."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def created(self, key_id: str, epoch: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO key_versions (key_id, epoch, created) VALUES (?,?,?)",
                        (key_id, epoch, self.db.now()))

    def committed(self, key_id: str, epoch: int) -> None:
        """``epoch`` is in use; earlier epochs are superseded."""
        now = self.db.now()
        self.created(key_id, epoch)
        self.db.execute("UPDATE key_versions SET committed=? WHERE key_id=? AND epoch=? AND committed IS NULL",
                        (now, key_id, epoch))
        self.db.execute("UPDATE key_versions SET superseded=? WHERE key_id=? AND epoch<? AND superseded IS NULL",
                        (now, key_id, epoch))

    def destroyed(self, key_id: str, *, before_epoch: int | None = None) -> None:
        """The sealed shares of epochs before ``before_epoch`` (None: of every epoch) are gone."""
        now = self.db.now()
        sql = "UPDATE key_versions SET destroyed=? WHERE key_id=? AND destroyed IS NULL"
        args: tuple = (now, key_id)
        if before_epoch is not None:
            sql, args = sql + " AND epoch<?", (*args, before_epoch)
        self.db.execute(sql, args)

    def superseded(self, key_id: str) -> None:
        self.db.execute("UPDATE key_versions SET superseded=? WHERE key_id=? AND superseded IS NULL",
                        (self.db.now(), key_id))

    def dropped(self, key_id: str, epoch: int) -> None:
        """A pending epoch never put in use (its change was abandoned): no version."""
        self.db.execute("DELETE FROM key_versions WHERE key_id=? AND epoch=? AND committed IS NULL",
                        (key_id, epoch))

    def of(self, key_id: str) -> list[dict]:
        return [{"epoch": r[0], "created": r[1], "committed": r[2], "superseded": r[3], "destroyed": r[4]}
                for r in self.db.query("SELECT epoch, created, committed, superseded, destroyed FROM key_versions"
                                       " WHERE key_id=? ORDER BY epoch", (key_id,))]
