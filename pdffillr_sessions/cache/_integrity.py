"""Is the cache file sound? SQLite's own check, then the full-text index's.

A writable cache runs FTS5's own ``integrity-check`` (SQLite treats it as a write statement).
A read-only cache (``check`` on a read-only location, or any offline command) cannot run it,
and copying the file to run it elsewhere costs its whole size (2.3 GB at 2M entries) in a
temporary directory. So it runs the same kind of check read-only, in bounded memory:

* every history row has its entry in the index's ``docsize`` table and no other row has one
  (a delete or insert the index never heard of);
* checksums of what the index holds, read through ``fts5vocab`` (each term weighted by its
  occurrences and by its rows; each occurrence's row and position) equal the same checksums of
  the rows' current content, tokenized again batch by batch in a TEMP in-memory FTS5 table
  with the same tokenizer (content the index does not reflect). FTS5's own check compares a
  checksum of both sides too; these are plain SQL arithmetic, summed inside SQLite. They cover
  the terms and the (row, position) pairs separately: an index that swapped two terms between
  positions, keeping both sets, would pass (FTS5's own check, on a writable cache, would not).

Nothing is written to the file, nothing is copied; TEMP tables live in memory.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

__all__ = ["integrity_problems"]

_FTS_CHECK = "INSERT INTO history_fts (history_fts, rank) VALUES ('integrity-check', 1)"
#: Rows re-tokenized at a time by the read-only check (bounds its memory).
_BATCH = 20_000
_P = 2_147_483_647  # a prime: every summed term stays far below 2**63
#: A number for a term, from SQL alone (computed once per distinct term: cheap).
_TERM = (
    "(length(term) * 31 + unicode(term) * 131"
    + "".join(
        f" + coalesce(unicode(substr(term, {i})), 0) * {k}"
        for i, k in ((2, 1009), (3, 7919), (4, 65537), (-1, 104729), (-2, 1299709))
    )
    + f") % {_P}"
)
#: Per distinct term ('row' vocabulary): its occurrences and its rows, weighted by the term.
_TERMS = (
    f"SELECT coalesce(sum(cnt), 0), coalesce(sum(({_TERM}) * (cnt % {_P}) % {_P}), 0),"
    f" coalesce(sum(({_TERM}) * 7 % {_P} * (doc % {_P}) % {_P}), 0) FROM temp.{{table}}"
)
#: Per occurrence ('instance' vocabulary): which row, which position (integers only: fast).
_PLACES = f"SELECT coalesce(sum((doc * 1000003 + offset * 8191) % {_P}), 0) FROM temp.{{table}}"


def integrity_problems(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> list[str]:
    """Every problem found, one line each; empty when the file is sound.

    The FTS check runs only when SQLite finds nothing (on a corrupt file it says nothing new).
    """
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return [f"integrity_check failed: {exc}"]
    problems = [str(r[0]) for r in rows if r[0] != "ok"]
    if problems:
        return problems
    try:
        if readonly:
            why = _fts_problem_read_only(conn)
        else:
            conn.execute(_FTS_CHECK)
            why = None
    except sqlite3.DatabaseError as exc:
        why = str(exc)
    if why is None:
        return []
    return [
        f"the full-text index history_fts does not match history ({why}); rebuild it with: "
        f"sqlite-utils rebuild-fts {path} history"
    ]


def _tokenize_option(conn: sqlite3.Connection) -> str:
    """The ``tokenize=...`` option history_fts was created with ('' for the default)."""
    row = conn.execute("SELECT sql FROM main.sqlite_master WHERE name = 'history_fts'").fetchone()
    found = re.search(r"tokenize\s*=\s*('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", row[0] if row else "")
    return f", tokenize={found.group(1)}" if found else ""


def _checksums(conn: sqlite3.Connection, rows: str, instances: str) -> tuple[int, int, int, int]:
    """(occurrences, term checksum, term-rows checksum, places checksum) of one index."""
    count, terms, term_rows = conn.execute(_TERMS.format(table=rows)).fetchone()
    (places,) = conn.execute(_PLACES.format(table=instances)).fetchone()
    return int(count), int(terms) % _P, int(term_rows) % _P, int(places) % _P


Sums = tuple[int, int, int, int]


def _added(a: Sums, b: Sums) -> Sums:
    """Two batches' checksums combined (each is a sum: batches add up)."""
    return a[0] + b[0], (a[1] + b[1]) % _P, (a[2] + b[2]) % _P, (a[3] + b[3]) % _P


def _fts_problem_read_only(conn: sqlite3.Connection) -> str | None:
    """What is wrong with the index, read-only (see the module docstring); None when sound."""
    missing = conn.execute(
        "SELECT count(*) FROM main.history h WHERE NOT EXISTS "
        "(SELECT 1 FROM main.history_fts_docsize d WHERE d.id = h.rowid)"
    ).fetchone()[0]
    extra = conn.execute(
        "SELECT count(*) FROM main.history_fts_docsize d WHERE NOT EXISTS "
        "(SELECT 1 FROM main.history h WHERE h.rowid = d.id)"
    ).fetchone()[0]
    if missing or extra:
        return f"{missing} row(s) not indexed, {extra} indexed row(s) gone"
    conn.execute("PRAGMA temp_store = MEMORY")
    try:
        conn.execute(
            "CREATE VIRTUAL TABLE temp.pfs_check_vocab "
            "USING fts5vocab('main', 'history_fts', 'instance')"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE temp.pfs_check_fts "
            f"USING fts5(content, content=''{_tokenize_option(conn)})"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE temp.pfs_check_fts_vocab "
            "USING fts5vocab('temp', 'pfs_check_fts', 'instance')"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE temp.pfs_check_rows USING fts5vocab('main', 'history_fts', 'row')"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE temp.pfs_check_fts_rows "
            "USING fts5vocab('temp', 'pfs_check_fts', 'row')"
        )
        indexed = _checksums(conn, "pfs_check_rows", "pfs_check_vocab")
        content: Sums = (0, 0, 0, 0)
        after = -1
        while True:
            (upto,) = conn.execute(
                "SELECT max(rowid) FROM (SELECT rowid FROM main.history WHERE rowid > ? "
                "ORDER BY rowid LIMIT ?)",
                (after, _BATCH),
            ).fetchone()
            if upto is None:
                break
            conn.execute(
                "INSERT INTO temp.pfs_check_fts (rowid, content) "
                "SELECT rowid, content FROM main.history WHERE rowid > ? AND rowid <= ?",
                (after, upto),
            )
            batch = _checksums(conn, "pfs_check_fts_rows", "pfs_check_fts_vocab")
            content = _added(content, batch)
            after = upto
            conn.execute("INSERT INTO temp.pfs_check_fts (pfs_check_fts) VALUES ('delete-all')")
        if indexed != content:
            return (
                f"the index holds {indexed[0]:,} term occurrences, the rows' content "
                f"{content[0]:,}, or their checksums differ"
            )
        return None
    finally:
        for table in (
            "pfs_check_fts_rows",
            "pfs_check_fts_vocab",
            "pfs_check_fts",
            "pfs_check_rows",
            "pfs_check_vocab",
        ):
            conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
