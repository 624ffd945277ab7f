"""Is the cache file sound? SQLite's own check, then the full-text index's.

FTS5's integrity check is a write statement for SQLite, so a read-only cache runs it on a
private temporary copy: checking never writes to the file it checks.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

__all__ = ["integrity_problems"]

_FTS_CHECK = "INSERT INTO history_fts (history_fts, rank) VALUES ('integrity-check', 1)"


def integrity_problems(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> list[str]:
    """Every problem found, one line each; empty when the file is sound.

    The FTS check runs only when SQLite finds nothing (on a corrupt file it says nothing new).
    """
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return [f"integrity_check failed: {exc}"]
    problems = [str(r[0]) for r in rows if r[0] != "ok"]
    if problems:
        return problems
    try:
        if readonly:
            _fts_check_on_copy(conn)
        else:
            conn.execute(_FTS_CHECK)
    except sqlite3.DatabaseError as exc:
        return [
            f"the full-text index history_fts does not match history ({exc}); rebuild it with: "
            f"sqlite-utils rebuild-fts {path} history"
        ]
    return []


def _fts_check_on_copy(conn: sqlite3.Connection) -> None:
    with tempfile.TemporaryDirectory(prefix="pdffillr-check-") as tmp:
        copy = sqlite3.connect(os.path.join(tmp, "copy.db"))
        try:
            conn.backup(copy)
            copy.execute(_FTS_CHECK)
        finally:
            copy.close()
