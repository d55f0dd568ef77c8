"""Pooled aux-info: a committee's Paillier and ring-Pedersen data made ahead of any key
(sealed by the HSM), and which key was bound to which aux-info.

One aux-info serves at most ``cap`` keys of its committee (README, Protocol: "Aux-info made
ahead of keys"). :meth:`AuxInfoRepository.bind` counts a key against its aux-info and records
the binding in the caller's transaction (the node binds in the same transaction that stages
the key), so two keys never pass the cap together and a key is bound to exactly one aux-info.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from appliance.storage.database import Database
from appliance.storage.errors import ConflictError, DuplicateKeyError
from appliance.storage.records import require_sealed


def committee_text(parties: Sequence[int]) -> str:
    """The ordered node set as stored (sorted indices, JSON)."""
    return json.dumps(sorted(int(p) for p in parties))


class AuxInfoRepository:
    """``aux_info`` and ``aux_bindings``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_aux(self, aux_id: str, parties: Sequence[int], bits: int, fingerprint: bytes, sealed: bytes) -> None:
        try:
            with self.db.tx() as db:
                db.execute("INSERT INTO aux_info (aux_id, committee, bits, fingerprint, sealed, keys_bound, "
                           "created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                           (aux_id, committee_text(parties), int(bits), bytes(fingerprint),
                            require_sealed(sealed, "an aux-info"), self.db.now()))
        except sqlite3.IntegrityError:
            raise ConflictError(f"aux-info {aux_id!r} already exists") from None

    def get_aux(self, aux_id: str) -> dict | None:
        row = self.db.one("SELECT aux_id, committee, bits, fingerprint, sealed, keys_bound, created_at "
                          "FROM aux_info WHERE aux_id = ?", (aux_id,))
        if row is None:
            return None
        return {"aux_id": row[0], "parties": json.loads(row[1]), "bits": row[2], "fingerprint": row[3],
                "sealed": row[4], "keys_bound": row[5], "created": row[6]}

    def usable_aux(self, parties: Sequence[int], bits: int, cap: int) -> list[str]:
        """Aux-info ids of this committee and size with room for another key, fullest first
        (so one aux-info fills before the next is opened)."""
        rows = self.db.query("SELECT aux_id FROM aux_info WHERE committee = ? AND bits = ? AND keys_bound < ? "
                             "ORDER BY keys_bound DESC, created_at, aux_id", (committee_text(parties), bits, cap))
        return [r[0] for r in rows]

    def aux_room(self, parties: Sequence[int], bits: int, cap: int) -> int:
        """Keys this committee's pooled aux-info can still take."""
        row = self.db.one("SELECT coalesce(sum(? - keys_bound), 0) FROM aux_info WHERE committee = ? AND bits = ? "
                          "AND keys_bound < ?", (cap, committee_text(parties), bits, cap))
        return int(row[0]) if row else 0

    def aux_counts(self) -> dict[str, int]:
        """Aux-info records per committee (the committee's JSON text)."""
        return {r[0]: r[1] for r in self.db.query("SELECT committee, count(*) FROM aux_info GROUP BY committee")}

    def bind_aux(self, key_id: str, aux_id: str, cap: int) -> None:
        """Count ``key_id`` against ``aux_id`` (refused past ``cap``) and record the binding;
        call inside the transaction that stages the key."""
        with self.db.tx() as db:
            n = db.execute("UPDATE aux_info SET keys_bound = keys_bound + 1 WHERE aux_id = ? AND keys_bound < ?",
                           (aux_id, cap)).rowcount
            if n != 1:
                raise ConflictError(f"aux-info {aux_id!r} is unknown or serves {cap} keys already")
            try:
                db.execute("INSERT INTO aux_bindings (key_id, aux_id, bound_at) VALUES (?, ?, ?)",
                           (key_id, aux_id, self.db.now()))
            except sqlite3.IntegrityError:
                raise DuplicateKeyError(f"key {key_id!r} is bound to an aux-info already") from None

    def aux_of_key(self, key_id: str) -> str | None:
        row = self.db.one("SELECT aux_id FROM aux_bindings WHERE key_id = ?", (key_id,))
        return row[0] if row else None

    def delete_aux(self, aux_id: str) -> None:
        """An aux-info whose session did not finish at every party (no key bound to it)."""
        with self.db.tx() as db:
            db.execute("DELETE FROM aux_info WHERE aux_id = ? AND keys_bound = 0", (aux_id,))
