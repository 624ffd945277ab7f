"""PostgreSQL's dialect for the store's statements, and text PostgreSQL cannot hold.

The store's statements (``_sql`` and the store itself) are written once, in SQLite's spelling.
``translate`` turns one into PostgreSQL's: ``?`` placeholders become ``%s`` (a literal ``%``
doubled), and SQLite's ``a IS NOT b`` (null-safe inequality) becomes ``a IS DISTINCT FROM b``.
That is the whole difference for the statements the store shares; what differs more (schema,
full-text search, locks) lives in ``_pg_schema``, ``_pg_search`` and ``_pg_locks``. A test runs
every shared statement through PostgreSQL.

PostgreSQL text cannot contain NUL (U+0000), which a message may hold (the SQLite cache keeps it
exactly). Every string sent to PostgreSQL is escaped with ESC (U+001B): NUL becomes ESC + space,
ESC becomes ESC + ESC, and every text value read back is unescaped, so any text round-trips
exactly. (A space after ESC keeps words apart for the text search; tools reading the tables
directly see ESC + space where the server sent NUL.) The two adapters are registered on each
connection the store opens, nowhere else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Buffer, Dumper, Loader

from .._exceptions import CacheConnectionError, CacheError

__all__ = [
    "PgConn",
    "escape_text",
    "register_text_adapters",
    "translate",
    "typed_error",
    "unescape_text",
]

_ESC = "\x1b"
_ESCAPE = str.maketrans({"\x00": "\x1b ", "\x1b": "\x1b\x1b"})
_UNESCAPE = re.compile("\x1b(.)", re.DOTALL)
_UNESCAPED = {" ": "\x00", "\x1b": "\x1b"}

#: ``x IS NOT y`` (SQLite's null-safe comparison), but not ``IS NOT NULL`` (the same in both).
_IS_NOT = re.compile(r"\bIS NOT\b(?!\s+NULL\b)")


@functools.lru_cache(maxsize=256)
def translate(sql: str) -> str:
    """One of the store's statements (SQLite's spelling) in PostgreSQL's."""
    return _IS_NOT.sub("IS DISTINCT FROM", sql.replace("%", "%%")).replace("?", "%s")


def escape_text(text: str) -> str:
    """``text`` as PostgreSQL can store it (see the module docstring)."""
    if "\x00" in text or _ESC in text:
        return text.translate(_ESCAPE)
    return text


def unescape_text(text: str) -> str:
    """The text ``escape_text`` was given."""
    if _ESC not in text:
        return text
    return _UNESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), text)


class _EscapingDumper(Dumper):
    """Python ``str`` -> text parameter (unknown oid, as psycopg's default), NUL escaped."""

    oid = 0  # unknown: PostgreSQL infers the type from the statement, as with psycopg's default

    def dump(self, obj: str) -> bytes:
        return escape_text(obj).encode()


class _UnescapingLoader(Loader):
    """text column -> Python ``str``, NUL restored."""

    def load(self, data: Buffer) -> str:
        return unescape_text(bytes(data).decode())


def register_text_adapters(conn: psycopg.Connection[Any]) -> None:
    """Escape every string parameter and unescape every text value on ``conn``."""
    conn.adapters.register_dumper(str, _EscapingDumper)
    for type_name in ("text", "varchar"):
        conn.adapters.register_loader(type_name, _UnescapingLoader)


class _Cursor:
    """A psycopg cursor seen as the store's ``_backend.Cursor``."""

    __slots__ = ("_cur",)

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur)


def typed_error(exc: psycopg.Error) -> CacheError:
    """A psycopg error met while using the store, as the library's ``CacheError`` (a lost
    connection as ``CacheConnectionError``), on one line."""
    text = " ".join(str(exc).split())
    if isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable
    ):
        return CacheConnectionError(f"the PostgreSQL cache failed: {text}")
    return CacheError(f"the PostgreSQL cache failed: {text}")


class PgConn:
    """A psycopg connection (autocommit: transactions are explicit) that runs the store's
    statements as SQLite spells them (``translate``)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        try:
            return _Cursor(self.raw.execute(translate(sql), parameters))
        except psycopg.Error as exc:
            raise typed_error(exc) from None

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> _Cursor:
        cur = self.raw.cursor()
        try:
            cur.executemany(translate(sql), seq_of_parameters)
        except psycopg.Error as exc:
            raise typed_error(exc) from None
        return _Cursor(cur)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE
