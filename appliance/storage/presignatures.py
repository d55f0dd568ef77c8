"""Presignatures: available -> reserved -> spent, or available -> spent. Never backwards.
See :mod:`appliance.storage` for the rule that makes a presignature single-use."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from appliance.storage.database import Database
from appliance.storage.errors import ConflictError, NotFoundError, PresignatureUnavailable
from appliance.storage.records import (
    PresignatureRecord,
    Reservation,
    TakenPresignature,
    key_epochs_where,
    parse_signer_set,
    require_sealed,
    signer_set_text,
)


class PresignatureRepository:
    """``presignatures``. A reservation is bound to this object (its ``instance_id``)."""

    def __init__(self, db: Database, instance_id: str) -> None:
        self.db = db
        self.instance_id = instance_id

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
        ss = signer_set_text(signer_set)
        blob = require_sealed(sealed, "a presignature")
        try:
            with self.db.tx() as db:
                db.execute(
                    "INSERT INTO presignatures (presig_id, key_id, epoch, signer_set, r_point, "
                    "sealed, hsm_key_label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (bytes(presig_id), key_id, epoch, ss, bytes(R), blob, hsm_key_label,
                     self.db.now()),
                )
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc):
                raise NotFoundError(f"no key {key_id!r}") from None
            raise ConflictError("this presignature (or its HSM key label) exists") from None

    _PRESIG_COLS = ("presig_id, key_id, epoch, signer_set, r_point, hsm_key_label, state, "
                    "created_at, hsm_key_destroyed")

    def get_presignature(self, presig_id: bytes) -> PresignatureRecord:
        rows = self.db.query(
            f"SELECT {self._PRESIG_COLS} FROM presignatures WHERE presig_id = ?",
            (bytes(presig_id),),
        )
        if not rows:
            raise NotFoundError("no such presignature")
        r = rows[0]
        return PresignatureRecord(r[0], r[1], r[2], parse_signer_set(r[3]), r[4], r[5], r[6], r[7],
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
            PresignatureRecord(r[0], r[1], r[2], parse_signer_set(r[3]), r[4], r[5], r[6], r[7],
                               bool(r[8]))
            for r in self.db.query(sql + " ORDER BY created_at", args)
        ]

    def count_presignatures(
        self, key_id: str, signer_set: Iterable[int] | None = None, *, state: str = "available",
        epoch: int | None = None,
    ) -> int:
        sql = "SELECT count(*) FROM presignatures WHERE key_id = ? AND state = ?"
        args: list = [key_id, state]
        if signer_set is not None:
            sql += " AND signer_set = ?"
            args.append(signer_set_text(signer_set))
        if epoch is not None:
            sql += " AND epoch = ?"
            args.append(epoch)
        return self.db.query(sql, args)[0][0]

    def take_presignature(
        self, key_id: str, signer_set: Iterable[int], *, epoch: int | None = None
    ) -> TakenPresignature | None:
        """Atomically mark one available presignature of (key, signer set[, epoch])
        spent, commit durably, and return its sealed blob and HSM key label; None if
        there is none. Unseal it with :meth:`hsm.HSM.consume_presignature`."""
        where = "key_id = ? AND signer_set = ? AND state = 'available'"
        args: list = [key_id, signer_set_text(signer_set)]
        if epoch is not None:
            where += " AND epoch = ?"
            args.append(epoch)
        return self._take(where, args)

    def take_presignature_by_id(self, presig_id: bytes, *, key_id: str | None = None,
                                signer_set: Iterable[int] | None = None,
                                epoch: int | None = None) -> TakenPresignature:
        """Spend a given presignature: available, or reserved by this Store object, and (when
        given) of exactly this key, signer set and epoch -- a presignature of anything else is
        not touched. :class:`PresignatureUnavailable` otherwise (spent, reserved by someone
        else, or not the one asked for)."""
        where = "presig_id = ? AND (state = 'available' OR (state = 'reserved' AND reserved_by = ?))"
        args: list = [bytes(presig_id), self.instance_id]
        for column, value in (("key_id", key_id), ("epoch", epoch),
                              ("signer_set", None if signer_set is None else signer_set_text(signer_set))):
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)
        taken = self._take(where, args)
        if taken is None:
            raise PresignatureUnavailable("this presignature is spent or reserved elsewhere")
        return taken

    def _take(self, where: str, args: Sequence) -> TakenPresignature | None:
        with self.db.tx(durable=True) as db:
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
                "r_point, hsm_key_label", (self.db.now(), presig_id),
            ).fetchone()
        # committed (durable) before the blob is handed out
        return TakenPresignature(spent[0], spent[1], spent[2], parse_signer_set(spent[3]), spent[4],
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
        args: list = [key_id, signer_set_text(signer_set)]
        if presig_id is not None:
            where += " AND presig_id = ?"
            args.append(bytes(presig_id))
        with self.db.tx() as db:
            row = db.execute(
                f"UPDATE presignatures SET state = 'reserved', reserved_by = ?, "
                f"request_id = ?, reserved_at = ? WHERE presig_id = (SELECT presig_id FROM "
                f"presignatures WHERE {where} ORDER BY created_at, presig_id LIMIT 1) "
                f"RETURNING presig_id, key_id, epoch, signer_set, r_point, request_id",
                (self.instance_id, request_id, self.db.now(), *args),
            ).fetchone()
        if row is None:
            return None
        return Reservation(row[0], row[1], row[2], parse_signer_set(row[3]), row[4], row[5])

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
        with self.db.tx() as db:
            rows = db.execute(
                "UPDATE presignatures SET state = 'spent', sealed = NULL, spent_at = ? "
                "WHERE state = 'reserved' AND reserved_by IS NOT ? RETURNING hsm_key_label",
                (self.db.now(), self.instance_id),
            ).fetchall()
        return [r[0] for r in rows]

    def discard_presignatures(self, key_id: str, *, before_epoch: int | None = None) -> list[str]:
        """Spend (without use) the unspent presignatures of a key (all, or those of
        epochs before ``before_epoch``); returns HSM key labels to destroy."""
        where, args = key_epochs_where(key_id, before_epoch)
        with self.db.tx() as db:
            rows = db.execute(
                f"UPDATE presignatures SET state = 'spent', sealed = NULL, spent_at = ? "
                f"WHERE {where} AND state != 'spent' RETURNING hsm_key_label", (self.db.now(), *args),
            ).fetchall()
        return [r[0] for r in rows]

    def presignature_keys_to_destroy(self) -> list[str]:
        """HSM key labels of spent presignatures whose key destruction is not recorded."""
        return [r[0] for r in self.db.query(
            "SELECT hsm_key_label FROM presignatures WHERE state = 'spent' "
            "AND hsm_key_destroyed = 0 ORDER BY spent_at"
        )]

    def mark_presignature_keys_destroyed(self, labels: Iterable[str]) -> None:
        labels = list(labels)
        with self.db.tx() as db:
            db.executemany(
                "UPDATE presignatures SET hsm_key_destroyed = 1 "
                "WHERE hsm_key_label = ? AND state = 'spent' AND hsm_key_destroyed = 0", [(lb,) for lb in labels],
            )
