"""The FROST nonce pool: this node's pooled nonce pairs and the other holders' commitments.

``frost_nonces`` (this node's pairs, one row each): available -> spent, never backwards. The
secret pair is a sealed blob under the pair's OWN HSM key (``appliance/nonce/<id>``, AAD
binding node, key, epoch, kind ``frost_nonce``, id, D||E and the owner's index). Each pair's
commitment goes to ONE coordinator, its ``holder`` (this node itself, or the one other holder
it was published to), so two coordinators never offer the same pair; ``picked`` records that
this node, as the coordinator, handed its own pair's commitment out (not offered twice;
spending still needs the row to be available).

* :meth:`take_frost_nonce` moves the named pair of (key, epoch, party, D, E) to *spent* in
  one durable transaction (``synchronous=FULL``: on disk when it returns) and only then
  returns its sealed blob (cleared from the row). The caller opens it with
  ``consume_presignature_async`` (which destroys the HSM key) and only then computes its
  signature share. A spent, unknown or mismatching pair is :class:`FrostNonceUnavailable`.
  So after a crash at any point a pair may be lost, never used twice; and a database restored
  from an old copy shows the pair available, but its HSM key is gone: it cannot be opened.
* Keys of spent pairs whose destruction is not recorded are listed with the presignatures'
  (:meth:`frost_nonce_keys_to_destroy`) and destroyed by the node at start-up.

``frost_commitments`` (published by the other holders, identity-signed): available -> used.
A coordinator picks one available commitment per signer and marks it used durably before the
job leaves (:meth:`pick_frost_commitments`), so it never offers one twice; the signers check
the signatures themselves.

Refresh, reshare and delete discard the pool of older epochs (:meth:`discard_frost_nonces`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.sealed import SealContext
from appliance.storage.database import Database
from appliance.storage.errors import ConflictError, StoreError
from appliance.storage.records import key_epochs_where, require_sealed


class FrostNonceUnavailable(StoreError):
    """The nonce pair is spent, unknown here, or not the one named (key, epoch, commitments)."""

    code = "nonce_unavailable"


@dataclass(frozen=True)
class PooledRow:
    """A pooled commitment as stored (this node's or a peer's): the public part only."""

    party: int
    nonce_id: bytes
    D: bytes
    E: bytes
    signature: bytes


@dataclass(frozen=True)
class TakenNonce:
    """A nonce pair spent (durably) in this store: open ``sealed`` under ``context``."""

    nonce_id: bytes
    key_id: str
    epoch: int
    party: int
    D: bytes
    E: bytes
    sealed: bytes
    hsm_key_label: str

    @property
    def context(self) -> SealContext:
        return SealContext.frost_nonce(self.key_id, self.epoch, self.nonce_id, self.D + self.E, self.party)


class FrostNonceRepository:
    """``frost_nonces`` and ``frost_commitments``."""

    db: Database

    def add_frost_nonce(self, nonce_id: bytes, *, key_id: str, epoch: int, party: int, holder: int, D: bytes,
                        E: bytes, signature: bytes, sealed: bytes, hsm_key_label: str) -> None:
        blob = require_sealed(sealed, "a nonce pair")
        try:
            with self.db.tx() as db:
                db.execute(
                    "INSERT INTO frost_nonces (nonce_id, key_id, epoch, party, holder, d_commit, e_commit, "
                    "signature, sealed, hsm_key_label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (bytes(nonce_id), key_id, epoch, party, holder, bytes(D), bytes(E), bytes(signature), blob,
                     hsm_key_label, self.db.now()))
        except sqlite3.IntegrityError:
            raise ConflictError("this nonce pair (or its HSM key label) exists") from None

    def add_frost_commitments(self, key_id: str, epoch: int, rows: Iterable[PooledRow]) -> int:
        """Store other holders' signed commitments (already checked); a repeat is ignored."""
        with self.db.tx() as db:
            n = 0
            for r in rows:
                cur = db.execute(
                    "INSERT OR IGNORE INTO frost_commitments (party, nonce_id, key_id, epoch, d_commit, e_commit, "
                    "signature, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.party, bytes(r.nonce_id), key_id, epoch, bytes(r.D), bytes(r.E), bytes(r.signature),
                     self.db.now()))
                n += cur.rowcount
        return n

    def count_frost_nonces(self, key_id: str, epoch: int | None = None, *, holder: int | None = None,
                           unpicked: bool = False) -> int:
        """This node's available nonce pairs of the key (at ``epoch``, for ``holder``)."""
        sql = "SELECT count(*) FROM frost_nonces WHERE key_id = ? AND state = 'available'"
        args: list = [key_id]
        if epoch is not None:
            sql += " AND epoch = ?"
            args.append(epoch)
        if holder is not None:
            sql += " AND holder = ?"
            args.append(holder)
        if unpicked:
            sql += " AND picked = 0"
        return self.db.query(sql, args)[0][0]

    def count_frost_commitments(self, key_id: str, epoch: int) -> dict[int, int]:
        """Available commitments of the other holders, per party."""
        return {r[0]: r[1] for r in self.db.query(
            "SELECT party, count(*) FROM frost_commitments WHERE key_id = ? AND epoch = ? AND state = 'available' "
            "GROUP BY party", (key_id, epoch))}

    def pick_frost_commitments(self, key_id: str, epoch: int, own: int, parties: Iterable[int]) -> list[PooledRow] | None:
        """The coordinator's choice: one pooled commitment per party (this node's own pair for
        ``own``), each marked handed out durably before it returns; None (nothing marked) if
        any party has none."""
        out = []
        with self.db.tx(durable=True) as db:
            for p in sorted(set(parties)):
                if p == own:
                    row = db.execute(
                        "SELECT party, nonce_id, d_commit, e_commit, signature FROM frost_nonces WHERE key_id = ? "
                        "AND epoch = ? AND party = ? AND holder = party AND state = 'available' AND picked = 0 "
                        "ORDER BY created_at, nonce_id LIMIT 1", (key_id, epoch, p)).fetchone()
                else:
                    row = db.execute(
                        "SELECT party, nonce_id, d_commit, e_commit, signature FROM frost_commitments WHERE "
                        "key_id = ? AND epoch = ? AND party = ? AND state = 'available' "
                        "ORDER BY created_at, nonce_id LIMIT 1", (key_id, epoch, p)).fetchone()
                if row is None:
                    return None  # nothing was marked
                out.append(PooledRow(*row))
            for r in out:
                if r.party == own:
                    db.execute("UPDATE frost_nonces SET picked = 1 WHERE nonce_id = ?", (r.nonce_id,))
                else:
                    db.execute("UPDATE frost_commitments SET state = 'used' WHERE party = ? AND nonce_id = ?",
                               (r.party, r.nonce_id))
        return out

    def take_frost_nonce(self, nonce_id: bytes, *, key_id: str, epoch: int, party: int, D: bytes,
                         E: bytes, holder: int) -> TakenNonce:
        """Spend this node's pair ``nonce_id`` of exactly (key, epoch, party, D, E), in a job
        coordinated by ``holder``: durably marked spent before the sealed blob is returned.
        :class:`FrostNonceUnavailable` if it is spent, unknown, another pair's, or published to
        another coordinator (left available for that one)."""
        with self.db.tx(durable=True) as db:
            row = db.execute(
                "SELECT state, sealed, hsm_key_label, holder FROM frost_nonces WHERE nonce_id = ? AND key_id = ? "
                "AND epoch = ? AND party = ? AND d_commit = ? AND e_commit = ?",
                (bytes(nonce_id), key_id, epoch, party, bytes(D), bytes(E))).fetchone()
            if row is None:
                raise FrostNonceUnavailable("no such nonce pair of this key, epoch and party on this node")
            if row[3] != holder:
                raise FrostNonceUnavailable("this nonce pair was published to another coordinator")
            if row[0] != "available":
                raise FrostNonceUnavailable("this nonce pair is spent")
            db.execute("UPDATE frost_nonces SET state = 'spent', sealed = NULL, spent_at = ? WHERE nonce_id = ?",
                       (self.db.now(), bytes(nonce_id)))
        # committed (durable) before the blob is handed out
        return TakenNonce(bytes(nonce_id), key_id, epoch, party, bytes(D), bytes(E), row[1], row[2])

    def discard_frost_nonces(self, key_id: str, *, before_epoch: int | None = None) -> list[str]:
        """Spend (without use) this node's pairs of the key (all, or of epochs before
        ``before_epoch``) and drop the peers' commitments of those epochs; returns the HSM
        key labels to destroy."""
        where, args = key_epochs_where(key_id, before_epoch)
        with self.db.tx() as db:
            rows = db.execute(
                f"UPDATE frost_nonces SET state = 'spent', sealed = NULL, spent_at = ? "
                f"WHERE {where} AND state != 'spent' RETURNING hsm_key_label", (self.db.now(), *args)).fetchall()
            db.execute(f"DELETE FROM frost_commitments WHERE {where}", args)
        return [r[0] for r in rows]

    def discard_frost_nonce_ids(self, nonce_ids: Iterable[bytes]) -> list[str]:
        """Spend (without use) these pairs of this node (a publication that failed); returns
        the HSM key labels to destroy."""
        with self.db.tx() as db:
            out = []
            for nid in nonce_ids:
                row = db.execute("UPDATE frost_nonces SET state = 'spent', sealed = NULL, spent_at = ? WHERE "
                                 "nonce_id = ? AND state != 'spent' RETURNING hsm_key_label",
                                 (self.db.now(), bytes(nid))).fetchone()
                if row is not None:
                    out.append(row[0])
        return out

    def frost_nonce_keys_to_destroy(self) -> list[str]:
        return [r[0] for r in self.db.query(
            "SELECT hsm_key_label FROM frost_nonces WHERE state = 'spent' AND hsm_key_destroyed = 0 "
            "ORDER BY spent_at")]

    def mark_frost_nonce_keys_destroyed(self, labels: Iterable[str]) -> None:
        with self.db.tx() as db:
            db.executemany("UPDATE frost_nonces SET hsm_key_destroyed = 1 WHERE hsm_key_label = ? AND hsm_key_destroyed = 0 "
                           "AND state = 'spent'", [(lb,) for lb in labels])

    def frost_nonce_state(self, nonce_id: bytes) -> str | None:
        rows = self.db.query("SELECT state FROM frost_nonces WHERE nonce_id = ?", (bytes(nonce_id),))
        return rows[0][0] if rows else None
