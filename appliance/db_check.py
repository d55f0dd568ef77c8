"""Whether the node's database is sound before the node opens it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def database_problem(path) -> str | None:
    """None if the node's database is sound (or new); else a clear description."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"database {path.name} is unreadable ({exc}); restore it from a backup"
    if rows != [("ok",)]:
        detail = "; ".join(str(r[0]) for r in rows[:3])
        return f"database {path.name} is corrupt ({detail}); restore it from a backup"
    return None
