"""Nested write transactions over one SQLite connection in autocommit mode, guarded by one
re-entrant lock: the outermost is ``BEGIN IMMEDIATE`` ... ``COMMIT``, an inner one a savepoint
(released on success, rolled back to on error), so a method that opens its own transaction can
be part of a larger one. Used by :class:`appliance.storage.Database` (``node.db``, which also
holds the audit log) and :class:`appliance.audit.connection.OwnConnection` (a standalone audit
file)."""

from __future__ import annotations

import collections
import contextlib
import inspect
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: frames of these files are the transaction machinery, not the code that asked for a commit
_MACHINERY = (contextlib.__file__, __file__)


def commit_site(extra: tuple[str, ...] = ()) -> str:
    """The function that asked for the commit under way (``module.function``, e.g.
    ``presignatures.take_presignature``): the first caller outside the transaction machinery
    (this module, :mod:`contextlib`, ``extra`` files and generator frames). A fixed set of code sites, so a
    low-cardinality metric label."""
    skip = _MACHINERY + extra
    f = sys._getframe(1)
    # a generator frame is a context manager's body (``Recorder.together``, a store's
    # ``transaction()``): the site is the code that entered it
    while f is not None and (f.f_code.co_filename in skip or f.f_code.co_flags & inspect.CO_GENERATOR):
        f = f.f_back
    if f is None:  # pragma: no cover - always called from some caller
        return "unknown"
    module = f.f_globals.get("__name__", "?").rsplit(".", 1)[-1]
    return f"{module}.{f.f_code.co_name}"


class NestedTransactions:
    """Mix-in: set ``self.conn`` (autocommit) and call ``NestedTransactions.__init__``."""

    conn: sqlite3.Connection
    savepoint_prefix = "sp"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        #: called with the seconds each commit took (its fsyncs: synchronous=FULL) and its
        #: :func:`commit_site`: the node's metrics (``appliance_sign_stage_duration_seconds
        #: {stage="sqlite_commit"}``, ``appliance_sqlite_commits_total{site}``)
        self.on_commit: Callable[[float, str], None] | None = None
        #: commits that wrote, so far, by :func:`commit_site` (outermost transactions and
        #: autocommitted writes; one that changed no row writes nothing and is not counted):
        #: what a test or the bench reads to count a signature's fsyncs
        self.commits: collections.Counter[str] = collections.Counter()
        #: source files that are transaction machinery too (a subclass's own module)
        self.machinery_files: tuple[str, ...] = ()

    def _committed(self, seconds: float) -> None:
        site = commit_site(self.machinery_files)
        self.commits[site] += 1
        if self.on_commit is not None:
            self.on_commit(seconds, site)

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
            changes = db.total_changes
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
            if db.total_changes != changes:  # a commit that wrote nothing writes no WAL frame: no fsync
                self._committed(time.perf_counter() - t0)
