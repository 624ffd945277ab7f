"""The Datasette side of ``serve``: a read-only database and the plugin hooks of its pages.

This module imports Datasette, so only ``_serve.build_datasette`` imports it, after checking
that the ``[web]`` extra is installed. Datasette's plugin manager is global to the process: the
hooks are registered once and act only on the ``Datasette`` instances made here (a program that
embeds another Datasette is left alone).
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import markupsafe
from datasette import hookimpl
from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm
from datasette.utils.asgi import Response

from . import _serve
from ._exceptions import CacheError
from .cache._files import readonly_uri
from .cache._sql import fts_query

__all__ = ["TEMPLATES", "make_datasette"]

#: Templates that extend Datasette's own (``query-<db>-<canned query>.html``).
TEMPLATES = Path(__file__).with_name("_datasette_templates")


class ReadOnlyCache(Database):  # type: ignore[misc]  # Datasette ships no type information
    """The cache file as Datasette sees it: every connection read-only, none ever for writing.

    Datasette would open a mutable file with ``mode=ro`` from an unquoted path (a ``?`` or
    ``#`` in it breaks the URI) and an immutable one without its WAL; this uses the URI of the
    offline commands instead, and ``query_only`` on top, so no statement can write.
    """

    def __init__(self, ds: Any, path: Path) -> None:
        super().__init__(ds, path=str(path), is_mutable=True)
        self._cache_path = path

    def connect(self, write: bool = False) -> sqlite3.Connection:
        if write:
            raise CacheError(f"{self._cache_path} is served read-only: nothing may write to it")
        conn = sqlite3.connect(readonly_uri(self._cache_path), uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        self._all_file_connections.append(conn)
        return conn


def make_datasette(
    path: Path, *, name: str, metadata: dict[str, Any], settings: dict[str, Any]
) -> Any:
    """A Datasette holding only the cache at ``path``, under ``name``."""
    if pm.get_plugin(_serve.PLUGIN_NAME) is None:
        pm.register(sys.modules[__name__], name=_serve.PLUGIN_NAME)
    ds = Datasette(metadata=metadata, settings=settings, template_dir=str(TEMPLATES))
    ds.remove_database("_memory")  # added when no file is given; this Datasette serves one
    ds.add_database(ReadOnlyCache(ds, path), name=name)
    return ds


def _served(datasette: Any) -> str | None:
    """The name of the cache in ``datasette`` if ``make_datasette`` made it, else None."""
    config = datasette.plugin_config(_serve.PLUGIN_NAME)
    if not isinstance(config, dict):
        return None
    name = config.get("database")
    return name if isinstance(name, str) else None


def _transcript_url(datasette: Any, name: str, session_id: str) -> str:
    query = urlencode({"session_id": session_id})
    return f"{datasette.urls.database(name)}/{_serve.TRANSCRIPT_QUERY}?{query}"


def _link(url: str, text: str) -> markupsafe.Markup:
    return markupsafe.Markup('<a href="{}">{}</a>').format(url, text)


def _fts(text: object) -> str:
    # An empty query is an FTS5 syntax error; the empty phrase matches nothing, as it should.
    return fts_query("" if text is None else str(text)) or '""'


# -- the plugin hooks (this module is the plugin) ------------------------------------------


def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    """The search page's SQL function: the library's own user-text-to-FTS5 query."""
    if database == _served(datasette):
        conn.create_function(_serve.FTS_FUNCTION, 1, _fts, deterministic=True)


def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any
) -> markupsafe.Markup | None:
    """Session ids link to their transcript; on the pages, so do titles."""
    name = _served(datasette)
    if name is None or database != name:
        return None
    if column in _serve.SESSION_COLUMNS and isinstance(value, str) and value:
        return _link(_transcript_url(datasette, name, value), value)
    if table is None and column in _serve.TITLE_COLUMNS:
        names = row.keys()  # a sqlite3.Row: iterating it gives values, not names
        ids = [row[k] for k in names if k in _serve.SESSION_COLUMNS]
        if ids and isinstance(ids[0], str) and ids[0]:
            return _link(_transcript_url(datasette, name, ids[0]), value or "Untitled")
    return None


def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    """``/`` opens the sessions page."""
    if _served(datasette) is None:
        return []
    home = datasette.urls.path(_serve.sessions_path())

    async def to_sessions() -> Any:
        return Response.redirect(home)

    return [(r"^/$", to_sessions)]


def extra_template_vars(
    template: str,
    database: str | None,
    table: str | None,
    columns: Any,
    view_name: str,
    request: Any,
    datasette: Any,
) -> Any:
    """The pages' links (sessions, search) and, on a transcript, the session's heading."""
    name = _served(datasette)
    if name is None or database != name:
        return {}
    links = {
        "pdffillr_sessions_url": datasette.urls.path(_serve.sessions_path()),
        "pdffillr_search_url": f"{datasette.urls.database(name)}/{_serve.SEARCH_QUERY}",
    }
    transcript = f"{datasette.urls.database(name)}/{_serve.TRANSCRIPT_QUERY}"
    if request is None or request.path != transcript:
        return links
    session_id = request.args.get("session_id")

    async def heading() -> dict[str, Any]:
        found = None
        if session_id:
            result = await datasette.get_database(name).execute(
                _serve.SESSION_HEADER_SQL, {"session_id": session_id}
            )
            row = result.first()
            found = dict(row) if row is not None else None
        return {**links, "pdffillr_session": found, "pdffillr_session_id": session_id}

    return heading


# Datasette's hook marker is untyped: applied as a call, it leaves these functions typed.
for _hook in (prepare_connection, render_cell, register_routes, extra_template_vars):
    hookimpl(_hook)
