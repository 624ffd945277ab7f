"""The PostgreSQL backend of ``HistoryCache``: one history shared by many machines.

``HistoryCache("postgresql://user@host/db")`` opens it (psycopg 3, the ``[postgres]`` extra);
the store's statements run through ``_pg_dialect.PgConn``. Choices, and why:

* Every write transaction first takes one transaction-level advisory lock
  (``pg_advisory_xact_lock(WRITE_LOCK)``): writers run one at a time, exactly as SQLite's
  ``BEGIN IMMEDIATE`` makes them, so the store's read-then-write steps (an incremental mirror
  reads the cached tail, then appends) need no second design. Writes are short (one mirror, one
  state change), so the fleet's throughput is bounded by the database, not by this lock's wait.
* A multi-statement read is one ``REPEATABLE READ READ ONLY`` transaction: one snapshot, as in
  SQLite.
* ``readonly=True`` sets ``default_transaction_read_only``: the offline commands cannot write,
  and never create or migrate the schema (a database without it is ``CacheNotFoundError``).
* Connection failures are typed (``CacheConnectionError``, ``CacheAuthenticationError``,
  ``CacheNotFoundError``); their messages show the URL without its password and never chain
  psycopg's error (``from None``), so no password reaches a traceback either.
* Owner locks are session-level advisory locks (``_pg_locks``).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .._exceptions import (
    CacheAuthenticationError,
    CacheConnectionError,
    CacheError,
    CacheNotFoundError,
)
from ._backend import Conn, OwnerLock, Probe, UnknownProbe
from ._location import Location, display
from ._pg_dialect import PgConn, register_text_adapters
from ._pg_schema import FTS_CHARS, MIGRATIONS, MIGRATIONS_TABLE, SCHEMA, known_migrations
from ._records import SearchHit

__all__ = ["WRITE_LOCK", "PostgresBackend", "connect"]

#: The transaction-level advisory lock every write takes (a constant of our own: the first 8
#: bytes of sha256("pdffillr-sessions/write"), as a signed 64-bit integer).
WRITE_LOCK = 0x2F1D_6A4C_93B0_57E1
#: Seconds to wait for a connection before ``CacheConnectionError``.
CONNECT_TIMEOUT_S = 10

_AUTH_FAILED = ("password authentication failed", "no password supplied", "authentication failed")
_UNREACHABLE = (
    "connection refused",
    "no such file or directory",
    "could not translate host name",
    "timeout expired",
    "no route to host",
    "network is unreachable",
    "could not connect",
    "server closed the connection",
)

#: Every connection opened here: a forked child points its copy of each socket at /dev/null
#: (``_after_fork_in_child``), so that closing it there never ends the parent's session (and
#: drops the parent's advisory locks).
_opened: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def connect(url: str, *, application_name: str = "pdffillr-sessions") -> psycopg.Connection[Any]:
    """An autocommit connection with the store's search path and text adapters, or a typed
    ``CacheError`` that names the database without its password."""
    where = display(url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=application_name,
        )
    except psycopg.Error as exc:
        raise _connect_error(url, where, exc) from None
    _opened.add(conn)
    try:
        register_text_adapters(conn)
        conn.execute(f"SET search_path = {SCHEMA}")
    except psycopg.Error as exc:
        conn.close()
        raise CacheError(
            f"cannot use the PostgreSQL cache at {where}: {_message(url, exc)}"
        ) from None
    return conn


def _message(url: str, exc: BaseException) -> str:
    """psycopg's message on one line, with the URL's password (if any) cut out."""
    text = " ".join(str(exc).split())
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text


def _connect_error(url: str, where: str, exc: psycopg.Error) -> CacheError:
    text = _message(url, exc)
    lowered = text.lower()
    if any(marker in lowered for marker in _AUTH_FAILED):
        return CacheAuthenticationError(
            f"the PostgreSQL server refused the login for {where}: wrong user or password ({text})"
        )
    if "database" in lowered and "does not exist" in lowered:
        return CacheNotFoundError(f"no such PostgreSQL database: {where} ({text})")
    if any(marker in lowered for marker in _UNREACHABLE):
        return CacheConnectionError(f"cannot reach the PostgreSQL server of {where} ({text})")
    return CacheError(f"cannot connect to the PostgreSQL cache at {where}: {text}")


def _after_fork_in_child() -> None:
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
    except OSError:  # pragma: no cover
        return
    try:
        for conn in list(_opened):
            try:
                os.dup2(devnull, conn.pgconn.socket)
            except (OSError, psycopg.Error):
                continue
    finally:
        os.close(devnull)
    _opened.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PostgresBackend:
    """An open PostgreSQL cache (see the module docstring)."""

    known = known_migrations()

    def __init__(self, url: str, *, readonly: bool) -> None:
        self._url = url  # private: it may hold a password; ``location`` is what is shown
        self.location: Location = display(url)
        self._readonly = readonly
        self._raw = connect(url)
        self.conn: Conn = PgConn(self._raw)
        try:
            if readonly:
                self._raw.execute("SET default_transaction_read_only = on")
            self.applied = self._prepare()
        except psycopg.Error as exc:
            self._raw.close()
            raise CacheError(f"cannot use the PostgreSQL cache at {self.location}: {exc}") from None
        except BaseException:
            self._raw.close()
            raise

    # -- schema --------------------------------------------------------------------------------

    def _applied_migrations(self) -> list[str]:
        """Applied migration names; refuses a schema that is not ours or is newer."""
        raw = self._raw
        tables = [
            r[0]
            for r in raw.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
                (SCHEMA,),
            )
        ]
        if not tables:
            return []
        if MIGRATIONS_TABLE not in tables:
            raise CacheError(
                f"{self.location} has a schema {SCHEMA!r} that is not a pdffillr-sessions "
                f"history (tables: {', '.join(tables[:5])})"
            )
        applied = [
            str(r[0])
            for r in raw.execute(f"SELECT name FROM {SCHEMA}.{MIGRATIONS_TABLE} ORDER BY seq")
        ]
        unknown = [name for name in applied if name not in self.known]
        if unknown:
            raise CacheError(
                f"{self.location} was written by a newer version of pdffillr-sessions (unknown "
                f"schema migration{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}): "
                "refusing to downgrade; upgrade pdffillr-sessions"
            )
        if tuple(applied) != self.known[: len(applied)]:
            raise CacheError(f"{self.location} has a history schema this version does not know")
        return applied

    def _prepare(self) -> tuple[str, ...]:
        applied = self._applied_migrations()
        if len(applied) == len(self.known):
            return tuple(applied)
        if self._readonly:
            if not applied:
                raise CacheNotFoundError(
                    f"no pdffillr-sessions history in {self.location} yet (a Session or "
                    "`pdffillr-sessions sync` creates it)"
                )
            raise CacheError(
                f"{self.location} has an older history schema and is opened read-only: run a "
                "write command (e.g. a sync) once to upgrade it"
            )
        with self.write_transaction():  # one migrator at a time, however many machines start
            self._raw.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            self._raw.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{MIGRATIONS_TABLE} ("
                "seq INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
            )
            applied = self._applied_migrations()  # again, under the lock
            for seq, (name, statements) in enumerate(MIGRATIONS):
                if seq < len(applied):
                    continue
                for statement in statements:
                    self._raw.execute(statement)
                self._raw.execute(
                    f"INSERT INTO {SCHEMA}.{MIGRATIONS_TABLE} (seq, name, applied_at) "
                    "VALUES (%s, %s, to_char(now() AT TIME ZONE 'UTC', "
                    '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'))',
                    (seq + 1, name),
                )
            return tuple(self._applied_migrations())

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def write_transaction(self) -> Iterator[Conn]:
        """One transaction, after every other writer's (``WRITE_LOCK``); rolled back on any
        exception, Ctrl-C included."""
        with self._raw.transaction():
            self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield self.conn

    @contextmanager
    def read_transaction(self) -> Iterator[Conn]:
        if self.conn.in_transaction:
            yield self.conn
            return
        with self._raw.transaction():
            self._raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield self.conn

    # -- full text: PostgreSQL indexes the generated ``fts`` column itself -----------------------

    def max_rowid(self, conn: Conn) -> int:
        return 0

    def index_new(self, conn: Conn, after_rowid: int) -> None:
        return None

    def search(
        self, query: str, limit: int, scope: str | None, session_id: str | None
    ) -> list[SearchHit]:
        from ._pg_search import search

        return search(self._raw, query, limit, scope, session_id)

    # -- checks and sizes ----------------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """The schema is complete, and every row's search vector is what its content gives
        (PostgreSQL keeps its own pages checksummed and WAL-logged: there is no file to check)."""
        problems: list[str] = []
        missing = [
            t
            for t in ("sessions", "history", "create_intents")
            if self._raw.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{t}",)).fetchone() == (None,)
        ]
        if missing:
            return [f"missing table(s): {', '.join(missing)}"]
        row = self._raw.execute(
            "SELECT count(*) FROM history WHERE fts IS DISTINCT FROM "
            f"to_tsvector('simple', left(coalesce(content, ''), {FTS_CHARS}))"
        ).fetchone()
        if row is not None and row[0]:
            problems.append(f"{row[0]} history row(s) whose search vector does not match")
        return problems

    def size(self) -> int:
        """Bytes of the store's tables with their indexes and TOAST."""
        row = self._raw.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (SCHEMA,),
        ).fetchone()
        return int(row[0]) if row is not None else 0

    # -- owner locks ---------------------------------------------------------------------------

    def acquire_owner(self) -> OwnerLock | None:
        from ._pg_locks import PgOwnerLock

        return PgOwnerLock.acquire(self._url)

    def probe_owner(self, name: str | None) -> Probe:
        from ._pg_locks import PgProbe, lock_key

        key = lock_key(name)
        if key is None:
            return UnknownProbe()
        return PgProbe(self._raw, key)

    def close(self) -> None:
        self._raw.close()
