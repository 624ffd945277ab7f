"""``pdffillr-sessions serve``: the history cache in Datasette, read-only, on 127.0.0.1.

Datasette opens the cache as it is, but a person browsing the raw tables sees the technical
columns (a key's scope fingerprint, the server's whole JSON object) on every row, session ids as
plain text, and no title next to an entry. What is served here is the same file with the pages
people want, all defined in this module and never stored in the file:

- **Sessions** (``/history/all_sessions``, and ``/``): titles, status and counts, newest first,
  each session linking to its transcript;
- **Transcript** (``/history/transcript?session_id=...``): one session's entries in the server's
  order, messages, documents and activity together, under the session's title;
- **Search** (``/history/search?q=...``): full-text search over every history, best first, each
  hit showing its session's title and linking back to the session.

These are canned queries in metadata (nothing is written, no SQL view is created), and the raw
tables stay one click away ("hidden tables") with their facets and Datasette's own search.

The file is never written: every connection is ``mode=ro`` with ``PRAGMA query_only`` (Datasette
asking for a write connection gets an error), through the same URI as the offline commands.
Datasette's ``--immutable`` is deliberately not used: an immutable reader ignores the ``-wal``
file, so it would not see what a running script has just mirrored, and it would read torn pages
if the file changed while being served.

Datasette is an optional extra (``pip install 'pdffillr-sessions[web]'``): it is imported only
here, only when serving, and its absence is a ``ConfigurationError`` that says how to install it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ._exceptions import ConfigurationError
from ._paths import default_cache_path

__all__ = [
    "DB_NAME",
    "DEFAULT_PORT",
    "HOST",
    "build_datasette",
    "datasette_metadata",
    "datasette_settings",
    "install_command",
    "search_path",
    "serve",
    "sessions_path",
    "transcript_path",
]

#: Loopback only: the cache holds private conversations, and Datasette has no authentication.
HOST = "127.0.0.1"
#: Datasette's own default port.
DEFAULT_PORT = 8001
#: The name (and URL segment) of the cache in Datasette, whatever the file is called, so that
#: the pages' addresses do not depend on the file name.
DB_NAME = "history"
SESSIONS_QUERY = "all_sessions"
TRANSCRIPT_QUERY = "transcript"
SEARCH_QUERY = "search"
#: The plugin's name in Datasette, and its configuration key in the metadata: the hooks act only
#: on a Datasette whose metadata configures them (they are global to the process).
PLUGIN_NAME = "pdffillr_sessions"
#: Columns holding a session id: shown as a link to that session's transcript.
SESSION_COLUMNS = ("session", "session_id")
#: Columns of the three pages holding a session's title: linked like the session id in the same
#: row, since the title is what a person clicks.
TITLE_COLUMNS = ("title",)
#: The SQL function the search page matches with: the library's own user-text-to-FTS5 function,
#: so that the page finds what ``pdffillr-sessions search`` finds, and no input is a syntax error.
FTS_FUNCTION = "pdffillr_fts_query"
DIST_NAME = "pdffillr-sessions"

# A session can be cached under several key scopes (two keys of one account see the same
# sessions). The pages show each session once: the row updated last, and the history kept under
# that row's scope.
_ONE_ROW_PER_SESSION = """
    SELECT *, row_number() OVER (
        PARTITION BY session_id ORDER BY updated_at DESC, scope
    ) AS pick
    FROM sessions
"""


def _utc(column: str) -> str:
    """A stored ``2026-01-31T09:30:00.000000Z`` as ``2026-01-31 09:30:00``: one style, to the
    second, for every page (the column names say UTC)."""
    return f"strftime('%Y-%m-%d %H:%M:%S', {column})"


SESSIONS_SQL = f"""
WITH one AS ({_ONE_ROW_PER_SESSION}),
counts AS (
    SELECT scope, session_id, count(*) AS entries,
           sum(type = 'message') AS messages,
           sum(type = 'document') AS documents,
           sum(type = 'activity') AS activity
    FROM history GROUP BY scope, session_id
)
SELECT s.title AS title,
       s.status AS status,
       coalesce(c.entries, 0) AS entries,
       coalesce(c.messages, 0) AS messages,
       coalesce(c.documents, 0) AS documents,
       coalesce(c.activity, 0) AS activity,
       {_utc("s.created_at")} AS "created (UTC)",
       {_utc("s.ended_at")} AS "ended (UTC)",
       replace(s.local_state, '_', ' ') AS "on this machine",
       s.session_id AS session
