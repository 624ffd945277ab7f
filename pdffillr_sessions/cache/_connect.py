"""Opening a cache file: the connection, its settings, the schema check and the migrations.

A writable connection gets WAL, ``synchronous=NORMAL``, 16 KB pages (new files only) and a
32 MB page cache; pending migrations run inside one ``BEGIN IMMEDIATE`` so that several
processes opening a fresh file at once apply them exactly once. A read-only connection never
writes: an older file is read through TEMP views (``_migrations.READ_COMPAT``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._exceptions import CacheError, CacheNotFoundError
from ._files import check_file, ensure_private_file, readonly_uri, tighten_permissions
from ._schema import KNOWN_MIGRATIONS, applied_migrations

__all__ = ["BUSY_TIMEOUT_S", "connect", "prepare", "write_transaction"]

BUSY_TIMEOUT_S = 30.0
#: The page size of a new cache file. Rows of ~1 KB of text and FTS5 segment pages fit 16 KB
#: pages better than SQLite's 4 KB default: fewer pages and B-tree levels to write (measured: a
#: bulk mirror ~14 % faster, reads unchanged).
_PAGE_SIZE = 16384
#: Page cache of a writable connection (KiB, negative as SQLite wants it): a mirror of 10,000
#: entries dirties a few MB of table, index and FTS pages; the 2 MB default spills them early.
_WRITE_CACHE_KIB = 32 * 1024


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), checked file first."""
    if readonly:
        if not path.exists():
            raise CacheNotFoundError(f"no cache at {path}")
        check_file(path)
        tighten_permissions(path)
        target, uri = readonly_uri(path), True
    else:
        ensure_private_file(path)
        check_file(path)
        tighten_permissions(path)
        target, uri = str(path), False
    try:
        conn = sqlite3.connect(
            target,
            uri=uri,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise CacheError(f"cannot open the cache at {path}: {exc}") from None
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (Ctrl-C included).

    IMMEDIATE takes the write lock at once: a deferred transaction that upgrades later gets
    SQLITE_BUSY without waiting for ``busy_timeout``. BEGIN is inside the ``try``: an interrupt
    landing just after it must not leave the connection holding the write lock.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def prepare(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> tuple[str, ...]:
    """Check the schema (refusing foreign and newer files), set up and migrate; returns the
    applied migration names."""
    applied = applied_migrations(conn, path)  # read-only: refuses before anything is written
    if readonly:
        _read_older_schema(conn, path, applied)
        return tuple(applied)
    try:
        # Only a new (empty) file takes it; an existing cache keeps its page size.
        conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        _enable_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{_WRITE_CACHE_KIB}")
    except sqlite3.DatabaseError as exc:
        raise CacheError(f"cannot use the cache at {path}: {exc}") from None
    if len(applied) == len(KNOWN_MIGRATIONS):
        return tuple(applied)
    with write_transaction(conn):
        applied = applied_migrations(conn, path)  # again, under the write lock: another process
        if len(applied) < len(KNOWN_MIGRATIONS):  # may have migrated meanwhile
            from . import _migrations

            if tuple(_migrations.names()) != KNOWN_MIGRATIONS:  # pragma: no cover
                raise RuntimeError("_schema.KNOWN_MIGRATIONS is out of date")
            _migrations.apply(conn)
            applied = applied_migrations(conn, path)
    return tuple(applied)


def _read_older_schema(conn: sqlite3.Connection, path: Path, applied: list[str]) -> None:
    missing = KNOWN_MIGRATIONS[len(applied) :]
    if tuple(applied) != KNOWN_MIGRATIONS[: len(applied)]:
        raise CacheError(f"{path} has a cache schema this version does not know")
    if not missing:
        return
    from ._migrations import READ_COMPAT  # imports sqlite-utils: only when needed

    if not applied or any(name not in READ_COMPAT for name in missing):
        raise CacheError(
            f"{path} has an older (or no) cache schema and is opened read-only: "
            "run a write command (e.g. a sync) once to upgrade it"
        )
    added: dict[str, list[str]] = {}
    for name in missing:  # an older file, read as the current shape, left as is
        for table, new_columns in READ_COMPAT[name].items():
            added.setdefault(table, []).extend(new_columns)
    for table, columns in added.items():
        nulls = ", ".join(f"NULL AS {column}" for column in columns)
        conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {nulls} FROM main.{table}")


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. The switch ignores busy_timeout (SQLITE_BUSY at once when several
    processes open a fresh file together), so retry it until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
