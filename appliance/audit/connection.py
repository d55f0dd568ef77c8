"""Where an :class:`appliance.audit.AuditLog` keeps its tables: a *transaction provider*.

A provider is any object with

* ``tx()``: a context manager for a write transaction that yields a ``sqlite3.Connection``;
  opened inside another transaction of the same provider it nests (a savepoint), so an
  audit entry written inside a larger transaction commits or rolls back with it;
* ``query(sql, args) -> list[tuple]``: one read, under the same lock.

A node passes its one :class:`appliance.storage.Database` (``node.db``), which is such a
provider (duck-typed: this package does not import the storage layer). Standalone use (the
CLI, tests, a legacy ``audit.db`` file) gets :class:`OwnConnection`, a provider over a
connection of its own with the same rules.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from appliance.sqlite_tx import NestedTransactions


class TxProvider(Protocol):
    def tx(self) -> Any: ...  # a context manager yielding a sqlite3.Connection

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]: ...


class OwnConnection(NestedTransactions):
    """A transaction provider over one connection: opened here from a path (WAL,
    ``synchronous=FULL``; :meth:`close` closes it), or given (autocommit mode,
    ``isolation_level=None``; left open). One re-entrant lock; nested ``tx()`` are savepoints."""

    def __init__(self, db: str | Path | sqlite3.Connection, *, busy_timeout: float = 10.0) -> None:
        NestedTransactions.__init__(self)
        self.owned = not isinstance(db, sqlite3.Connection)
        if self.owned:
            self.conn = sqlite3.connect(str(db), timeout=busy_timeout, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
        else:
            if db.isolation_level is not None:
                raise ValueError("give AuditLog a connection with isolation_level=None")
            self.conn = db

    def tx(self):
        """A write transaction; nested: a savepoint (:class:`appliance.sqlite_tx.NestedTransactions`)."""
        return self.nested_tx()

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        if self.owned:
            with self._lock:
                self.conn.close()
