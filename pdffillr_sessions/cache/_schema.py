"""Which schema a cache file has, read without importing sqlite-utils.

The migrations themselves live in ``_migrations`` (a sqlite-utils registry, ~70 ms to import);
opening an up-to-date file only needs their names, listed here. A test checks both lists agree.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .._exceptions import CacheError

__all__ = ["KNOWN_MIGRATIONS", "LEAN_HISTORY", "MIGRATION_SET", "applied_migrations"]

MIGRATION_SET = "pdffillr_sessions"
#: The migration names of ``_migrations.migrations``, in order.
KNOWN_MIGRATIONS: tuple[str, ...] = (
    "m001_initial_schema",
    "m002_opened_by",
    "m003_fts_hashsize",
    "m004_server_and_owner_lock",
    "m005_lean_history",
)
#: The first migration whose history rows are lean (``_lean``): older files hold whole objects.
LEAN_HISTORY = "m005_lean_history"


def _user_tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {r[0] for r in rows}


def applied_migrations(conn: sqlite3.Connection, path: Path) -> list[str]:
    """Applied migration names of our set; raises CacheError for foreign or newer files."""
    try:
        tables = _user_tables(conn)
        applied: list[str] = []
        if "_sqlite_migrations" in tables:
            applied = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid",
                    (MIGRATION_SET,),
                )
            ]
    except sqlite3.DatabaseError as exc:
        raise CacheError(f"{path} is not a usable pdffillr-sessions cache ({exc})") from None
    unknown = [name for name in applied if name not in KNOWN_MIGRATIONS]
    if unknown:
        raise CacheError(
            f"{path} was written by a newer version of pdffillr-sessions (unknown schema "
            f"migration{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}): refusing to "
            "downgrade; upgrade pdffillr-sessions or use another cache path"
        )
    if not applied and tables:
        raise CacheError(
            f"{path} is an SQLite database of something else (tables: "
            f"{', '.join(sorted(tables)[:5])}): not a pdffillr-sessions cache"
        )
    return applied
