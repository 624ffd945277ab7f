"""How a history lands in the ``history`` table, inside the caller's write transaction.

The mirror converges to the server's history: after ``mirror_history`` with the server's full
list, the cache holds the server's entries in the server's order, whatever it held before. How
it decides cheaply, and what it refuses:

* **Dense means confirmed.** A full mirror numbers a session's rows ``seq`` 0..n-1 in the
  server's order. Entries appended locally (a send's reply, ``append_entries``) go after a
  one-number hole: their place in the server's order is provisional (two processes sending to
  one session may commit their replies in the other order). So "the rows are dense" is a cheap
  proof (one index lookup: ``count == max(seq) + 1``) that the cached order is the server's, and
  a hole says a full mirror must renumber.
* **The fast path** (dense rows whose last id is where the server's list has it) appends the
  server's new tail, or writes nothing at all. History is append-only (the contract): the
  cached rows are the server's prefix.
* **The slow path** (``merge``) inserts the ids the cache lacks and renumbers every row to the
  server's order. Rows the server no longer lists are kept, after the server's (the contract's
  history never shrinks: a server that forgets must not erase the local record).
* **Duplicate ids** in the server's list are refused with a ``ProtocolError`` naming the id and
  both positions, before anything is written: the contract makes ids unique within a session,
  the cache's index relies on it, and silently dropping one copy would make the cache disagree
  with the server without anyone knowing. ``sync`` reports such a session and goes on.

New rows are indexed for full-text search in bulk, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._exceptions import ProtocolError
from .._models import HistoryEntry
from . import _sql
from ._backend import Conn
from ._rows import entry_rows

__all__ = [
    "duplicate_ids",
    "index_new",
    "max_rowid",
    "merge",
    "prefix_ok",
    "raise_message_count",
    "refuse_duplicates",
    "tail",
]

Tail = tuple[int, int, str | None]


def tail(conn: Conn, scope: str, session_id: str) -> Tail:
    """(row count, max seq, id at max seq) of a session's cached history."""
    count, max_seq = conn.execute(
        "SELECT count(*), max(seq) FROM history WHERE scope = ? AND session_id = ?",
        (scope, session_id),
    ).fetchone()
    if not count:
        return 0, -1, None
    row = conn.execute(
        "SELECT id FROM history WHERE scope = ? AND session_id = ? AND seq = ? LIMIT 1",
        (scope, session_id, max_seq),
    ).fetchone()
    return count, max_seq, row[0] if row else None


def prefix_ok(cached: Tail, entries: Sequence[HistoryEntry]) -> bool:
    """Whether the cached rows are dense (0..n-1: laid out by a full mirror, in the server's
    order) and end where ``entries[n-1]`` is: then they are the server's first n entries."""
    count, max_seq, last_id = cached
    if count == 0:
        return True
    return count == max_seq + 1 and count <= len(entries) and entries[count - 1].id == last_id


def duplicate_ids(entries: Sequence[HistoryEntry]) -> tuple[str, int, int] | None:
    """The first id the list holds twice, with both positions; None when ids are unique."""
    ids = [e.id for e in entries]
    if len(set(ids)) == len(ids):
        return None
    first: dict[str, int] = {}
    for position, entry_id in enumerate(ids):
        if entry_id in first:
            return entry_id, first[entry_id], position
        first[entry_id] = position
    return None  # pragma: no cover - the set said there is one


def refuse_duplicates(session_id: str, entries: Sequence[HistoryEntry]) -> None:
    """``ProtocolError`` if the server's list holds an id twice (see the module docstring)."""
    found = duplicate_ids(entries)
    if found is not None:
        entry_id, first, second = found
        raise ProtocolError(
            f"the history of session {session_id!r} holds entry id {entry_id!r} twice (at "
            f"positions {first} and {second}); ids are unique within a session, so this "
            "history was not mirrored (the cache keeps what it had)"
        )


def max_rowid(conn: Conn) -> int:
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM history").fetchone()[0])


def index_new(conn: Conn, after_rowid: int) -> None:
    """Index every history row above ``after_rowid`` (one statement: faster than a trigger)."""
    conn.execute(
        "INSERT INTO history_fts (rowid, content) "
        "SELECT rowid, content FROM history WHERE rowid > ?",
        (after_rowid,),
    )


def merge(
    conn: Conn, scope: str, session_id: str, entries: Sequence[HistoryEntry]
) -> tuple[int, int]:
    """The slow path: insert unknown ids, then renumber every row to the server's order.

    ``entries`` holds no duplicate id (``refuse_duplicates`` ran). Returns (rows inserted,
    rows renumbered).
    """
    existing: dict[str, tuple[int, int]] = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT id, rowid, seq FROM history WHERE scope = ? AND session_id = ? ORDER BY seq",
            (scope, session_id),
        )
    }
    order = {e.id: i for i, e in enumerate(entries)}
    new = [e for e in entries if e.id not in existing]
    # Cached ids the server no longer lists keep their relative order, after the rest.
    for entry_id in existing:
        if entry_id not in order:
            order[entry_id] = len(order)
    fixes = [
        (order[entry_id], rowid)
        for entry_id, (rowid, seq) in existing.items()
        if order[entry_id] != seq
    ]
    if fixes:
        conn.executemany("UPDATE history SET seq = ? WHERE rowid = ?", fixes)
    rows = entry_rows(scope, session_id, new, 0)
    renumbered = ((*r[:3], order[r[2]], *r[4:]) for r in rows)
    cur = conn.executemany(_sql.INSERT_HISTORY, renumbered)
    return max(cur.rowcount, 0), len(fixes)


def raise_message_count(conn: Conn, scope: str, session_id: str) -> None:
    """Store ``sessions.message_count`` >= the entries cached for it.

    The contract makes ``message_count`` the number of history entries, and history is
    append-only: once we hold N entries the server's count is at least N, so the row does not
    keep showing the count it had at create time until the next sync.
    """
    (count,) = conn.execute(
        "SELECT count(*) FROM history WHERE scope = ? AND session_id = ?", (scope, session_id)
    ).fetchone()
    conn.execute(
        "UPDATE sessions SET message_count = ? "
        "WHERE scope = ? AND session_id = ? AND message_count < ?",
        (count, scope, session_id, count),
    )


def mark_mirrored(conn: Conn, scope: str, session_id: str, stamp: str) -> None:
    """Record that the session's full history was just mirrored (``synced_at``)."""
    conn.execute(
        "UPDATE sessions SET synced_at = ? WHERE scope = ? AND session_id = ?",
        (stamp, scope, session_id),
    )


def needs_mark(conn: Conn, scope: str, session_id: str) -> bool:
    """Whether the session's row exists and was never marked mirrored since it changed."""
    row = conn.execute(
        "SELECT synced_at IS NULL FROM sessions WHERE scope = ? AND session_id = ?",
        (scope, session_id),
    ).fetchone()
    return bool(row and row[0])
