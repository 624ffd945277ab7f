"""The PostgreSQL schema of the history store, as versioned migrations of its own.

Everything lives in one PostgreSQL schema, ``pdffillr_sessions`` (a database shared with other
applications keeps its names; the connection's ``search_path`` points there, so the store's
statements name the tables as in SQLite). The tables have SQLite's shape (same columns, same
text timestamps, same ``rowid`` for history rows) so the store's statements and row mapping
are shared; what differs:

* ``history.fts``, a stored ``tsvector`` generated from the first ``FTS_CHARS`` characters of
  ``content`` with the ``simple`` configuration (lower-cased words, no stemming: like SQLite's
  ``unicode61``), GIN-indexed. PostgreSQL computes it on insert in the same transaction, so there
  is no separate index step and no trigger. (A ``tsvector`` holds at most 1 MB: a longer entry is
  stored whole and searchable by its first ``FTS_CHARS`` characters.)
* Text that sorts is ``COLLATE "C"``: byte order, as in SQLite, whatever the database's locale.
* A partial index on pending sessions, so ``reap`` reads only what it may act on.

Migrations are recorded in ``pdffillr_sessions.migrations`` (name, applied_at), applied in one
transaction under the store's write lock (``_pg``), and a database that records a migration this
version does not know is refused, never downgraded. Never edit a released migration: append one.
"""

from __future__ import annotations

__all__ = ["FTS_CHARS", "MIGRATIONS", "MIGRATIONS_TABLE", "SCHEMA", "known_migrations"]

SCHEMA = "pdffillr_sessions"
MIGRATIONS_TABLE = "migrations"
#: Characters of an entry indexed for search: a tsvector is limited to 1 MB, which 100,000
#: characters cannot exceed whatever the words.
FTS_CHARS = 100_000

_P001 = (
    f"""
    CREATE TABLE {SCHEMA}.sessions (
        scope TEXT COLLATE "C" NOT NULL,
        session_id TEXT COLLATE "C" NOT NULL,
        title TEXT,
        status TEXT NOT NULL,
        message_count BIGINT NOT NULL DEFAULT 0,
        created_at TEXT COLLATE "C" NOT NULL,
        ended_at TEXT COLLATE "C",
        local_state TEXT CHECK (local_state IN ('open', 'end_pending', 'ended')),
        local_error TEXT,
        opened_at TEXT COLLATE "C",
        updated_at TEXT COLLATE "C" NOT NULL,
        synced_at TEXT COLLATE "C",
        raw TEXT NOT NULL,
        opened_pid INTEGER,
        opened_host TEXT,
        server TEXT,
        owner_lock TEXT,
        PRIMARY KEY (scope, session_id)
    )
    """,
    f"CREATE INDEX sessions_scope_created_at ON {SCHEMA}.sessions (scope, created_at)",
    f"CREATE INDEX sessions_created_at ON {SCHEMA}.sessions (created_at)",
    f"CREATE INDEX sessions_pending ON {SCHEMA}.sessions (scope, created_at) "
    "WHERE local_state IN ('open', 'end_pending')",
    f"""
    CREATE TABLE {SCHEMA}.history (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        scope TEXT COLLATE "C" NOT NULL,
        session_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        type TEXT NOT NULL,
        role TEXT,
        content TEXT,
        created_at TEXT COLLATE "C" NOT NULL,
        raw TEXT NOT NULL,
        fts TSVECTOR GENERATED ALWAYS AS
            (to_tsvector('simple', left(coalesce(content, ''), {FTS_CHARS}))) STORED
    )
    """,
    f"CREATE UNIQUE INDEX history_scope_session_id ON {SCHEMA}.history (scope, session_id, id)",
    f"CREATE INDEX history_scope_session_seq ON {SCHEMA}.history (scope, session_id, seq)",
    f"CREATE INDEX history_fts ON {SCHEMA}.history USING gin (fts)",
    f"""
    CREATE TABLE {SCHEMA}.create_intents (
        scope TEXT COLLATE "C" NOT NULL,
        idempotency_key TEXT COLLATE "C" NOT NULL,
        title TEXT,
        recorded_at TEXT COLLATE "C" NOT NULL,
        opened_pid INTEGER,
        opened_host TEXT,
        server TEXT,
        owner_lock TEXT,
        PRIMARY KEY (scope, idempotency_key)
    )
    """,
)

#: (name, statements), in order. p001 is SQLite's m001-m004 in one step (``server`` and
#: ``owner_lock``: the server a row belongs to, and the advisory lock its owner holds).
MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (("p001_initial_schema", _P001),)


def known_migrations() -> tuple[str, ...]:
    return tuple(name for name, _ in MIGRATIONS)
