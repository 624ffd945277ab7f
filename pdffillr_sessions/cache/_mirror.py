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

* **Less work per entry.** A history arrives either as ``HistoryEntry`` values or as the
  server's parsed JSON objects (``sync``: ``JsonHistory``), whose rows are built straight from
  the objects (``_rows.json_entry_rows``), checked as ``parse_entry`` checks them. Only the rows
  the cache lacks are built: on the fast path the cached prefix is neither rebuilt nor
  re-checked (one id compared), and new ids are checked against each other and against the
  cached ones by the index (a collision means the server's list is not an extension of ours:
  the slow path, which checks everything, takes over).

New rows are indexed for full-text search in bulk, in the same transaction, and the session's
counts (``entry_count``, ``last_seq``) are written with them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import attrs

from .._exceptions import ProtocolError
from .._models import HistoryEntry
from . import _sql
from ._backend import Conn
from ._rows import entry_rows, json_entry_rows

__all__ = [
    "EntryHistory",
    "Incoming",
    "JsonHistory",
    "Plan",
    "apply",
    "duplicate_ids",
    "index_new",
    "max_rowid",
    "merge",
    "plan",
    "prefix_ok",
    "refuse_duplicates",
    "tail",
]

Tail = tuple[int, int, str | None]
Row = tuple[Any, ...]


class Incoming(Protocol):
    """A session's full history as the server listed it, oldest first."""

    def __len__(self) -> int: ...

    def id_at(self, position: int) -> str | None:
        """The id at ``position`` (None when that item has no string id)."""
        ...

    def rows(self, scope: str, session_id: str, begin: int) -> Iterator[Row]:
        """Rows of ``_sql.INSERT_HISTORY`` for positions ``begin``.. (``seq`` = position),
        each checked (``ProtocolError`` for an item that is not a valid entry)."""
        ...


@attrs.frozen
class EntryHistory:
    """``HistoryEntry`` values (``HistoryCache.mirror_history``)."""

    entries: Sequence[HistoryEntry]

    def __len__(self) -> int:
        return len(self.entries)

    def id_at(self, position: int) -> str | None:
        return self.entries[position].id

    def rows(self, scope: str, session_id: str, begin: int) -> Iterator[Row]:
        return entry_rows(scope, session_id, self.entries[begin:], begin)


@attrs.frozen
class JsonHistory:
    """The server's parsed JSON list (``HistoryCache.mirror_history_json``): no ``HistoryEntry``
    is built, and the items the cache holds are not looked at (but the last one's id)."""

    items: Sequence[Any]

    def __len__(self) -> int:
        return len(self.items)

    def id_at(self, position: int) -> str | None:
        item = self.items[position]
        entry_id = item.get("id") if type(item) is dict else None
        return entry_id if type(entry_id) is str else None

    def rows(self, scope: str, session_id: str, begin: int) -> Iterator[Row]:
        return json_entry_rows(scope, session_id, self.items, range(begin, len(self.items)))


@attrs.frozen
class Plan:
    """What a mirror writes, built (and checked) before its transaction: the server's rows
    from position ``begin`` on, appended after a dense prefix of ``begin`` rows, or (``merge``)
    every row, merged with whatever the cache holds."""

    tail: Tail
    begin: int
    rows: list[Row]
    merge: bool


def plan(scope: str, session_id: str, cached: Tail, incoming: Incoming) -> Plan:
    """The rows to write given the cached ``tail`` (``ProtocolError`` for an invalid item or an
    id listed twice, before anything is written)."""
    if not prefix_ok(cached, incoming):
        return merge_plan(scope, session_id, cached, incoming)
    begin = cached[0]
    rows = list(incoming.rows(scope, session_id, begin))
    refuse_duplicates(session_id, [r[2] for r in rows], begin)
    return Plan(tail=cached, begin=begin, rows=rows, merge=False)


def merge_plan(scope: str, session_id: str, cached: Tail, incoming: Incoming) -> Plan:
    rows = list(incoming.rows(scope, session_id, 0))
    refuse_duplicates(session_id, [r[2] for r in rows])
    return Plan(tail=cached, begin=0, rows=rows, merge=True)


