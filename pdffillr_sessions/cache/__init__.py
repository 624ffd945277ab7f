"""The history cache: an SQLite file other tools can open (sqlite-utils, Datasette), or a
PostgreSQL database many machines share (a ``postgresql://`` URL).

``HistoryCache`` is the store; the records it hands back are frozen values. The modules:
``_store`` (the store), ``_records`` (its values), ``_files`` (checks on the file before SQLite
opens it), ``_schema`` / ``_migrations`` (which schema a file has; the migrations registry),
``_sql`` (statement text), ``_rows`` (values <-> rows), ``_speedups`` (every speed trick, in one
visible place), ``_integrity`` (is the file sound), ``_open`` (what a ``cache=`` argument means),
``_mirror`` (how a history converges), ``_errors`` (every failure as a typed error),
``_location`` (a path or a URL), ``_backend`` (what the store needs from a database), ``_sqlite``
and ``_pg`` (the two backends), ``_pg_dialect``, ``_pg_schema``, ``_pg_search`` and
``_pg_locks`` (PostgreSQL's statements, schema, text search and owner locks).
"""

from __future__ import annotations

from ._open import CacheArg, cache_path, open_cache
from ._records import CachedSession, CacheStats, CreateIntent, SearchHit
from ._schema import KNOWN_MIGRATIONS
from ._store import HistoryCache

__all__ = [
    "KNOWN_MIGRATIONS",
    "CacheArg",
    "CacheStats",
    "CachedSession",
    "CreateIntent",
    "HistoryCache",
    "SearchHit",
    "cache_path",
    "open_cache",
]
