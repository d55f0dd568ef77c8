"""Nested write transactions over one SQLite connection in autocommit mode, guarded by one
re-entrant lock: the outermost is ``BEGIN IMMEDIATE`` ... ``COMMIT``, an inner one a savepoint
(released on success, rolled back to on error), so a method that opens its own transaction can
be part of a larger one. Used by :class:`appliance.storage.Database` (``node.db``, which also
holds the audit log) and :class:`appliance.audit.connection.OwnConnection` (a standalone audit
file)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class NestedTransactions:
    """Mix-in: set ``self.conn`` (autocommit) and call ``NestedTransactions.__init__``."""

    conn: sqlite3.Connection
    savepoint_prefix = "sp"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        #: called with the seconds each outermost COMMIT took (its fsyncs: synchronous=FULL);
        #: the node's metrics (``appliance_sign_stage_duration_seconds{stage="sqlite_commit"}``)
        self.on_commit: Callable[[float], None] | None = None

    @contextmanager
    def nested_tx(self, *, alone: Exception | None = None) -> Iterator[sqlite3.Connection]:
        """``alone``: raised (under the lock, so another thread's transaction has ended by
        then) if this would be nested inside another transaction of this thread."""
        with self._lock:
            db, depth = self.conn, self._depth
            if alone is not None and depth:
                raise alone
            name = f"{self.savepoint_prefix}{depth}"
            db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
            self._depth = depth + 1
            try:
                yield db
            except BaseException:
                self._depth = depth
                try:
                    if depth == 0:
                        db.execute("ROLLBACK")
                    else:
                        db.execute(f"ROLLBACK TO {name}")
                        db.execute(f"RELEASE {name}")
                except sqlite3.Error:
                    pass  # the connection already rolled back (e.g. a failed COMMIT): the error is raised below
                raise
            self._depth = depth
            if depth:
                db.execute(f"RELEASE {name}")
                return
            t0 = time.perf_counter()
            db.execute("COMMIT")
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - t0)
