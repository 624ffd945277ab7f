"""The SQLite backend of ``HistoryCache``: one local file (the default, embedded, no server).

Opening and migrating is ``_connect``, FTS5 indexing ``_mirror``, search ``_search``, integrity
``_integrity``; this module only puts them behind the ``_backend.Backend`` seam. Its owner locks
are the kernel's: a ``flock``ed file per with-block next to the cache (``_owner``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from . import _mirror, _sql
from ._backend import Conn, OwnerLock, Probe
from ._connect import connect, prepare, write_transaction
from ._integrity import integrity_problems
from ._location import Location
from ._records import SearchHit
from ._schema import KNOWN_MIGRATIONS
from ._search import search

__all__ = ["SQLiteBackend"]


class SQLiteBackend:
    """An open cache file (see the ``_store`` and ``_connect`` docstrings)."""

    known = KNOWN_MIGRATIONS

    def __init__(self, path: Path, *, readonly: bool) -> None:
        self.location: Location = path
        self._path = path
        self._readonly = readonly
        self._sqlite = connect(path, readonly=readonly)
        self.conn: Conn = self._sqlite
        try:
            self.applied = prepare(self._sqlite, path, readonly=readonly)
        except BaseException:
            self._sqlite.close()
            raise

    @contextmanager
    def write_transaction(self) -> Iterator[Conn]:
        with write_transaction(self._sqlite) as conn:
            yield conn

    @contextmanager
    def read_transaction(self) -> Iterator[Conn]:
        """A consistent snapshot for reads made of several statements."""
        conn = self._sqlite
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def max_rowid(self, conn: Conn) -> int:
        return _mirror.max_rowid(conn)

    def index_new(self, conn: Conn, after_rowid: int) -> None:
        _mirror.index_new(conn, after_rowid)

    def search(
        self, query: str, limit: int, scope: str | None, session_id: str | None
    ) -> list[SearchHit]:
        match = _sql.fts_query(query)
        if not match:
            return []
        try:
            with self.read_transaction():
                return search(self._sqlite, match, limit, scope, session_id)
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("fts5:"):
                return []
            raise

    def integrity_problems(self) -> list[str]:
        return integrity_problems(self._sqlite, self._path, readonly=self._readonly)

    def size(self) -> int:
        size = 0
        for suffix in ("", "-wal"):
            with suppress(OSError):
                size += os.stat(f"{self._path}{suffix}").st_size
        return size

    def acquire_owner(self) -> OwnerLock | None:
        from .._owner import OwnerLock as FileLock

        return FileLock.acquire(self._path)

    def probe_owner(self, name: str | None) -> Probe:
        from .._owner import Probe as FileProbe

        return FileProbe(self._path, name)

    def close(self) -> None:
        self._sqlite.close()