FROM one s
LEFT JOIN counts c ON c.scope = s.scope AND c.session_id = s.session_id
WHERE s.pick = 1
ORDER BY s.created_at DESC, s.session_id
"""

TRANSCRIPT_SQL = f"""
SELECT h.seq + 1 AS "#",
       {_utc("h.created_at")} AS "time (UTC)",
       h.type AS type,
       h.role AS role,
       h.content AS content
FROM history h
WHERE h.session_id = :session_id
  AND h.scope = coalesce(
      (SELECT scope FROM sessions WHERE session_id = :session_id
       ORDER BY updated_at DESC, scope LIMIT 1),
      (SELECT scope FROM history WHERE session_id = :session_id LIMIT 1)
  )
ORDER BY h.seq
"""

#: One session's heading on its transcript page: the row the sessions page shows.
SESSION_HEADER_SQL = f"""
SELECT s.session_id, s.title, s.status, s.message_count,
       {_utc("s.created_at")} AS created, {_utc("s.ended_at")} AS ended,
       (SELECT count(*) FROM history h
        WHERE h.scope = s.scope AND h.session_id = s.session_id) AS entries
FROM sessions s WHERE s.session_id = :session_id
ORDER BY s.updated_at DESC, s.scope LIMIT 1
"""

#: FTS5 ranks (and cuts) first, on the index alone; only the best rows are joined and titled.
SEARCH_SQL = f"""
WITH best AS (
    SELECT rowid, rank, snippet(history_fts, 0, '[', ']', '…', 16) AS snip
    FROM history_fts
    WHERE history_fts MATCH {FTS_FUNCTION}(:q)
    ORDER BY rank LIMIT 500
)
SELECT s.title AS title,
       h.type AS type,
       h.role AS role,
       min(best.snip) AS "match",
       {_utc("h.created_at")} AS "time (UTC)",
       h.session_id AS session
FROM best
JOIN history h ON h.rowid = best.rowid
LEFT JOIN sessions s ON s.scope = h.scope AND s.session_id = h.session_id
GROUP BY h.session_id, h.id
ORDER BY min(best.rank)
LIMIT 100
"""

#: Tables people do not browse: the FTS index's shadow tables, the create intents reap works
#: from, the migrations record. ``sessions`` and ``history`` are hidden too, behind the pages
#: above; all stay reachable from the database page's "hidden tables" link.
_HIDDEN_TABLES = (
    "sessions",
    "history",
    "create_intents",
    "history_fts",
    "history_fts_config",
    "history_fts_data",
    "history_fts_docsize",
    "history_fts_idx",
    "_sqlite_migrations",
)


def datasette_metadata() -> dict[str, Any]:
    """The metadata ``serve`` gives Datasette: titles, hidden tables and the three pages."""
    return {
        "title": "Pdffillr session history",
        "plugins": {PLUGIN_NAME: {"database": DB_NAME}},
        "description": "Sessions mirrored by pdffillr-sessions, read-only.",
        "databases": {
            DB_NAME: {
                "tables": {
                    **{name: {"hidden": True} for name in _HIDDEN_TABLES},
                    "sessions": {
                        "hidden": True,
                        "label_column": "title",
                        "sort_desc": "created_at",
                        "facets": ["status"],
                    },
                    "history": {"hidden": True, "sort": "seq", "facets": ["type", "role"]},
                },
                "queries": {
                    SESSIONS_QUERY: {
                        "title": "Sessions",
                        "description": "Every cached session, newest first: open one to read "
                        "its transcript.",
                        "sql": SESSIONS_SQL,
                        "hide_sql": True,
                    },
                    TRANSCRIPT_QUERY: {
                        "title": "Transcript",
                        "description": "One session's history in the server's order.",
                        "sql": TRANSCRIPT_SQL,
                        "hide_sql": True,
                    },
                    SEARCH_QUERY: {
                        "title": "Search history",
                        "description": "Full-text search over every cached history, best "
                        "match first, read as `pdffillr-sessions search` reads it.",
                        "sql": SEARCH_SQL,
                        "hide_sql": True,
                    },
                },
            }
        },
    }


def datasette_settings() -> dict[str, Any]:
    """Datasette settings: whole entries (a transcript is for reading) and whole sessions."""
    return {
        "truncate_cells_html": 0,
        "max_returned_rows": 10_000,
        "sql_time_limit_ms": 5_000,
    }


def sessions_path() -> str:
    """The path of the sessions page."""
    return f"/{DB_NAME}/{SESSIONS_QUERY}"


def transcript_path(session_id: str) -> str:
    """The path of one session's transcript."""
    return f"/{DB_NAME}/{TRANSCRIPT_QUERY}?{urlencode({'session_id': session_id})}"


