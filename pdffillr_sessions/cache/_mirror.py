"""How a history lands in the ``history`` table, inside the caller's write transaction.

The fast path appends after the cached rows when they are a prefix of the server's history
(the usual case); the slow path (``merge``) inserts unknown ids and renumbers ``seq`` to the
server's order. New rows are indexed for full-text search in bulk, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._models import HistoryEntry
from . import _sql
from ._backend import Conn
from ._rows import entry_rows

__all__ = ["index_new", "max_rowid", "merge", "prefix_ok", "raise_message_count", "tail"]

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
    """Whether the cached rows are numbered 0..n-1 and end where ``entries[n-1]`` is."""
    count, max_seq, last_id = cached
    if count == 0:
        return True
    return count == max_seq + 1 and count <= len(entries) and entries[count - 1].id == last_id


def max_rowid(conn: Conn) -> int:
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM history").fetchone()[0])


def index_new(conn: Conn, after_rowid: int) -> None:
    """Index every history row above ``after_rowid`` (one statement: faster than a trigger)."""
    conn.execute(
        "INSERT INTO history_fts (rowid, content) "
        "SELECT rowid, content FROM history WHERE rowid > ?",
        (after_rowid,),
    )


def merge(conn: Conn, scope: str, session_id: str, entries: Sequence[HistoryEntry]) -> int:
    """The slow path: insert unknown ids, then renumber seq to the server's order."""
    existing: dict[str, tuple[int, int]] = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT id, rowid, seq FROM history WHERE scope = ? AND session_id = ? ORDER BY seq",
            (scope, session_id),
        )
    }
    order: dict[str, int] = {}
    new: list[HistoryEntry] = []
    for e in entries:
        if e.id in order:
            continue
        order[e.id] = len(order)
        if e.id not in existing:
            new.append(e)
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
    return max(cur.rowcount, 0)


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
