"""Full-text search on PostgreSQL: the same query language as the SQLite cache, PostgreSQL's
own text search underneath.

The query is split by ``_sql.query_tokens`` (shared with SQLite): each token becomes a phrase
query (its words in order, like a quoted FTS5 string: ``tsquery``) and all of them are required
(``&&``), so no user text is ever syntax. What differs from SQLite (README,
"Running on many machines"):

* ranking is ``ts_rank`` (``rank`` is its negation, so lower is still better; the numbers are
  not comparable with FTS5's bm25);
* the ``simple`` configuration folds case but keeps accents (FTS5's ``unicode61`` removes them:
  "cafe" finds "café" in SQLite only);
* an entry is searchable by its first ``_pg_schema.FTS_CHARS`` characters;
* snippets are ``ts_headline``'s, with the same ``[`` ``]`` marks.

Only the best ``limit`` rows are ranked and fetched whole (the inner query reads ``rowid`` and
the vector alone), so a common word on a million entries does not detoast a million contents.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import psycopg

from .._models import HistoryEntry
from . import _sql
from ._pg_schema import FTS_CHARS
from ._records import SearchHit
from ._speedups import LazyJSON

__all__ = ["search", "tsquery"]

_fromiso = datetime.fromisoformat
_HEADLINE_OPTIONS = (
    "StartSel=[, StopSel=], MaxWords=12, MinWords=4, ShortWord=0, MaxFragments=1, "
    "FragmentDelimiter=…"
)


_WORDS = re.compile(r"[^\W_]+")


def tsquery(tokens: list[str]) -> tuple[str, list[str]]:
    """The tsquery expression for ``tokens``, and its parameters.

    Each token matches as PostgreSQL's parser reads it OR as the phrase of its letters-and-digits
    words: FTS5 splits ``side-letter`` into "side" "letter" (PostgreSQL's parser keeps the
    compound and its parts), while PostgreSQL keeps ``a@b.com`` or ``1.5`` whole (FTS5 splits
    them); either spelling in the text is found, as SQLite finds it.
    """
    one = "(phraseto_tsquery('simple', %s::text) || phraseto_tsquery('simple', %s::text))"
    params: list[str] = []
    for token in tokens:
        params += [token, " ".join(_WORDS.findall(token))]
    return " && ".join([one] * len(tokens)), params


def search(
    conn: psycopg.Connection[Any],
    query: str,
    limit: int,
    scope: str | None,
    session_id: str | None,
) -> list[SearchHit]:
    tokens = _sql.query_tokens(query)
    if not tokens:
        return []
    filters = ""
    expression, words = tsquery(tokens)
    params: list[Any] = list(words)
    if scope is not None:
        filters += " AND h.scope = %s"
        params.append(scope)
    if session_id is not None:
        filters += " AND h.session_id = %s"
        params.append(session_id)
    params += [limit, _HEADLINE_OPTIONS]
    sql = (
        f"WITH q AS MATERIALIZED (SELECT {expression} AS q), "
        "top AS ("
        "  SELECT h.rowid, ts_rank(h.fts, q.q) AS score FROM history h, q "
        f"  WHERE h.fts @@ q.q{filters} ORDER BY score DESC, h.rowid LIMIT %s) "
        "SELECT h.scope, h.session_id, h.id, h.type, h.role, h.content, h.created_at, h.raw, "
        f"  -top.score, ts_headline('simple', left(coalesce(h.content, ''), {FTS_CHARS}), q.q, "
        "  %s) "
        "FROM top JOIN history h ON h.rowid = top.rowid CROSS JOIN q "
        "ORDER BY top.score DESC, top.rowid"
    )
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        rows = conn.execute(sql, params).fetchall()
    return [
        SearchHit(
            entry=HistoryEntry(
                id=r[2],
                session_id=r[1],
                type=r[3],
                role=r[4],
                content=r[5],
                created_at=_fromiso(r[6]),
                raw=LazyJSON(r[7]),
            ),
            scope=r[0],
            rank=float(r[8]),
            snippet=r[9],
        )
        for r in rows
    ]
