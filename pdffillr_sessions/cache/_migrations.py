"""The schema of the history cache, as a registry of sqlite-utils migrations.

Each migration runs inside the ``BEGIN IMMEDIATE`` transaction that ``HistoryCache`` opens
around the pending-migration check, so several processes opening a fresh file at once apply
it exactly once. This module imports sqlite-utils (about 70 ms): the store imports it only
when a migration is pending, never on the read path.

Never edit a released migration: add a new function below. The names must also be listed in
``_schema.KNOWN_MIGRATIONS`` (checked by the tests and at apply time), which is what the cache
uses to recognise a file written by a newer version without importing this module.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Migrations

from ._schema import MIGRATION_SET

migrations = Migrations(MIGRATION_SET)

_INITIAL_SCHEMA = (
    """
    CREATE TABLE sessions (
        scope TEXT NOT NULL,
        session_id TEXT NOT NULL,
        title TEXT,
        status TEXT NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        ended_at TEXT,
        local_state TEXT CHECK (local_state IN ('open', 'end_pending', 'ended')),
        local_error TEXT,
        opened_at TEXT,
        updated_at TEXT NOT NULL,
        synced_at TEXT,
        raw TEXT NOT NULL,
        PRIMARY KEY (scope, session_id)
    )
    """,
    "CREATE INDEX sessions_scope_created_at ON sessions (scope, created_at)",
    "CREATE INDEX sessions_created_at ON sessions (created_at)",
    """
    CREATE TABLE history (
        rowid INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,
        session_id TEXT NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        role TEXT,
        content TEXT,
        created_at TEXT NOT NULL,
        raw TEXT NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX history_scope_session_id ON history (scope, session_id, id)",
    "CREATE INDEX history_scope_session_seq ON history (scope, session_id, seq)",
    # External-content FTS5 index over history.content (sqlite-utils naming). Inserts are
    # indexed in bulk by the cache inside the same transaction (much faster than a per-row
    # trigger); deletes and content updates made by other tools are kept in sync by triggers.
    """
    CREATE VIRTUAL TABLE history_fts USING fts5 (
        content, content="history", content_rowid="rowid"
    )
    """,
    """
    CREATE TRIGGER history_ad AFTER DELETE ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, content)
        VALUES ('delete', old.rowid, old.content);
    END
    """,
    """
    CREATE TRIGGER history_au AFTER UPDATE OF content ON history BEGIN
        INSERT INTO history_fts (history_fts, rowid, content)
        VALUES ('delete', old.rowid, old.content);
        INSERT INTO history_fts (rowid, content) VALUES (new.rowid, new.content);
    END
    """,
    """
    CREATE TABLE create_intents (
        scope TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        title TEXT,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (scope, idempotency_key)
    )
    """,
)


@migrations()
def m001_initial_schema(db: Any) -> None:
    for statement in _INITIAL_SCHEMA:
        db.execute(statement)


