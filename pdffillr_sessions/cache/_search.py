"""Full-text search over the history: FTS5 ranking (bm25) and snippets, scoped to one key.

The user's text never reaches FTS5 as syntax (``_sql.fts_query`` quotes every token).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from .._models import HistoryEntry
from . import _sql
from ._records import SearchHit
from ._speedups import entry_raw

__all__ = ["search"]

_SNIPPET = "snippet(history_fts, 0, '[', ']', '…', 12)"
_fromiso = datetime.fromisoformat


def search(
    conn: sqlite3.Connection,
    match: str,
    limit: int,
    scope: str | None,
    session_id: str | None,
    *,
    lean: bool = True,
) -> list[SearchHit]:
    """The best ``limit`` hits of the FTS5 query ``match`` (scope None: every scope; ``lean``:
    the history rows are ``_lean``'s)."""
    if session_id is None:
        # Rank and LIMIT inside the FTS query, then join only those rows. A scoped cache
        # over-fetches once in case other scopes' rows take some of the top places.
        rounds = (limit,) if scope is None else (limit, limit * 10)
        for fetch in rounds:
            rows = conn.execute(
                f"SELECT rowid, rank, {_SNIPPET} FROM history_fts "
                "WHERE history_fts MATCH ? ORDER BY rank LIMIT ?",
                (match, fetch),
            ).fetchall()
            hits = _hits(conn, rows, scope, None, limit, lean)
            if len(hits) >= limit or len(rows) < fetch:
                return hits
    # Filtered: let SQLite join and rank every match of the scope / session.
    where, args = _sql.scope_filter(scope, "h.")
    extra: tuple[Any, ...] = ()
    if session_id is not None:
        where += " AND h.session_id = ?"
        extra = (session_id,)
    rows = conn.execute(
        f"SELECT h.rowid, history_fts.rank, {_SNIPPET} FROM history_fts "
        "JOIN history h ON h.rowid = history_fts.rowid "
        f"WHERE history_fts MATCH ? AND {where} "
        "ORDER BY history_fts.rank LIMIT ?",
        (match, *args, *extra, limit),
    ).fetchall()
    return _hits(conn, rows, scope, session_id, limit, lean)


def _hits(
    conn: sqlite3.Connection,
    rows: list[Any],
    scope: str | None,
    session_id: str | None,
    limit: int,
    lean: bool,
) -> list[SearchHit]:
    entries = _entries_by_rowid(conn, [r[0] for r in rows], scope, session_id, lean)
    out: list[SearchHit] = []
    for rowid, rank, snip in rows:
        found = entries.get(rowid)
        if found is None:
            continue
        hit_scope, entry = found
        out.append(SearchHit(entry=entry, scope=hit_scope, rank=float(rank), snippet=snip))
        if len(out) >= limit:
            break
    return out


def _entries_by_rowid(
    conn: sqlite3.Connection,
    rowids: list[int],
    scope: str | None,
    session_id: str | None,
    lean: bool,
) -> dict[int, tuple[str, HistoryEntry]]:
    out: dict[int, tuple[str, HistoryEntry]] = {}
    # A few hundred rowids a statement: ``search -n 0`` may ask for every hit, and SQLite
    # takes at most 999 parameters a statement where it was built with its old default.
    for start in range(0, len(rowids), _ROWIDS_PER_STATEMENT):
        part = rowids[start : start + _ROWIDS_PER_STATEMENT]
        _add_entries(out, conn, part, scope, session_id, lean)
    return out


_ROWIDS_PER_STATEMENT = 900


def _add_entries(
    out: dict[int, tuple[str, HistoryEntry]],
    conn: sqlite3.Connection,
    rowids: list[int],
    scope: str | None,
    session_id: str | None,
    lean: bool,
) -> None:
    # Unary + keeps the planner on the rowid lookups (not a scan of the scope index).
    marks = ",".join("?" * len(rowids))
    sql = (
        f"SELECT rowid, scope, session_id, {_sql.HISTORY_COLS} FROM history "
        f"WHERE rowid IN ({marks})"
    )
    params: list[Any] = list(rowids)
    if scope is not None:
        sql += " AND +scope = ?"
        params.append(scope)
    if session_id is not None:
        sql += " AND +session_id = ?"
        params.append(session_id)
    for r in conn.execute(sql, params):
        out[r[0]] = (
            r[1],
            HistoryEntry(
                id=r[3],
                session_id=r[2],
                type=r[4],
                role=r[5],
                content=r[6],
                created_at=_fromiso(r[7]),
                raw=entry_raw((r[3], r[4], r[5], r[6], r[7], r[8]), lean=lean),
            ),
        )
