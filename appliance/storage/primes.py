"""The sealed prime pool: safe primes the node generated in the background, sealed."""

from __future__ import annotations

from collections.abc import Iterable

from appliance.storage.database import Database
from appliance.storage.records import require_sealed


class PrimePool:
    """``prime_pool``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_sealed_primes(self, bits: int, sealed: Iterable[bytes]) -> int:
        now = self.db.now()
        rows = [(bits, require_sealed(s, "a prime"), now) for s in sealed]
        with self.db.tx() as db:
            db.executemany(
                "INSERT INTO prime_pool (bits, sealed, created_at) VALUES (?, ?, ?)", rows
            )
        return len(rows)

    def take_sealed_prime(self, bits: int) -> tuple[int, bytes] | None:
        """Remove and return the oldest sealed prime of ``bits`` bits (each is handed
        out once; lost if the caller crashes before using it)."""
        with self.db.tx() as db:
            row = db.execute(
                "DELETE FROM prime_pool WHERE id = (SELECT id FROM prime_pool WHERE bits = ? "
                "ORDER BY id LIMIT 1) RETURNING id, sealed", (bits,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def count_sealed_primes(self, bits: int) -> int:
        return self.db.query("SELECT count(*) FROM prime_pool WHERE bits = ?", (bits,))[0][0]
