"""``HistoryCache``: the mirror of every session's history, readable offline.

One store, two databases: an SQLite file (the default, embedded) or a PostgreSQL database (a
``postgresql://`` URL, for many machines sharing one history). The store holds every decision;
the backend (``_backend``: ``_sqlite`` or ``_pg``) only runs its statements in its dialect, makes
transactions, indexes and searches the text, and provides the owner locks ``reap`` asks.

Design notes (opening and migrating is ``_connect``/``_pg``, the SQL ``_sql``, the row
mapping ``_rows``, how a history lands in its table ``_mirror``, full-text search ``_search``
and ``_pg_search``):

* Rows are scoped by ``key_scope(api_key)``; the key itself is never stored. A scoped cache
  reads and writes only its scope; an unscoped cache reads the whole file and cannot write.
* Sessions and create intents also record their ``server`` (``_scope.server_id``). A cache
  opened for a server reads that server's rows and the rows that do not say (written before
  servers were recorded), and never updates a row of another server; ``mark_gone`` (a 404)
  applies only to rows recorded for this very server. A cache opened without a server (tests,
  tools) sees and writes every server's rows, recording NULL for new ones.
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
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _contract
from .._contract import LOCAL_END_PENDING, LOCAL_ENDED, LOCAL_OPEN
from .._exceptions import CacheError, ConfigurationError
from .._models import HistoryEntry, SessionInfo
from . import _location, _mirror, _sql
from ._backend import Backend, Conn, OwnerLock, Probe, open_backend
from ._connect import BUSY_TIMEOUT_S
from ._errors import cache_error, typed_errors
from ._records import CachedSession, CacheStats, CreateIntent, SearchHit
from ._rows import entry_rows, now, server_ended_at, ts
from ._speedups import (
    ENCODER,
    build_entries,
    build_sessions,
    gc_paused,
    iter_entries,
    json_text,
)

if TYPE_CHECKING:
    from .._secret import Secret

__all__ = ["HistoryCache"]

_fromiso = datetime.fromisoformat


class HistoryCache:
    """The mirror of every session's history: an SQLite file, or a PostgreSQL database when
    ``path`` is a ``postgresql://`` URL (see the module docstring)."""

    _db: Backend
    _conn: Conn
    _lock: threading.RLock
    _owner: bool

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        api_key: str | Secret | None = None,
        scope: str | None = None,
        server: str | None = None,
        readonly: bool = False,
    ) -> None:
        # The key's modules load only when a key is given: the offline commands (no key) start
        # without them (figure 6).
        secret = None if api_key is None else _secret_of(api_key)  # no frame holds the key
        del api_key
        if secret is not None and scope is not None:
            raise ConfigurationError("pass either api_key or scope to HistoryCache, not both")
        if secret is not None:
            if not secret:
                raise ConfigurationError("api_key is empty")
            from .._scope import key_scope

            scope = key_scope(secret)
        if scope is not None and (not isinstance(scope, str) or not scope):
            raise ConfigurationError("scope must be a non-empty string")
        _check_server(server)
        self._scope = scope
        self._server = server
        self._readonly = readonly
        self._owner = True
        self._lock = threading.RLock()
        try:
            self._db = open_backend(_location.resolve(path), readonly=readonly)
        except sqlite3.Error as exc:  # what the file checks before opening did not catch
            raise cache_error(Path(str(_location.resolve(path))), exc, BUSY_TIMEOUT_S) from exc
        self._path: _location.Location = self._db.location
        self._conn = self._db.conn
        self._applied = self._db.applied

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _write_txn(self) -> Iterator[Conn]:
        with self._lock, self._db.write_transaction() as conn:
            yield conn

    @contextmanager
    def _read_txn(self) -> Iterator[Conn]:
        """A consistent snapshot for reads made of several statements."""
        with self._lock, self._db.read_transaction() as conn:
            yield conn

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
        return _sql.scope_filter(self._scope, alias)

    def _record_filter(self, alias: str = "") -> tuple[str, tuple[Any, ...]]:
        """Sessions and create intents: this scope, and this server's rows (or unknown ones)."""
        scope_sql, scope_args = _sql.scope_filter(self._scope, alias)
        server_sql, server_args = _sql.server_filter(self._server, alias)
        return f"{scope_sql} AND {server_sql}", (*scope_args, *server_args)

    def _scopes_with_history(self, conn: Conn) -> list[str]:
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
    def path(self) -> Path | str:
        """The cache file, or for PostgreSQL the URL as it may be shown (no password)."""
        return self._path

    @property
    def is_postgres(self) -> bool:
        return not isinstance(self._path, Path)

    @property
    def scope(self) -> str | None:
        return self._scope

    @property
    def server(self) -> str | None:
        return self._server

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

    def for_scope(self, scope: str, *, server: str | None = None) -> HistoryCache:
        """A view of the same file and connection restricted to ``scope`` (and ``server``, when
        given: see the module docstring).

        Closing a view does nothing: close the cache it came from.
        """
        if not isinstance(scope, str) or not scope:
            raise ConfigurationError("scope must be a non-empty string")
        _check_server(server)
        view = object.__new__(HistoryCache)
        view._db = self._db
        view._path = self._path
        view._scope = scope
        view._server = server if server is not None else self._server
        view._readonly = self._readonly
        view._owner = False
        view._lock = self._lock
        view._conn = self._conn
        view._applied = self._applied
        return view

    @typed_errors(server_data=False)
    def close(self) -> None:
        if self._owner:
            with self._lock:
                self._db.close()

    def __enter__(self) -> HistoryCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # getattr: error trackers call repr on a half-built instance (``self`` in __init__)
        mode = "readonly" if getattr(self, "_readonly", False) else "rw"
        path = str(getattr(self, "_path", "?"))
        server = getattr(self, "_server", None)
        shown = f" server={server!r}" if server is not None else ""
        return f"<HistoryCache {path!r} scope={getattr(self, '_scope', None)!r}{shown} {mode}>"

    # -- owner locks (liveness) --------------------------------------------------------------

    def acquire_owner(self) -> OwnerLock | None:
        """A lock this process holds while a with-block runs, released by the kernel (SQLite:
        a ``flock``ed file, ``_owner``) or the database server (PostgreSQL: an advisory lock,
        ``_pg_locks``) when the process dies. None where the platform has no such lock."""
        return self._db.acquire_owner()

    def probe_owner(self, name: str | None) -> Probe:
        """Whether the owner of a record (its ``owner_lock``) still runs; a ``dead`` probe holds
        the lock until closed, so no other reaper works on the record meanwhile."""
        with self._lock:
            return self._db.probe_owner(name)

    # -- writes: create intents --------------------------------------------------------------

    @typed_errors(server_data=False)
    def record_create_intent(
        self, idempotency_key: str, title: str | None, *, owner_lock: str | None = None
    ) -> None:
        """Record, before sending it, a create request with its idempotency key, for this
        cache's server, and the lock its with-block holds (``_owner``) while it runs."""
        scope = self._writable_scope()
        with self._write_txn() as conn:
            conn.execute(
                "INSERT INTO create_intents (scope, idempotency_key, title, recorded_at, "
                "opened_pid, opened_host, server, owner_lock) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (scope, idempotency_key) DO NOTHING",
                (
                    scope,
                    idempotency_key,
                    title,
                    now(),
                    os.getpid(),
                    _hostname(),
                    self._server,
                    owner_lock,
                ),
            )

    @typed_errors(server_data=False)
    def forget_create_intent(self, idempotency_key: str) -> bool:
        scope = self._writable_scope()
        with self._write_txn() as conn:
            cur = conn.execute(
                "DELETE FROM create_intents WHERE scope = ? AND idempotency_key = ?",
                (scope, idempotency_key),
            )
            return cur.rowcount > 0

    @typed_errors(server_data=False)
    def create_intents(self) -> list[CreateIntent]:
        """Recorded create intents, oldest first."""
        where, args = self._record_filter()
        with self._lock:
            rows = self._conn.execute(
                "SELECT scope, idempotency_key, title, recorded_at, opened_pid, opened_host, "
                "server, owner_lock FROM create_intents "
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
                server=r[6],
                owner_lock=r[7],
            )
            for r in rows
        ]

    # -- writes: sessions --------------------------------------------------------------------

    @typed_errors(server_data=True)
    def record_opened(
        self,
        info: SessionInfo,
        *,
        idempotency_key: str | None = None,
        owner_lock: str | None = None,
    ) -> None:
        """A session was just created here: upsert it as 'open' and drop its create intent.

        ``owner_lock`` is the lock its with-block holds (``reap`` passes the dead intent's, so
        that a reap killed before the end still leaves a record the next reap ends at once).
        ``CacheError`` if the id is already cached for another server (nothing is written: a
        with-block then ends the session rather than run with one the cache does not hold).
        """
        scope = self._writable_scope()
        stamp = now()
        state = LOCAL_ENDED if info.status == _contract.STATUS_ENDED else LOCAL_OPEN
        with self._write_txn() as conn:
            cur = conn.execute(
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
                    _hostname(),
                    self._server,
                    owner_lock,
                ),
            )
            if cur.rowcount == 0:  # rolled back: the intent stays, for reap
                raise CacheError(
                    f"session id {info.session_id!r} is already cached for another server "
                    f"than {self._server}: this cache cannot hold both (use another cache file)"
                )
            if idempotency_key is not None:
                conn.execute(
                    "DELETE FROM create_intents WHERE scope = ? AND idempotency_key = ?",
                    (scope, idempotency_key),
                )

    @typed_errors(server_data=True)
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
                None,  # synced_at: the history is not mirrored yet
                json_text(i.raw),
                self._server,
            )
            for i in infos
        ]
        if not rows:
            return 0
        with self._write_txn() as conn:
            cur = conn.executemany(_sql.UPSERT_SESSION, rows)
            return max(cur.rowcount, 0)

    @typed_errors(server_data=False)
    def mark_end_pending(self, session_id: str, error: str) -> None:
        """The end request failed: remember it so that ``pending_ends`` retries it.

        A session unknown to the cache gets a placeholder row (status 'active').
        An already ended session stays ended; a row of another server is not touched.
        """
        scope = self._writable_scope()
        stamp = now()
        server_sql, server_args = _sql.server_filter(self._server)
        with self._write_txn() as conn:
            cur = conn.execute(
                "UPDATE sessions SET local_state = ?, local_error = ?, updated_at = ? "
                f"WHERE scope = ? AND session_id = ? AND local_state IS NOT ? AND {server_sql}",
                (LOCAL_END_PENDING, error, stamp, scope, session_id, LOCAL_ENDED, *server_args),
            )
            if cur.rowcount == 0:
                conn.execute(
                    "INSERT INTO sessions (scope, session_id, title, status, message_count, "
                    "created_at, local_state, local_error, opened_at, updated_at, raw, server) "
                    "VALUES (?, ?, NULL, ?, 0, ?, ?, ?, ?, ?, ?, ?) "
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
                        self._server,
                    ),
                )

    @typed_errors(server_data=True)
    def mark_ended(self, session_id: str, info: SessionInfo | None = None) -> bool:
        """The end was confirmed (by this cache's server: a row that did not say which server
        it belongs to is now recorded as that server's). Returns False if the session is not
        in the cache for this server."""
        scope = self._writable_scope()
        stamp = now()
        server_sql, server_args = _sql.server_filter(self._server)
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
                        None,  # synced_at: the ended session's history is fetched once more
                        json_text(info.raw),
                        self._server,
                    ),
                )
            cur = conn.execute(
                "UPDATE sessions SET local_state = ?, local_error = NULL, status = ?, "
                "ended_at = COALESCE(ended_at, ?), updated_at = ?, "
                "server = COALESCE(server, ?), "
                # message_count counts entries (the contract) and history only grows
                "message_count = CASE WHEN message_count < entry_count THEN entry_count "
                "ELSE message_count END "
                f"WHERE scope = ? AND session_id = ? AND {server_sql}",
                (
                    LOCAL_ENDED,
                    _contract.STATUS_ENDED,
                    stamp,
                    stamp,
                    self._server,
                    scope,
                    session_id,
                    *server_args,
                ),
            )
            return cur.rowcount > 0

    @typed_errors(server_data=False)
    def mark_gone(self, session_id: str) -> bool:
        """This cache's server answered 404 for the session: it has nothing left to end, so the
        row is recorded ended. Only a row recorded for this very server: a 404 from a server
        that may be the wrong one (a row that does not say which server it is on) proves
        nothing, and such a row is left as it is. Returns whether a row was marked."""
        scope = self._writable_scope()
        if self._server is None:
            raise ConfigurationError("a 404 can only be recorded by a cache opened for a server")
        stamp = now()
        with self._write_txn() as conn:
            cur = conn.execute(
                "UPDATE sessions SET local_state = ?, local_error = NULL, status = ?, "
                "ended_at = COALESCE(ended_at, ?), updated_at = ? "
                "WHERE scope = ? AND session_id = ? AND server = ?",
                (
                    LOCAL_ENDED,
                    _contract.STATUS_ENDED,
                    stamp,
                    stamp,
                    scope,
                    session_id,
                    self._server,
                ),
            )
            return cur.rowcount > 0

    @typed_errors(server_data=False)
    def other_servers_session_ids(self) -> set[str]:
        """Ids this scope holds for servers other than this cache's (none without a server):
        the same id on this server is another session, which ``sync`` leaves out."""
        if self._server is None or self._scope is None:
            return set()
        with self._lock:
            rows = self._conn.execute(
                "SELECT session_id FROM sessions WHERE scope = ? AND server IS NOT NULL "
                "AND server != ?",
                (self._scope, self._server),
            ).fetchall()
        return {r[0] for r in rows}

    # -- writes: history ---------------------------------------------------------------------

    @typed_errors(server_data=True)
    def mirror_history(self, session_id: str, entries: Sequence[HistoryEntry]) -> int:
        """Mirror a session's FULL history (oldest first); returns the rows inserted.

        Afterwards the cache holds the server's entries in the server's order (``_mirror``
        says how, and why entries the server no longer lists are kept). A list holding an id
        twice is refused (``ProtocolError``), and so is a value the cache cannot hold, with
        nothing written. When nothing changed, nothing is written at all.
        """
        return self._mirror(session_id, _mirror.EntryHistory(entries))

    @typed_errors(server_data=True)
    def mirror_history_json(self, session_id: str, items: Sequence[Any]) -> int:
        """``mirror_history`` from the server's parsed JSON list (the objects of a history
        response, oldest first), with no ``HistoryEntry`` built: what ``sync`` does. Each item
        the cache lacks is checked as ``parse_entry`` checks it (``ProtocolError`` naming its
        position and field, nothing written); the items of a prefix the cache already holds
        are not rebuilt or re-checked (only where that prefix ends: see ``_mirror``)."""
        return self._mirror(session_id, _mirror.JsonHistory(items))

    def _mirror(self, session_id: str, incoming: _mirror.Incoming) -> int:
        scope = self._writable_scope()
        with self._lock:
            conn = self._conn
            tail = _mirror.tail(conn, scope, session_id)
            if (
                _mirror.prefix_ok(tail, incoming)
                and tail[0] == len(incoming)
                and not _mirror.needs_mark(conn, scope, session_id)
            ):
                return 0  # the fast no-op: reads, no transaction
            # Rows are built and checked before the write lock is taken (the no-op above writes
            # nothing, and its dense prefix holds unique ids: the server's, as long as history
            # is append-only), and built again only if another writer moved the tail meanwhile.
            todo = _mirror.plan(scope, session_id, tail, incoming)
            with self._write_txn() as conn:
                now_tail = _mirror.tail(conn, scope, session_id)
                if now_tail != tail:
                    todo = _mirror.plan(scope, session_id, now_tail, incoming)
                first_new = self._db.max_rowid(conn)
                inserted, count = _mirror.apply(conn, scope, session_id, todo, incoming)
                if inserted:
                    self._db.index_new(conn, first_new)
                _mirror.record_counts(conn, scope, session_id, count, now())
                return inserted

    @typed_errors(server_data=True)
    def append_entries(self, session_id: str, entries: Sequence[HistoryEntry]) -> int:
        """Entries just appended (e.g. by a send), after the cached ones and a one-number hole
        in ``seq``: their place in the server's order is provisional until the next full
        mirror (``_mirror``: another process may append to the same session at the same time).
        An id already cached, or repeated in ``entries``, is skipped.
        """
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
            first_new = self._db.max_rowid(conn)
            start = 1 if max_seq is None else int(max_seq) + 2  # the hole: not yet confirmed
            cur = conn.executemany(_sql.INSERT_HISTORY, entry_rows(scope, session_id, fresh, start))
            self._db.index_new(conn, first_new)
            added = max(cur.rowcount, 0)
            # The session's counts, in the same transaction (and message_count raised with
            # them: the same row and page). One more dirty page per send (NOTES.md, figure 8)
            # buys listings that read no history.
            conn.execute(
                "UPDATE sessions SET entry_count = entry_count + ?, last_seq = ?, "
                "message_count = CASE WHEN message_count < entry_count + ? "
                "THEN entry_count + ? ELSE message_count END "
                "WHERE scope = ? AND session_id = ?",
                (added, start + len(fresh) - 1, added, added, scope, session_id),
            )
            return added

    # -- reads -------------------------------------------------------------------------------

    @typed_errors(server_data=False)
    def sessions(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[CachedSession]:
        """Cached sessions, newest first (by created_at)."""
        where, args = self._record_filter("s.")
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
        with self._lock, gc_paused():  # one statement: one snapshot
            return build_sessions(self._conn.execute(sql, params))

    @typed_errors(server_data=False)
    def session(self, session_id: str) -> CachedSession | None:
        where, args = self._record_filter("s.")
        with self._read_txn() as conn:
            row = conn.execute(
                _sql.SESSION_SELECT
                + f" WHERE {where} AND s.session_id = ? ORDER BY s.scope LIMIT 1",
                (*args, session_id),
            ).fetchone()
        return None if row is None else build_sessions((row,))[0]

    @typed_errors(server_data=False)
    def history(self, session_id: str) -> list[HistoryEntry]:
        """A session's cached history, oldest first (every scope's, if unscoped).

        The whole history in memory: ``iter_history`` reads one entry at a time."""
        out: list[HistoryEntry] = []
        with self._read_txn() as conn, gc_paused():
            for scope in self._scopes_with_history(conn):
                cur = conn.execute(
                    f"SELECT {_sql.HISTORY_COLS} FROM history "
                    "WHERE scope = ? AND session_id = ? ORDER BY seq",
                    (scope, session_id),
                )
                out.extend(build_entries(session_id, cur, lean=self._db.lean_history))
        return out

    @typed_errors(server_data=False)
    def iter_history(self, session_id: str) -> Iterator[HistoryEntry]:
        """A session's cached history, oldest first, one entry at a time from a cursor:
        memory stays flat however long the history is (``export`` and ``show`` write entry by
        entry). It reads one snapshot of the cache and holds this cache's lock until it is
        exhausted or closed (a ``for`` loop, or ``close()``): other threads using this
        ``HistoryCache`` wait meanwhile."""
        with self._read_txn() as conn:
            lean = self._db.lean_history
            for scope in self._scopes_with_history(conn):
                rows = self._db.stream(
                    conn,
                    f"SELECT {_sql.HISTORY_COLS} FROM history "
                    "WHERE scope = ? AND session_id = ? ORDER BY seq",
                    (scope, session_id),
                )
                yield from iter_entries(session_id, rows, lean=lean)

    @contextmanager
    def snapshot(self) -> Iterator[HistoryCache]:
        """Reads inside the block see one state of the cache (one read transaction), e.g. a
        count and then the entries it counts; other threads using this cache wait."""
        with self._read_txn():
            yield self

    @typed_errors(server_data=False)
    def count_history(self, session_id: str) -> int:
        """How many entries ``iter_history(session_id)`` yields."""
        with self._read_txn() as conn:
            return sum(
                int(
                    conn.execute(
                        "SELECT count(*) FROM history WHERE scope = ? AND session_id = ?",
                        (scope, session_id),
                    ).fetchone()[0]
                )
                for scope in self._scopes_with_history(conn)
            )

    @typed_errors(server_data=False)
    def search(
        self, query: str, *, limit: int = 20, session_id: str | None = None
    ) -> list[SearchHit]:
        """Full-text search of history contents, best first. Any string is safe."""
        if limit <= 0:
            return []
        with self._lock:
            return self._db.search(query, int(limit), self._scope, session_id)

    @typed_errors(server_data=False)
    def pending_ends(self) -> list[CachedSession]:
        """Sessions opened here whose end is not confirmed (local_state open or end_pending)."""
        where, args = self._record_filter("s.")
        with self._read_txn() as conn:
            rows = conn.execute(
                _sql.SESSION_SELECT + f" WHERE {where} AND s.local_state IN {_sql.PENDING}"
                " ORDER BY s.created_at, s.session_id",
                args,
            ).fetchall()
        return build_sessions(rows)

    @typed_errors(server_data=False)
    def stats(self) -> CacheStats:
        """Counts per status, scope and opening host, entries, size, schema version, dates."""
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
            by_host: dict[str, int] = {}
            pending_by_host: dict[str, int] = {}
            for host, opened, pending_here in conn.execute(
                "SELECT opened_host, count(*), "
                f"sum(CASE WHEN local_state IN {_sql.PENDING} THEN 1 ELSE 0 END) "
                f"FROM sessions WHERE {where} AND opened_host IS NOT NULL "
                "GROUP BY opened_host ORDER BY opened_host",
                args,
            ):
                by_host[host] = int(opened)
                if pending_here:
                    pending_by_host[host] = int(pending_here)
        with self._lock:
            size = self._db.size()
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
            sessions_by_host=by_host,
            pending_by_host=pending_by_host,
        )

    @typed_errors(server_data=False)
    def integrity_check(self) -> list[str]:
        """Problems found by the database's own checks; empty means sound. SQLite: ``PRAGMA
        integrity_check``, then the FTS5 check (read-only: checksums, never a copy; see
        ``_integrity``). PostgreSQL: the schema and the text-search column
        (``_pg.PostgresBackend.integrity_problems``)."""
        with self._lock:
            return self._db.integrity_problems()


def _secret_of(api_key: str | Secret) -> Secret:
    from .._secret import Secret

    return Secret.of(api_key)


def _hostname() -> str:
    """This machine's name (``socket`` is imported on the write path only)."""
    import socket

    return socket.gethostname()


def _check_server(server: str | None) -> None:
    if server is not None and (not isinstance(server, str) or not server):
        raise ConfigurationError("server must be a non-empty string")
