"""The RFC 9421 nonces this node has accepted, kept in its SQLite database.

A signed client request may be sent once. The nonces of accepted requests are kept durably
(an fsynced table in the node's database) so a restart does not forget them, and a nonce is
deleted only once its request's ``created`` lies outside the acceptance window (older than
``max_age`` plus the clock skew): nothing evicted could be accepted again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.storage.database import Database


class NonceLedger:
    """``check_and_add(key_id, nonce, created, forget_before=...)``: True the first time, False
    after (durably). ``db``: the node's :class:`Database`, or a path (a ledger of its own)."""

    def __init__(self, db: Database | Path | str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # paces eviction only
        self._own = not isinstance(db, Database)
        self.db = Database(db) if self._own else db
        self._lock = threading.Lock()
        self._last_evict = 0.0

    def check_and_add(self, key_id: str, nonce: str, created: int, *, forget_before: int) -> bool:
        """Record the nonce; False if it was recorded before. ``forget_before``: the verifier
        accepts no ``created`` below this any more, so rows older than it may go."""
        now = self.clock()
        with self._lock:
            if now - self._last_evict >= 1.0:
                self.db.execute("DELETE FROM auth_nonces WHERE created < ?", (int(forget_before),))
                self._last_evict = now
            try:
                self.db.execute("INSERT INTO auth_nonces (key_id, nonce, created) VALUES (?, ?, ?)",
                                (key_id, nonce, int(created)))
            except sqlite3.IntegrityError:
                return False
            return True

    def __len__(self) -> int:
        return self.db.one("SELECT COUNT(*) FROM auth_nonces")[0]

    def close(self) -> None:
        if self._own:
            self.db.close()
