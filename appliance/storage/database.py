"""One SQLite connection for a process role (a node process opens one for its ``node.db``),
configured once, migrated once, shared by every repository.

Settings: WAL journal, ``synchronous=FULL`` (a commit is on disk when it returns, which the
presignature rule and the replay tables rely on), foreign keys on, ``secure_delete`` on, a
busy timeout so several connections (threads or processes) can share the file.

The connection is in autocommit mode and guarded by one re-entrant lock: every statement
runs under it, so a statement of one thread never lands inside another thread's open
transaction. :meth:`Database.tx` is a write transaction (``BEGIN IMMEDIATE``); nested, it is
a savepoint, so a repository method that opens its own transaction can be part of a larger
one (a state change and what belongs with it commit together or not at all).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance.sqlite_tx import NestedTransactions
from appliance.storage.errors import StoreError
from appliance.storage.migrations import migrate


class Database(NestedTransactions):
    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock() -> float``: Unix seconds for every row's timestamp (the node passes its
        injected clock, so a rate window and the rows it counts read the same time)."""
        self.path = Path(path)
        self.now = clock
        NestedTransactions.__init__(self)
        self.machinery_files = (__file__,)
        self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None,
                                    check_same_thread=False)
        try:
            self._configure(busy_timeout)
            with self.tx() as db:
                migrate(db)
        except BaseException:
            self.conn.close()
            raise

    def _configure(self, busy_timeout: float) -> None:
        db = self.conn
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot put {str(self.path)!r} in WAL mode")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA secure_delete = ON")

    def tx(self, *, durable: bool = False):
        """A write transaction: BEGIN IMMEDIATE (takes the write lock up front), COMMIT on
        success (durable with synchronous=FULL), ROLLBACK on error. Inside another one on
        this thread: a savepoint, released on success and rolled back to on error
        (:class:`appliance.sqlite_tx.NestedTransactions`).
        ``durable``: the caller relies on the commit being on disk when this returns (a
        presignature spent before it is used): refused inside another transaction."""
        alone = StoreError("a durable write must commit on its own, not inside a transaction") if durable else None
        return self.nested_tx(alone=alone)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.conn.execute(sql, args).fetchall()

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple | None:
        with self._lock:
            return self.conn.execute(sql, args).fetchone()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement on its own (autocommitted, or part of this thread's transaction);
        returns the number of rows it changed. Outside a transaction a write is a commit of
        its own (fsynced), counted in :attr:`commits` like a transaction's."""
        with self._lock:
            if self._depth:
                return self.conn.execute(sql, args).rowcount
            before = self.conn.total_changes
            t0 = time.perf_counter()
            n = self.conn.execute(sql, args).rowcount
            if self.conn.total_changes != before:
                self._committed(time.perf_counter() - t0)
            return n

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (e.g. before copying the file)."""
        with self._lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def backup_to(self, path: str | Path) -> None:
        """A consistent copy of the database at ``path`` (SQLite online backup)."""
        dst = sqlite3.connect(str(path))
        try:
            with self._lock:
                self.conn.backup(dst)
        finally:
            dst.close()
