"""What ``HistoryCache`` needs from a database: the seam between the store and its two dialects.

``HistoryCache`` (``_store``) holds every decision about what is written and read: scoping, the
row shapes (``_rows``), the statement text (``_sql``), incremental mirrors (``_mirror``). A
backend supplies only what differs between SQLite and PostgreSQL:

* a connection that runs the store's statements (``Conn``): SQLite's own, or an adapter that
  translates them to PostgreSQL's dialect (``_pg_dialect``);
* how a write and a multi-statement read are made one transaction;
* full-text indexing and search, integrity checks, the size on disk;
* the owner locks that tell ``reap`` whether a with-block still runs (``OwnerLock``/``Probe``).

``_sqlite`` and ``_pg`` implement it; ``open_backend`` picks one from the location.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .._owner import Liveness
from ._location import Location, is_postgres_url
from ._records import SearchHit

__all__ = ["Backend", "Conn", "Cursor", "Liveness", "OwnerLock", "Probe", "open_backend"]


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The part of a connection the store uses: ``sqlite3.Connection`` as it is."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor: ...

    @property
    def in_transaction(self) -> bool: ...


class OwnerLock(Protocol):
    """A lock a with-block holds while it runs, released by the database or kernel at its death.

    ``name`` goes into the records it owns; ``check`` raises when the lock is known to be lost
    (a PostgreSQL connection cut), so the block stops before its next send.
    """

    @property
    def name(self) -> str: ...

    def check(self) -> None: ...

    def release(self, *, resolved: bool) -> None: ...


class Probe(Protocol):
    """``reap``'s look at one record's lock: ``liveness``, and while ``dead`` the lock itself,
    held until ``close`` so that no other reaper works on the same record meanwhile."""

    @property
    def liveness(self) -> Liveness: ...

    def close(self, *, resolved: bool = False) -> None: ...

    def __enter__(self) -> Probe: ...

    def __exit__(self, *exc: object) -> None: ...


class Backend(Protocol):
    """One open database: what ``HistoryCache`` asks of SQLite or PostgreSQL."""

    #: Where it is (a path, or a URL whose password is never shown: see ``_location.display``).
    location: Location
    conn: Conn
    #: Names of the applied schema migrations, in order.
    applied: tuple[str, ...]
    #: How many migrations a current schema has (``schema_version`` is ``len(applied)``).
    known: tuple[str, ...]

    def write_transaction(self) -> AbstractContextManager[Conn]: ...

    def read_transaction(self) -> AbstractContextManager[Conn]: ...

    def max_rowid(self, conn: Conn) -> int: ...

    def index_new(self, conn: Conn, after_rowid: int) -> None: ...

    def search(
        self, query: str, limit: int, scope: str | None, session_id: str | None
    ) -> list[SearchHit]: ...

    def integrity_problems(self) -> list[str]: ...

    def size(self) -> int: ...

    def acquire_owner(self) -> OwnerLock | None: ...

    def probe_owner(self, name: str | None) -> Probe: ...

    def close(self) -> None: ...


class UnknownProbe:
    """The probe of a record with no lock to ask (older rows, or a backend without locks)."""

    liveness: Liveness = "unknown"

    def close(self, *, resolved: bool = False) -> None:
        return None

    def __enter__(self) -> UnknownProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def open_backend(location: Location, *, readonly: bool) -> Backend:
    """SQLite for a path, PostgreSQL for a ``postgresql://`` URL (psycopg imported only then)."""
    if is_postgres_url(location):
        try:
            from ._pg import PostgresBackend
        except ImportError as exc:
            from .._exceptions import ConfigurationError

            raise ConfigurationError(
                "a postgresql:// cache needs psycopg 3: pip install 'pdffillr-sessions[postgres]'"
                f" ({exc})"
            ) from None
        return PostgresBackend(str(location), readonly=readonly)
    from pathlib import Path

    from ._sqlite import SQLiteBackend

    return SQLiteBackend(Path(location), readonly=readonly)