@migrations()
def m002_opened_by(db: Any) -> None:
    """Which process opened a session (or recorded a create intent). Shown to people only
    since ``m004_server_and_owner_lock``: ``reap`` asks the owner lock, never the pid."""
    for table in ("sessions", "create_intents"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN opened_pid INTEGER")
        db.execute(f"ALTER TABLE {table} ADD COLUMN opened_host TEXT")


#: How a READ-ONLY reader sees a file that lacks a migration: the columns it adds, per table.
#: ``_connect`` presents each table through one TEMP view (which shadows the main table for
#: unqualified names and needs no write to the file) adding every missing column as NULL, so
#: several missing migrations combine. A migration without an entry here makes older files
#: unreadable until a write command migrates them.
READ_COMPAT: dict[str, dict[str, tuple[str, ...]]] = {
    "m002_opened_by": {
        "sessions": ("opened_pid", "opened_host"),
        "create_intents": ("opened_pid", "opened_host"),
    },
    "m003_fts_hashsize": {},  # a write-time FTS setting: nothing changes for a reader
    "m004_server_and_owner_lock": {
        "sessions": ("server", "owner_lock"),
        "create_intents": ("server", "owner_lock"),
    },
    # Counted from the history by the view (a read-only reader cannot store them); the raw
    # column still holds whole objects, which the store reads as such (``_lean``).
    "m005_lean_history": {"sessions": ("entry_count", "last_seq")},
}

#: What a read-only reader's view computes for a column it adds (``t`` is the table's row);
#: NULL for any other.
READ_COMPAT_VALUES: dict[str, str] = {
    "entry_count": "(SELECT count(*) FROM main.history h "
    "WHERE h.scope = t.scope AND h.session_id = t.session_id)",
    "last_seq": "(SELECT max(h.seq) FROM main.history h "
    "WHERE h.scope = t.scope AND h.session_id = t.session_id)",
}


#: FTS5's in-memory buffer of pending terms (bytes): when a write transaction fills it, FTS5
#: flushes a new segment and automerge then merges segments. The 1 MB default makes a bulk mirror
#: of 10,000 entries flush and merge many small segments; 16 MB makes it about one segment per
#: mirror (measured: ~10 % faster mirrors, same index, same queries). Memory is used only while
#: a write transaction indexes that much. ("hashsize" is an FTS5 configuration option of
#: fts5_config.c, not listed in the FTS5 documentation; SQLite versions that do not know it
#: ignore it when they load the table's configuration.)
FTS_HASHSIZE = 16 * 1024 * 1024


@migrations()
def m003_fts_hashsize(db: Any) -> None:
    db.execute("INSERT INTO history_fts (history_fts, rank) VALUES ('hashsize', ?)", [FTS_HASHSIZE])


@migrations()
def m004_server_and_owner_lock(db: Any) -> None:
    """Which server (normalised base URL) a session or create intent belongs to, and the name
    of the lock file its owner holds while it runs (``_owner``).

    Rows written before this migration get NULL for both: their server is unknown (a 404 from
    whatever server ``reap`` or ``end`` talks to never marks them gone; a successful end claims
    them for that server) and they have no lock (``reap`` falls back to ``--older-than``).
    """
    for table in ("sessions", "create_intents"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN server TEXT")
        db.execute(f"ALTER TABLE {table} ADD COLUMN owner_lock TEXT")


#: Rows converted per statement by ``m005_lean_history`` (bounded memory on any file).
_LEAN_BATCH = 2000


@migrations()
def m005_lean_history(db: Any) -> None:
    """``history.raw`` keeps only what the other columns do not hold (``_lean``): the file was
    3.7 times its text because every entry's content was stored twice. And each session keeps
    the number of its history rows (``entry_count``) and their highest ``seq`` (``last_seq``),
    written in the same transaction as the rows, so that listing sessions reads no history.

    Every history row is rewritten (same rowid, same columns but ``raw``: the full-text index is
    untouched), batch by batch. The freed space is reused by later writes; ``VACUUM`` returns
    it to the file system at once. A session row inserted after history rows exist for it (a
    history mirrored before the session was listed) gets its counts from the trigger.
    """
    from ._lean import WHOLE, encode

    db.execute("ALTER TABLE sessions ADD COLUMN entry_count INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE sessions ADD COLUMN last_seq INTEGER")
    db.execute(
        f"UPDATE sessions SET entry_count = ({_COUNT_OF_ROW}), last_seq = ({_LAST_SEQ_OF_ROW})"
    )
    db.execute(
        f"""CREATE TRIGGER sessions_entry_count AFTER INSERT ON sessions BEGIN
            UPDATE sessions SET entry_count = ({_COUNT_OF_NEW}), last_seq = ({_LAST_SEQ_OF_NEW})
            WHERE scope = new.scope AND session_id = new.session_id;
        END"""
    )
    conn = db.conn
    after = -1
    while True:
        rows = conn.execute(
            "SELECT rowid, id, type, role, content, created_at, raw FROM history "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, _LEAN_BATCH),
        ).fetchall()
        if not rows:
            return
        updates = []
        for rowid, entry_id, type_, role, content, col, raw in rows:
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                obj = None
            if isinstance(obj, dict):
                lean = encode(obj, entry_id, type_, role, content, col)
            else:  # not an object: kept as it was (read back as an empty mapping, as before)
                lean = WHOLE + raw
            updates.append((lean, rowid))
        conn.executemany("UPDATE history SET raw = ? WHERE rowid = ?", updates)
        after = rows[-1][0]


_HISTORY_OF = "FROM history h WHERE h.scope = {t}.scope AND h.session_id = {t}.session_id"
_COUNT_OF_ROW = "SELECT count(*) " + _HISTORY_OF.format(t="sessions")
_LAST_SEQ_OF_ROW = "SELECT max(h.seq) " + _HISTORY_OF.format(t="sessions")
_COUNT_OF_NEW = "SELECT count(*) " + _HISTORY_OF.format(t="new")
_LAST_SEQ_OF_NEW = "SELECT max(h.seq) " + _HISTORY_OF.format(t="new")


def names() -> list[str]:
    """The names of every migration this version knows, in order."""
    return [m.name for m in migrations._migrations]


def apply(conn: Any) -> None:
    """Apply the pending migrations on ``conn``, which must already be in a write transaction."""
    from sqlite_utils import Database

    db = Database(conn, execute_plugins=False, recursive_triggers=False)
    migrations.apply(db)