def search_path(query: str) -> str:
    """The path of the search page for ``query``."""
    return f"/{DB_NAME}/{SEARCH_QUERY}?{urlencode({'q': query})}"


def install_command(package_dir: Path | None = None) -> str:
    """The command that installs the ``[web]`` extra into this very interpreter.

    Run from a checkout (``pip install -e .``, as the README does), that is the checkout again,
    with the extra: asking the index for the package could find nothing, or another version.
    ``package_dir`` is where this package was imported from (a test may give another).
    """
    import shlex
    import tomllib

    checkout = (package_dir or Path(__file__).resolve().parent).parent
    try:
        project = tomllib.loads((checkout / "pyproject.toml").read_text("utf-8")).get("project")
        ours = isinstance(project, dict) and project.get("name") == DIST_NAME
    except (OSError, ValueError):  # no pyproject.toml (an installed wheel), or not TOML
        ours = False
    target = ["-e", f"{checkout}[web]"] if ours else [f"{DIST_NAME}[web]"]
    return shlex.join([sys.executable, "-m", "pip", "install", *target])


def _require_datasette() -> None:
    try:
        import datasette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            f"serving the history needs Datasette, an optional extra: {install_command()}"
        ) from None


def build_datasette(path: Path | None = None) -> Any:
    """A ``Datasette`` serving the cache at ``path`` read-only, with the project's pages.

    The file is checked first the way every reader checks it (a missing, foreign, corrupt or
    newer file is a ``CacheError``, and is left as it was): nothing is served from a file that
    is not a cache. Datasette's startup hooks still have to run (``await ds.invoke_startup()``)
    before it answers; ``serve`` does that.
    """
    _require_datasette()
    from .cache import HistoryCache

    path = (path if path is not None else default_cache_path()).absolute()
    if not path.exists():
        raise ConfigurationError(
            f"no history cache at {path} (nothing recorded yet: run a Session, or "
            "`pdffillr-sessions sync`)"
        )
    with HistoryCache(path, readonly=True):
        pass
    from . import _datasette_plugin

    return _datasette_plugin.make_datasette(
        path, name=DB_NAME, metadata=datasette_metadata(), settings=datasette_settings()
    )


def serve(
    path: Path | None = None,
    *,
    port: int = DEFAULT_PORT,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the cache at ``path`` (default: the default cache) on 127.0.0.1 until Ctrl-C,
    which returns normally.

    ``port=0`` takes any free port. The socket is bound before ``ready(url)`` is called with the
    sessions page's address, so a caller (or a test) can open it at once.
    """
    import asyncio  # here, not at the top: the command line imports this module at start-up
    import contextlib
    import socket

    ds = build_datasette(path)
    import uvicorn

    asyncio.run(ds.invoke_startup())

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {HOST}:{port}: {exc.strerror or exc} (try another --port, "
                "or --port 0 for any free one)"
            ) from None
        sock.listen(128)
        bound_port = sock.getsockname()[1]
        config = uvicorn.Config(ds.app(), lifespan="on", log_level="warning", workers=1)
        server = uvicorn.Server(config)
        if ready is not None:
            ready(f"http://{HOST}:{bound_port}{sessions_path()}")
        # uvicorn shuts down cleanly on Ctrl-C, then re-raises it: that is the normal end.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    finally:
        sock.close()
