"""The SQL the store runs: statement text, and the one function that builds user input into SQL.

The local states come from ``_contract`` so that their spelling exists once; the schema's CHECK
constraint (a released migration) spells them too and must never change.
"""

from __future__ import annotations

from .._contract import LOCAL_END_PENDING, LOCAL_ENDED, LOCAL_OPEN, STATUS_ENDED

__all__ = [
    "HISTORY_COLS",
    "INSERT_HISTORY",
    "PENDING",
    "RECORD_OPENED",
    "SESSION_SELECT",
    "UPSERT_SESSION",
    "fts_query",
    "query_tokens",
    "scope_filter",
    "server_filter",
]

#: ``local_state IN {PENDING}``: opened here, end not confirmed.
PENDING = f"('{LOCAL_OPEN}', '{LOCAL_END_PENDING}')"

HISTORY_COLS = "id, type, role, content, created_at, raw"

#: What the server says about a session, taken from the row being upserted.
_SERVER_FIELDS = """title = excluded.title,
    status = excluded.status,
    message_count = excluded.message_count,
    created_at = excluded.created_at,
    ended_at = COALESCE(excluded.ended_at, sessions.ended_at),
    raw = excluded.raw"""

INSERT_HISTORY = (
    "INSERT INTO history (scope, session_id, id, seq, type, role, content, created_at, raw) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

#: An upsert may update a row only when it is of the same server, or when either side does not
#: say (a row written before servers were recorded, or a cache opened without a server). A row
#: of another server is never touched: the same id there is another session.
SAME_SERVER = (
    "sessions.server IS NULL OR excluded.server IS NULL OR sessions.server = excluded.server"
)

#: Mirror one listed session. ``synced_at`` (when its full history was last mirrored) is NULL
#: for a new row and reset to NULL when the server's description changed: the history must be
#: fetched again (``plan_sync``), and ``mirror_history`` sets it once it is.
UPSERT_SESSION = f"""
INSERT INTO sessions (scope, session_id, title, status, message_count, created_at, ended_at,
                      updated_at, synced_at, raw, server)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (scope, session_id) DO UPDATE SET
    {_SERVER_FIELDS},
    local_state = CASE WHEN excluded.status = '{STATUS_ENDED}'
                        AND sessions.local_state IN {PENDING}
                       THEN '{LOCAL_ENDED}' ELSE sessions.local_state END,
    local_error = CASE WHEN excluded.status = '{STATUS_ENDED}'
                        AND sessions.local_state IN {PENDING}
                       THEN NULL ELSE sessions.local_error END,
    server = COALESCE(sessions.server, excluded.server),
    updated_at = excluded.updated_at,
    synced_at = NULL
WHERE ({SAME_SERVER}) AND (
      sessions.title IS NOT excluded.title
   OR sessions.status IS NOT excluded.status
   OR sessions.message_count IS NOT excluded.message_count
   OR sessions.created_at IS NOT excluded.created_at
   OR sessions.raw IS NOT excluded.raw
   OR (excluded.ended_at IS NOT NULL AND sessions.ended_at IS NOT excluded.ended_at)
   OR (excluded.status = '{STATUS_ENDED}' AND sessions.local_state IN {PENDING})
   OR (sessions.server IS NULL AND excluded.server IS NOT NULL))
"""

RECORD_OPENED = f"""
INSERT INTO sessions (scope, session_id, title, status, message_count, created_at, ended_at,
                      local_state, opened_at, updated_at, synced_at, raw, opened_pid, opened_host,
                      server, owner_lock)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (scope, session_id) DO UPDATE SET
    {_SERVER_FIELDS},
    local_state = CASE
        WHEN sessions.local_state IS NULL THEN excluded.local_state
        WHEN excluded.local_state = '{LOCAL_ENDED}' THEN '{LOCAL_ENDED}'
        ELSE sessions.local_state END,
    opened_pid = CASE WHEN sessions.opened_at IS NULL
                      THEN excluded.opened_pid ELSE sessions.opened_pid END,
    opened_host = CASE WHEN sessions.opened_at IS NULL
                       THEN excluded.opened_host ELSE sessions.opened_host END,
    owner_lock = CASE WHEN sessions.opened_at IS NULL
                      THEN excluded.owner_lock ELSE sessions.owner_lock END,
    opened_at = COALESCE(sessions.opened_at, excluded.opened_at),
    server = COALESCE(sessions.server, excluded.server),
    updated_at = excluded.updated_at,
    synced_at = excluded.synced_at
WHERE {SAME_SERVER}
"""

#: The last column is the session's max(seq): rows that are not dense (count != max + 1) hold
#: locally appended entries whose order a full mirror has not confirmed yet (``_mirror``).
SESSION_SELECT = """
SELECT s.session_id, s.scope, s.title, s.status, s.message_count, s.created_at, s.ended_at,
       (SELECT count(*) FROM history h WHERE h.scope = s.scope AND h.session_id = s.session_id),
       s.local_state, s.local_error, s.opened_at, s.synced_at, s.raw, s.opened_pid, s.opened_host,
       s.server, s.owner_lock,
       (SELECT max(h.seq) FROM history h WHERE h.scope = s.scope AND h.session_id = s.session_id)
FROM sessions s
"""


def query_tokens(query: str) -> list[str]:
    """The search query language, the same for SQLite and PostgreSQL: whitespace-separated
    tokens, each matched as a phrase of its words (``side-letter`` is "side" then "letter"),
    every token required; no operator or other syntax. Tokens with no letter or digit are
    dropped.

    NUL separates tokens too: SQLite reads an FTS5 query as a C string, so a NUL inside a quoted
    token would cut it short ("unterminated string").
    """
    return [t for t in query.replace("\x00", " ").split() if any(ch.isalnum() for ch in t)]


def fts_query(query: str) -> str:
    """Every token (``query_tokens``) as a quoted FTS5 string: no user syntax survives."""
    return " ".join('"' + t.replace('"', '""') + '"' for t in query_tokens(query))


def scope_filter(scope: str | None, alias: str = "") -> tuple[str, tuple[str, ...]]:
    """A WHERE clause (and its arguments) restricting rows to ``scope``; None: every scope."""
    if scope is None:
        return "TRUE", ()
    return f"{alias}scope = ?", (scope,)


def server_filter(server: str | None, alias: str = "") -> tuple[str, tuple[str, ...]]:
    """A WHERE clause restricting rows to ``server`` and to rows that do not say which server
    they belong to (written before servers were recorded); None: every server."""
    if server is None:
        return "TRUE", ()
    return f"({alias}server = ? OR {alias}server IS NULL)", (server,)
