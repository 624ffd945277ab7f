"""The SQL the store runs: statement text, and the one function that builds user input into SQL.

The local states come from ``_contract`` so that their spelling exists once; the schema's CHECK
constraint (a released migration) spells them too and must never change.
"""

from __future__ import annotations

import re
import unicodedata

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

#: ``entry_count`` and ``last_seq`` (the session's max(seq)) are columns the writes keep in the
#: same transaction as the history rows: a listing reads no history. Rows that are not dense
#: (count != max + 1) hold locally appended entries whose order a full mirror has not confirmed
#: yet (``_mirror``).
SESSION_SELECT = """
SELECT s.session_id, s.scope, s.title, s.status, s.message_count, s.created_at, s.ended_at,
       s.entry_count, s.local_state, s.local_error, s.opened_at, s.synced_at, s.raw,
       s.opened_pid, s.opened_host, s.server, s.owner_lock, s.last_seq
FROM sessions s
"""

#: After history rows were written: the session's counts, and ``message_count`` raised to at
#: least the rows held (the contract makes it the number of entries, and history only grows).
#: Arguments: entry_count, last_seq, count (twice), scope, session_id.
SET_COUNTS = """
UPDATE sessions SET entry_count = ?, last_seq = ?,
    message_count = CASE WHEN message_count < ? THEN ? ELSE message_count END
WHERE scope = ? AND session_id = ?
"""


#: A quoted phrase (up to the next quote, line breaks included) or a run of anything else but
#: whitespace and quotes: sqlite-utils' ``quote_fts`` reads a query this way (``".*?"`` and
#: ``\s+``), but its ``.`` stops at a line break, which leaves a lone quote that FTS5 refuses.
_PHRASE_OR_WORD = re.compile(r'"([^"]*)"|[^\s"]+')
#: What FTS5's unicode61 tokenizer and PostgreSQL's parser can never read as part of a word, and
#: SQLite cannot take in a query (a NUL ends its C string; a lone surrogate is no UTF-8).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def query_tokens(query: str) -> list[str]:
    """The search query language, the same for SQLite, PostgreSQL and the Datasette page, and
    the same as ``sqlite-utils search --quote`` and Datasette's table search on the same file
    (their ``quote_fts``/``escape_fts``): a quoted phrase (``"side letter"``) is matched as a
    phrase, its words next to each other in that order; every other whitespace-separated
    token is a phrase of its own words (``side-letter`` is "side" then "letter"); every phrase
    is required, in any order. An unbalanced quote runs to the end of the query, as
    ``quote_fts`` closes it. Nothing else is syntax: ``OR``, ``NOT``, ``NEAR``, ``*``, ``^``,
    ``col:`` are words or punctuation. Returns the phrases' texts.

    Phrases with no letter or digit are dropped: FTS5 ignores such a phrase beside others and
    finds nothing for it alone, as an empty list does here. Where ``quote_fts`` would make a
    query FTS5 refuses (a line break inside quotes, a NUL, a lone surrogate), this reads it as
    the phrase it was meant to be: line breaks are whitespace inside the phrase, NUL and lone
    surrogates separate words (SQLite reads an FTS5 query as a C string: a NUL would cut it).
    """
    if query.count('"') % 2:
        query += '"'
    phrases = []
    for match in _PHRASE_OR_WORD.finditer(query):
        phrase = match.group(0) if match.group(1) is None else match.group(1)
        phrase = _NOT_TEXT.sub(" ", phrase)
        if any(ch.isalnum() or unicodedata.category(ch) == "Co" for ch in phrase):
            phrases.append(phrase)
    return phrases


def fts_query(query: str) -> str:
    """Every phrase (``query_tokens``) as a quoted FTS5 string: no user syntax survives."""
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
