"""``HistoryCache``: the local SQLite mirror of every session's history, readable offline.

Design notes (the schema is in ``_migrations``, the SQL in ``_sql``, the row mapping in ``_rows``):

* Rows are scoped by ``key_scope(api_key)``; the key itself is never stored. A scoped cache
  reads and writes only its scope; an unscoped cache reads the whole file and cannot write.
* WAL, ``busy_timeout`` 30 s, ``synchronous=NORMAL``. Every write transaction starts with
  ``BEGIN IMMEDIATE`` (a deferred transaction that later upgrades gets SQLITE_BUSY at once).
  Each public write is one transaction.
* The file is checked before anything is written to it (``_files``): not SQLite, truncated,
  foreign, or written by a newer version -> ``CacheError``, file untouched.
* ``readonly=True`` opens ``file:...?mode=ro``: never writes, never migrates. A file whose
  schema is older than this version is read through TEMP views that present the current shape
  (``_migrations.READ_COMPAT``); an empty one, or one no view can adapt, is refused with a
  message asking to run a write command first. (SQLite may create empty ``-wal``/``-shm``
  companions for a read-only WAL reader; the database file itself is never modified.)
* ``HistoryEntry.raw`` read back from the cache is a lazy read-only Mapping that decodes the
  stored JSON on first access (``dict(entry.raw)`` gives a plain dict, e.g. for json.dumps).

This module must stay cheap to import (the offline CLI uses it): no httpx, no tenacity, and
sqlite-utils only when a migration is pending.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import _contract
from .._contract import LOCAL_END_PENDING, LOCAL_ENDED, LOCAL_OPEN
from .._exceptions import CacheError, ConfigurationError
from .._models import HistoryEntry, SessionInfo
from .._scope import key_scope
from . import _sql
from ._files import check_file, ensure_private_file, readonly_uri
from ._integrity import integrity_problems
from ._records import CachedSession, CacheStats, CreateIntent, SearchHit
from ._rows import entry_rows, now, server_ended_at, session_from_row, ts
from ._schema import KNOWN_MIGRATIONS, applied_migrations
from ._speedups import ENCODER, LazyJSON, build_entries, gc_paused, json_text

__all__ = ["BUSY_TIMEOUT_S", "HistoryCache"]

BUSY_TIMEOUT_S = 30.0
#: The page size of a new cache file. Rows of ~1 KB of text and FTS5 segment pages fit 16 KB
#: pages better than SQLite's 4 KB default: fewer pages and B-tree levels to write (measured: a
#: bulk mirror ~14 % faster, reads unchanged).
_PAGE_SIZE = 16384
#: Page cache of a writable connection (KiB, negative as SQLite wants it): a mirror of 10,000
#: entries dirties a few MB of table, index and FTS pages; the 2 MB default spills them early.
_WRITE_CACHE_KIB = 32 * 1024
_fromiso = datetime.fromisoformat


class HistoryCache:
    """The local SQLite mirror of every session's history (see the module docstring)."""

    _conn: sqlite3.Connection
    _lock: threading.RLock
    _owner: bool

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        api_key: str | None = None,
        scope: str | None = None,
        readonly: bool = False,
    ) -> None:
        if api_key is not None and scope is not None:
            raise ConfigurationError("pass either api_key or scope to HistoryCache, not both")
        if api_key is not None:
            if not api_key:
                raise ConfigurationError("api_key is empty")
            scope = key_scope(api_key)
        if scope is not None and (not isinstance(scope, str) or not scope):
            raise ConfigurationError("scope must be a non-empty string")
        if path is None:
            from .._paths import default_cache_path

            path = default_cache_path()
        self._path = Path(path).expanduser()
        self._scope = scope
        self._readonly = readonly
        self._owner = True
        self._lock = threading.RLock()
        self._conn = self._open()
        try:
            self._applied = self._prepare()
        except BaseException:
            self._conn.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self._path
        if self._readonly:
            if not path.exists():
                raise CacheError(f"no cache at {path}")
            check_file(path)
            try:
                conn = sqlite3.connect(
                    readonly_uri(path),
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise CacheError(f"cannot open the cache at {path}: {exc}") from None
        else:
            ensure_private_file(path)
            check_file(path)
            try:
                conn = sqlite3.connect(
                    str(path),
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise CacheError(f"cannot open the cache at {path}: {exc}") from None
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _prepare(self) -> tuple[str, ...]:
        conn, path = self._conn, self._path
        applied = applied_migrations(conn, path)  # read-only: refuses before anything is written
        if self._readonly:
            missing = KNOWN_MIGRATIONS[len(applied) :]
            if tuple(applied) != KNOWN_MIGRATIONS[: len(applied)]:
                raise CacheError(f"{path} has a cache schema this version does not know")
            if missing:
                from ._migrations import READ_COMPAT  # imports sqlite-utils: only when needed

                if not applied or any(name not in READ_COMPAT for name in missing):
                    raise CacheError(
                        f"{path} has an older (or no) cache schema and is opened read-only: "
                        "run a write command (e.g. a sync) once to upgrade it"
                    )
                for name in missing:  # an older file, read as the current shape, left as is
                    for statement in READ_COMPAT[name]:
                        conn.execute(statement)
            return tuple(applied)
        try:
            # Only a new (empty) file takes it; an existing cache keeps its page size.
            conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            self._enable_wal()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{_WRITE_CACHE_KIB}")
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"cannot use the cache at {path}: {exc}") from None
        if len(applied) == len(KNOWN_MIGRATIONS):
            return tuple(applied)
        with self._write_txn():
            applied = applied_migrations(conn, path)  # again, under the write lock: another process
            if len(applied) < len(KNOWN_MIGRATIONS):  # may have migrated meanwhile
                from . import _migrations

                if tuple(_migrations.names()) != KNOWN_MIGRATIONS:  # pragma: no cover
                    raise RuntimeError("_schema.KNOWN_MIGRATIONS is out of date")
                _migrations.apply(conn)
                applied = applied_migrations(conn, path)
        return tuple(applied)

    def _enable_wal(self) -> None:
        """Switch to WAL. The switch ignores busy_timeout (SQLITE_BUSY at once when several
        processes open a fresh file together), so retry it until the timeout."""
        conn = self._conn
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

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
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

    @contextmanager
    def _read_txn(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reads made of several statements."""
        conn = self._conn
        with self._lock:
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _writable_scope(self) -> str:
        if self._readonly:
            raise ConfigurationError(f"the cache at {self._path} is open read-only")
        if self._scope is None:
            raise ConfigurationError(
                "this cache is unscoped (no api_key or scope): it can read every scope but "
                "cannot write; open it with api_key=... or use cache.for_scope(scope)"
            )
        return self._scope

    def _scope_filter(self, alias: str = "") -> tuple[str, tuple[Any, ...]]:
        if self._scope is None:
            return "1", ()
        return f"{alias}scope = ?", (self._scope,)

    def _scopes_with_history(self, conn: sqlite3.Connection) -> list[str]:
        """Every scope in the history table, by index skip-scan (cheap even on 1M rows)."""
        if self._scope is not None:
            return [self._scope]
        scopes: list[str] = []
        current = conn.execute("SELECT min(scope) FROM history").fetchone()[0]
        while current is not None:
            scopes.append(current)
            current = conn.execute(
                "SELECT min(scope) FROM history WHERE scope > ?", (current,)
            ).fetchone()[0]
        return scopes

    # -- properties --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def scope(self) -> str | None:
        return self._scope

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def schema_version(self) -> int:
        """How many migrations of our set the file has (``len(KNOWN_MIGRATIONS)`` when current)."""
        return len(self._applied)

    @property
    def migrations_applied(self) -> tuple[str, ...]:
        return self._applied

    def for_scope(self, scope: str) -> HistoryCache:
        """A view of the same file and connection restricted to ``scope``.

        Closing a view does nothing: close the cache it came from.
        """
        if not isinstance(scope, str) or not scope:
            raise ConfigurationError("scope must be a non-empty string")
        view = object.__new__(HistoryCache)
        view._path = self._path
        view._scope = scope
        view._readonly = self._readonly
        view._owner = False
        view._lock = self._lock
        view._conn = self._conn
        view._applied = self._applied
        return view

    def close(self) -> None:
        if self._owner:
            with self._lock:
                self._conn.close()

    def __enter__(self) -> HistoryCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self._readonly else "rw"
        return f"<HistoryCache {str(self._path)!r} scope={self._scope!r} {mode}>"

    # -- writes: create intents --------------------------------------------------------------

    def record_create_intent(self, idempotency_key: str, title: str | None) -> None:
        """Record, before sending it, a create request with its idempotency key."""
        scope = self._writable_scope()
        with self._write_txn() as conn:
            conn.execute(
                "INSERT INTO create_intents (scope, idempotency_key, title, recorded_at, "
                "opened_pid, opened_host) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (scope, idempotency_key) DO NOTHING",
                (scope, idempotency_key, title, now(), os.getpid(), socket.gethostname()),
            )

    def abandon_create_intent(self, idempotency_key: str) -> None:
        """The create failed for good and its block exited: no running process owns the intent
        any more (``reap`` then treats it by age alone, like any other leftover)."""
        scope = self._writable_scope()
        with self._write_txn() as conn:
            conn.execute(
                "UPDATE create_intents SET opened_pid = NULL, opened_host = NULL "
                "WHERE scope = ? AND idempotency_key = ?",
                (scope, idempotency_key),
            )

    def forget_create_intent(self, idempotency_key: str) -> bool:
        scope = self._writable_scope()
        with self._write_txn() as conn:
            cur = conn.execute(
                "DELETE FROM create_intents WHERE scope = ? AND idempotency_key = ?",
                (scope, idempotency_key),
            )
            return cur.rowcount > 0

    def create_intents(self) -> list[CreateIntent]:
        """Recorded create intents, oldest first."""
        where, args = self._scope_filter()
        with self._lock:
            rows = self._conn.execute(
                "SELECT scope, idempotency_key, title, recorded_at, opened_pid, opened_host "
                "FROM create_intents "
                f"WHERE {where} ORDER BY recorded_at, idempotency_key",
                args,
            ).fetchall()
        return [
            CreateIntent(
                scope=r[0],
                idempotency_key=r[1],
                title=r[2],
                recorded_at=_fromiso(r[3]),
                opened_pid=r[4],
                opened_host=r[5],
            )
            for r in rows
        ]

    # -- writes: sessions --------------------------------------------------------------------

    def record_opened(self, info: SessionInfo, *, idempotency_key: str | None = None) -> None:
        """A session was just created here: upsert it as 'open' and drop its create intent."""
        scope = self._writable_scope()
        stamp = now()
        state = LOCAL_ENDED if info.status == _contract.STATUS_ENDED else LOCAL_OPEN
        with self._write_txn() as conn:
            conn.execute(
                _sql.RECORD_OPENED,
                (
                    scope,
                    info.session_id,
                    info.title,
                    info.status,
                    info.message_count,
                    ts(info.created_at),
                    server_ended_at(info.raw),
                    state,
                    stamp,
                    stamp,
                    stamp,
                    json_text(info.raw),
                    os.getpid(),
                    socket.gethostname(),
                ),
            )
            if idempotency_key is not None:
                conn.execute(
                    "DELETE FROM create_intents WHERE scope = ? AND idempotency_key = ?",
                    (scope, idempotency_key),
                )

    def upsert_sessions(self, infos: Iterable[SessionInfo]) -> int:
        """Mirror the server's sessions; returns how many rows were inserted or changed."""
        scope = self._writable_scope()
        stamp = now()
        rows = [
            (
                scope,
                i.session_id,
                i.title,
                i.status,
                i.message_count,
                ts(i.created_at),
                server_ended_at(i.raw),
                stamp,
                stamp,
                json_text(i.raw),
            )
            for i in infos
        ]
        if not rows:
            return 0
        with self._write_txn() as conn:
            cur = conn.executemany(_sql.UPSERT_SESSION, rows)
            return max(cur.rowcount, 0)

    def mark_end_pending(self, session_id: str, error: str) -> None:
        """The end request failed: remember it so that ``pending_ends`` retries it.

        A session unknown to the cache gets a placeholder row (status 'active').
        An already ended session stays ended.
        """
        scope = self._writable_scope()
        stamp = now()
        with self._write_txn() as conn:
            cur = conn.execute(
                "UPDATE sessions SET local_state = ?, local_error = ?, updated_at = ? "
                "WHERE scope = ? AND session_id = ? AND local_state IS NOT ?",
                (LOCAL_END_PENDING, error, stamp, scope, session_id, LOCAL_ENDED),
            )
            if cur.rowcount == 0:
                conn.execute(
                    "INSERT INTO sessions (scope, session_id, title, status, message_count, "
                    "created_at, local_state, local_error, opened_at, updated_at, raw) "
                    "VALUES (?, ?, NULL, ?, 0, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (scope, session_id) DO NOTHING",
                    (
                        scope,
                        session_id,
                        _contract.STATUS_ACTIVE,
                        stamp,
                        LOCAL_END_PENDING,
                        error,
                        stamp,
                        stamp,
                        ENCODER.encode({"session_id": session_id}),
                    ),
                )

    def mark_ended(self, session_id: str, info: SessionInfo | None = None) -> bool:
        """The end was confirmed. Returns False if the session is not in the cache."""
        scope = self._writable_scope()
        stamp = now()
        with self._write_txn() as conn:
            if info is not None:
                conn.execute(
                    _sql.UPSERT_SESSION,
                    (
                        scope,
                        session_id,
                        info.title,
                        _contract.STATUS_ENDED,
                        info.message_count,
                        ts(info.created_at),
                        server_ended_at(info.raw),
                        stamp,
                        stamp,
                        json_text(info.raw),
                    ),
                )
            cur = conn.execute(
                "UPDATE sessions SET local_state = ?, local_error = NULL, status = ?, "
                "ended_at = COALESCE(ended_at, ?), updated_at = ? "
                "WHERE scope = ? AND session_id = ?",
                (LOCAL_ENDED, _contract.STATUS_ENDED, stamp, stamp, scope, session_id),
            )
            if cur.rowcount > 0:
                self._raise_message_count(conn, scope, session_id)
            return cur.rowcount > 0

    # -- writes: history ---------------------------------------------------------------------

    @staticmethod
    def _tail(conn: sqlite3.Connection, scope: str, session_id: str) -> tuple[int, int, str | None]:
        """(row count, max seq, id at max seq) of a session's cached history."""
        count, max_seq = conn.execute(
            "SELECT count(*), max(seq) FROM history WHERE scope = ? AND session_id = ?",
            (scope, session_id),
        ).fetchone()
        if not count:
            return 0, -1, None
        row = conn.execute(
            "SELECT id FROM history WHERE scope = ? AND session_id = ? AND seq = ? LIMIT 1",
            (scope, session_id, max_seq),
        ).fetchone()
        return count, max_seq, row[0] if row else None

    @staticmethod
    def _prefix_ok(tail: tuple[int, int, str | None], entries: Sequence[HistoryEntry]) -> bool:
        count, max_seq, last_id = tail
        if count == 0:
            return True
        return count == max_seq + 1 and count <= len(entries) and entries[count - 1].id == last_id

    @staticmethod
    def _max_rowid(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM history").fetchone()[0])

    @staticmethod
    def _index_new(conn: sqlite3.Connection, after_rowid: int) -> None:
        conn.execute(
            "INSERT INTO history_fts (rowid, content) "
            "SELECT rowid, content FROM history WHERE rowid > ?",
            (after_rowid,),
        )

    def mirror_history(self, session_id: str, entries: Sequence[HistoryEntry]) -> int:
        """Mirror a session's FULL history (oldest first); returns the rows inserted.

        Nothing already cached is rewritten; when nothing is new, nothing is written at all.
        """
        scope = self._writable_scope()
        if not entries:
            return 0
        with self._lock:
            tail = self._tail(self._conn, scope, session_id)
            if self._prefix_ok(tail, entries) and tail[0] == len(entries):
                return 0  # the fast no-op: a read, no transaction
            with self._write_txn() as conn:
                tail = self._tail(conn, scope, session_id)
                if self._prefix_ok(tail, entries):
                    count = tail[0]
                    if count == len(entries):
                        return 0
                    first_new = self._max_rowid(conn)
                    cur = conn.executemany(
                        _sql.INSERT_HISTORY, entry_rows(scope, session_id, entries[count:], count)
                    )
                    inserted = cur.rowcount
                else:
                    first_new = self._max_rowid(conn)
                    inserted = self._merge(conn, scope, session_id, entries)
                if inserted:
                    self._index_new(conn, first_new)
                    self._raise_message_count(conn, scope, session_id)
                return inserted

    def _merge(
        self,
        conn: sqlite3.Connection,
        scope: str,
        session_id: str,
        entries: Sequence[HistoryEntry],
    ) -> int:
        """The slow path: insert unknown ids, then renumber seq to the server's order."""
        existing: dict[str, tuple[int, int]] = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT id, rowid, seq FROM history WHERE scope = ? AND session_id = ? "
                "ORDER BY seq",
                (scope, session_id),
            )
        }
        order: dict[str, int] = {}
        new: list[HistoryEntry] = []
        for e in entries:
            if e.id in order:
                continue
            order[e.id] = len(order)
            if e.id not in existing:
                new.append(e)
        # Cached ids the server no longer lists keep their relative order, after the rest.
        for entry_id in existing:
            if entry_id not in order:
                order[entry_id] = len(order)
        fixes = [
            (order[entry_id], rowid)
            for entry_id, (rowid, seq) in existing.items()
            if order[entry_id] != seq
        ]
        if fixes:
            conn.executemany("UPDATE history SET seq = ? WHERE rowid = ?", fixes)
        rows = entry_rows(scope, session_id, new, 0)
        renumbered = ((*r[:3], order[r[2]], *r[4:]) for r in rows)
        cur = conn.executemany(_sql.INSERT_HISTORY, renumbered)
        return max(cur.rowcount, 0)

    def append_entries(self, session_id: str, entries: Sequence[HistoryEntry]) -> int:
        """Entries just appended (e.g. by a send): seq continues after the cached ones."""
        scope = self._writable_scope()
        if not entries:
            return 0
        with self._write_txn() as conn:
            max_seq = conn.execute(
                "SELECT max(seq) FROM history WHERE scope = ? AND session_id = ?",
                (scope, session_id),
            ).fetchone()[0]
            seen: set[str] = set()
            fresh: list[HistoryEntry] = []
            for e in entries:
                if e.id in seen:
                    continue
                seen.add(e.id)
                hit = conn.execute(
                    "SELECT 1 FROM history WHERE scope = ? AND session_id = ? AND id = ?",
                    (scope, session_id, e.id),
                ).fetchone()
                if hit is None:
                    fresh.append(e)
            if not fresh:
                return 0
            first_new = self._max_rowid(conn)
            start = -1 if max_seq is None else int(max_seq)
            cur = conn.executemany(
                _sql.INSERT_HISTORY, entry_rows(scope, session_id, fresh, start + 1)
            )
            self._index_new(conn, first_new)
            # message_count is not raised here: one more dirty page per send (a sessions row)
            # was a third of a send's cache cost. Reads show max(message_count, entries), and
            # mark_ended / mirror_history store it.
            return max(cur.rowcount, 0)

    @staticmethod
    def _raise_message_count(conn: sqlite3.Connection, scope: str, session_id: str) -> None:
        """Store ``sessions.message_count`` >= the entries cached for it.

        The contract makes ``message_count`` the number of history entries, and history is
        append-only: once we hold N entries the server's count is at least N, so the row does not
        keep showing the count it had at create time until the next sync.
        """
        (count,) = conn.execute(
            "SELECT count(*) FROM history WHERE scope = ? AND session_id = ?", (scope, session_id)
        ).fetchone()
        conn.execute(
            "UPDATE sessions SET message_count = ? "
            "WHERE scope = ? AND session_id = ? AND message_count < ?",
            (count, scope, session_id, count),
        )

    # -- reads -------------------------------------------------------------------------------

    def sessions(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[CachedSession]:
        """Cached sessions, newest first (by created_at)."""
        where, args = self._scope_filter("s.")
        clauses, params = [where], list(args)
        if status is not None:
            clauses.append("s.status = ?")
            params.append(status)
        if since is not None:
            clauses.append("s.created_at >= ?")
            params.append(ts(since))
        sql = (
            _sql.SESSION_SELECT
            + " WHERE "
            + " AND ".join(clauses)
            + " ORDER BY s.created_at DESC, s.session_id DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read_txn() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [session_from_row(r) for r in rows]

    def session(self, session_id: str) -> CachedSession | None:
        where, args = self._scope_filter("s.")
        with self._read_txn() as conn:
            row = conn.execute(
                _sql.SESSION_SELECT
                + f" WHERE {where} AND s.session_id = ? ORDER BY s.scope LIMIT 1",
                (*args, session_id),
            ).fetchone()
        return None if row is None else session_from_row(row)

    def history(self, session_id: str) -> list[HistoryEntry]:
        """A session's cached history, oldest first (every scope's, if unscoped)."""
        out: list[HistoryEntry] = []
        with self._read_txn() as conn, gc_paused():
            for scope in self._scopes_with_history(conn):
                cur = conn.execute(
                    f"SELECT {_sql.HISTORY_COLS} FROM history "
                    "WHERE scope = ? AND session_id = ? ORDER BY seq",
                    (scope, session_id),
                )
                out.extend(build_entries(session_id, cur))
        return out

    def search(
        self, query: str, *, limit: int = 20, session_id: str | None = None
    ) -> list[SearchHit]:
        """Full-text search of history contents, best first. Any string is safe."""
        match = _sql.fts_query(query)
        if not match or limit <= 0:
            return []
        try:
            with self._read_txn() as conn:
                return self._search(conn, match, int(limit), session_id)
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("fts5:"):
                return []
            raise

    def _search(
        self, conn: sqlite3.Connection, match: str, limit: int, session_id: str | None
    ) -> list[SearchHit]:
        snippet = "snippet(history_fts, 0, '[', ']', '…', 12)"
        if session_id is None:
            # Rank and LIMIT inside the FTS query, then join only those rows. A scoped cache
            # over-fetches once in case other scopes' rows take some of the top places.
            rounds = (limit,) if self._scope is None else (limit, limit * 10)
            for fetch in rounds:
                rows = conn.execute(
                    f"SELECT rowid, rank, {snippet} FROM history_fts "
                    "WHERE history_fts MATCH ? ORDER BY rank LIMIT ?",
                    (match, fetch),
                ).fetchall()
                hits = self._hits(conn, rows, None, limit)
                if len(hits) >= limit or len(rows) < fetch:
                    return hits
        # Filtered: let SQLite join and rank every match of the scope / session.
        where, args = self._scope_filter("h.")
        extra: tuple[Any, ...] = ()
        if session_id is not None:
            where += " AND h.session_id = ?"
            extra = (session_id,)
        rows = conn.execute(
            f"SELECT h.rowid, history_fts.rank, {snippet} FROM history_fts "
            "JOIN history h ON h.rowid = history_fts.rowid "
            f"WHERE history_fts MATCH ? AND {where} "
            "ORDER BY history_fts.rank LIMIT ?",
            (match, *args, *extra, limit),
        ).fetchall()
        return self._hits(conn, rows, session_id, limit)

    def _hits(
        self, conn: sqlite3.Connection, rows: list[Any], session_id: str | None, limit: int
    ) -> list[SearchHit]:
        entries = self._entries_by_rowid(conn, [r[0] for r in rows], session_id)
        out: list[SearchHit] = []
        for rowid, rank, snip in rows:
            found = entries.get(rowid)
            if found is None:
                continue
            scope, entry = found
            out.append(SearchHit(entry=entry, scope=scope, rank=float(rank), snippet=snip))
            if len(out) >= limit:
                break
        return out

    def _entries_by_rowid(
        self, conn: sqlite3.Connection, rowids: list[int], session_id: str | None
    ) -> dict[int, tuple[str, HistoryEntry]]:
        if not rowids:
            return {}
        # Unary + keeps the planner on the rowid lookups (not a scan of the scope index).
        marks = ",".join("?" * len(rowids))
        sql = (
            f"SELECT rowid, scope, session_id, {_sql.HISTORY_COLS} FROM history "
            f"WHERE rowid IN ({marks})"
        )
        params: list[Any] = list(rowids)
        if self._scope is not None:
            sql += " AND +scope = ?"
            params.append(self._scope)
        if session_id is not None:
            sql += " AND +session_id = ?"
            params.append(session_id)
        out: dict[int, tuple[str, HistoryEntry]] = {}
        for r in conn.execute(sql, params):
            out[r[0]] = (
                r[1],
                HistoryEntry(
                    id=r[3],
                    session_id=r[2],
                    type=r[4],
                    role=r[5],
                    content=r[6],
                    created_at=_fromiso(r[7]),
                    raw=LazyJSON(r[8]),
                ),
            )
        return out

    def pending_ends(self) -> list[CachedSession]:
        """Sessions opened here whose end is not confirmed (local_state open or end_pending)."""
        where, args = self._scope_filter("s.")
        with self._read_txn() as conn:
            rows = conn.execute(
                _sql.SESSION_SELECT + f" WHERE {where} AND s.local_state IN {_sql.PENDING}"
                " ORDER BY s.created_at, s.session_id",
                args,
            ).fetchall()
        return [session_from_row(r) for r in rows]

    def stats(self) -> CacheStats:
        """Counts per status and scope, entries, file size, schema version, date range."""
        where, args = self._scope_filter()
        with self._read_txn() as conn:
            by_status = dict(
                conn.execute(
                    f"SELECT status, count(*) FROM sessions WHERE {where} GROUP BY status "
                    "ORDER BY status",
                    args,
                ).fetchall()
            )
            by_scope = dict(
                conn.execute(
                    f"SELECT scope, count(*) FROM sessions WHERE {where} GROUP BY scope "
                    "ORDER BY scope",
                    args,
                ).fetchall()
            )
            entries_by_scope = {
                scope: conn.execute(
                    "SELECT count(*) FROM history WHERE scope = ?", (scope,)
                ).fetchone()[0]
                for scope in self._scopes_with_history(conn)
            }
            oldest, newest = conn.execute(
                f"SELECT min(created_at), max(created_at) FROM sessions WHERE {where}", args
            ).fetchone()
            pending = conn.execute(
                f"SELECT count(*) FROM sessions WHERE {where} AND local_state IN {_sql.PENDING}",
                args,
            ).fetchone()[0]
            intents = conn.execute(
                f"SELECT count(*) FROM create_intents WHERE {where}", args
            ).fetchone()[0]
        size = 0
        for suffix in ("", "-wal"):
            with suppress(OSError):
                size += os.stat(f"{self._path}{suffix}").st_size
        return CacheStats(
            path=str(self._path),
            scope=self._scope,
            schema_version=self.schema_version,
            migrations=tuple(self._applied),
            sessions=sum(by_status.values()),
            sessions_by_status=by_status,
            sessions_by_scope=by_scope,
            entries=sum(entries_by_scope.values()),
            entries_by_scope={k: v for k, v in entries_by_scope.items() if v},
            pending_ends=pending,
            create_intents=intents,
            oldest_created_at=oldest,
            newest_created_at=newest,
            file_size=size,
        )

    def integrity_check(self) -> list[str]:
        """Problems found by ``PRAGMA integrity_check``, then by the FTS5 integrity check; empty
        means sound. A read-only cache runs the FTS5 check (a write for SQLite) on a copy."""
        with self._lock:
            return integrity_problems(self._conn, self._path, readonly=self._readonly)