def apply(
    conn: Conn, scope: str, session_id: str, todo: Plan, incoming: Incoming
) -> tuple[int, int]:
    """Write ``todo`` (inside the caller's write transaction, whose ``tail`` it was made for);
    returns (rows inserted, rows the session holds now). The rows are dense afterwards."""
    if not todo.merge and todo.begin and todo.rows and _any_cached(conn, scope, session_id, todo):
        # A new id the cache already holds: the server's list is not an extension of ours.
        todo = merge_plan(scope, session_id, todo.tail, incoming)
    if todo.merge:
        return merge(conn, scope, session_id, todo.rows)
    inserted = 0
    if todo.rows:
        cur = conn.executemany(_sql.INSERT_HISTORY, todo.rows)
        inserted = max(cur.rowcount, 0)
    return inserted, todo.begin + len(todo.rows)


def _any_cached(conn: Conn, scope: str, session_id: str, todo: Plan, chunk: int = 500) -> bool:
    ids = [r[2] for r in todo.rows]
    for i in range(0, len(ids), chunk):
        part = ids[i : i + chunk]
        hit = conn.execute(
            f"SELECT 1 FROM history WHERE scope = ? AND session_id = ? "
            f"AND id IN ({','.join('?' * len(part))}) LIMIT 1",
            (scope, session_id, *part),
        ).fetchone()
        if hit is not None:
            return True
    return False


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


def prefix_ok(cached: Tail, incoming: Incoming) -> bool:
    """Whether the cached rows are dense (0..n-1: laid out by a full mirror, in the server's
    order) and end where the server's item n-1 is: then they are the server's first n entries."""
    count, max_seq, last_id = cached
    if count == 0:
        return True
    return count == max_seq + 1 and count <= len(incoming) and incoming.id_at(count - 1) == last_id


def duplicate_ids(ids: Sequence[str]) -> tuple[str, int, int] | None:
    """The first id the list holds twice, with both positions; None when ids are unique."""
    if len(set(ids)) == len(ids):
        return None
    first: dict[str, int] = {}
    for position, entry_id in enumerate(ids):
        if entry_id in first:
            return entry_id, first[entry_id], position
        first[entry_id] = position
    return None  # pragma: no cover - the set said there is one


def refuse_duplicates(session_id: str, ids: Sequence[str], offset: int = 0) -> None:
    """``ProtocolError`` if the server's list holds an id twice (see the module docstring);
    ``ids`` are the list's from position ``offset`` on."""
    found = duplicate_ids(ids)
    if found is not None:
        entry_id, first, second = found
        first, second = first + offset, second + offset
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


def merge(conn: Conn, scope: str, session_id: str, rows: Sequence[Row]) -> tuple[int, int]:
    """The slow path: insert unknown ids, then renumber every row to the server's order.

    ``rows`` are every row of the server's list (``seq`` = position), with no duplicate id
    (``refuse_duplicates`` ran). Returns (rows inserted, rows the session holds now).
    """
    existing: dict[str, tuple[int, int]] = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT id, rowid, seq FROM history WHERE scope = ? AND session_id = ? ORDER BY seq",
            (scope, session_id),
        )
    }
    order: dict[str, int] = {r[2]: r[3] for r in rows}
    new = [r for r in rows if r[2] not in existing]
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
    inserted = 0
    if new:
        cur = conn.executemany(_sql.INSERT_HISTORY, new)
        inserted = max(cur.rowcount, 0)
    return inserted, len(order)


def record_counts(conn: Conn, scope: str, session_id: str, count: int, stamp: str | None) -> None:
    """Write the session's counts after a full mirror left ``count`` dense rows (``last_seq``
    is ``count - 1``), raise ``message_count`` to at least ``count`` (the contract makes it the
    number of entries, and history only grows), and (``stamp``) record when the full history
    was mirrored (``synced_at``)."""
    last_seq = count - 1 if count else None
    conn.execute(
        "UPDATE sessions SET entry_count = ?, last_seq = ?, synced_at = ?, "
        "message_count = CASE WHEN message_count < ? THEN ? ELSE message_count END "
        "WHERE scope = ? AND session_id = ?",
        (count, last_seq, stamp, count, count, scope, session_id),
    )


def needs_mark(conn: Conn, scope: str, session_id: str) -> bool:
    """Whether the session's row exists and was never marked mirrored since it changed."""
    row = conn.execute(
        "SELECT synced_at IS NULL FROM sessions WHERE scope = ? AND session_id = ?",
        (scope, session_id),
    ).fetchone()
    return bool(row and row[0])
