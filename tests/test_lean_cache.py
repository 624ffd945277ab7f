"""The lean cache (issue 12): history rows hold each text once, sessions hold their counts.

* ``raw`` keeps only what no column holds, and the server's object comes back exactly: values,
  unknown fields and key order (``_lean``; property-tested against every shape the parser
  accepts).
* ``sessions.entry_count`` / ``last_seq`` equal ``count(*)`` / ``max(seq)`` of the history after
  every kind of write, on both backends (a listing reads them instead of the history).
* Rows are built straight from the server's JSON (``mirror_history_json``): the same rows as
  from ``HistoryEntry`` values, the same refusals, and a prefix the cache holds is not rebuilt.
* ``m005_lean_history`` (SQLite) and ``p002_lean_history`` (PostgreSQL) keep every row of an
  older file: every column as it was, every ``raw`` object equal key for key, in order.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdffillr_sessions import HistoryCache, ProtocolError
from pdffillr_sessions._models import HistoryEntry, parse_entries, parse_entry, parse_session
from pdffillr_sessions._scope import key_scope
from pdffillr_sessions.cache import KNOWN_MIGRATIONS, _lean
from pdffillr_sessions.cache._rows import entry_rows, json_entry_rows

KEY = "sk_lean_cache_tests_SECRET_77aa11"
SCOPE = key_scope(KEY)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "history.db")
    return str(request.getfixturevalue("pg_url"))


def obj(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"e{i}",
        "type": "message",
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"entry {i} of the side letter",
        "created_at": f"2026-01-01T00:00:{i % 60:02d}.{i % 1000:03d}Z",
        **extra,
    }


def entries(sid: str, ids: range | list[int]) -> list[HistoryEntry]:
    return [parse_entry(obj(i), session_id=sid) for i in ids]


def info(sid: str, count: int = 0, status: str = "active") -> Any:
    return parse_session(
        {
            "session_id": sid,
            "title": sid,
            "status": status,
            "message_count": count,
            "created_at": "2026-01-01T00:00:00Z",
        }
    )


# -- raw: only what no column holds, the object back exactly ------------------------------------

_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_TIMES = st.sampled_from(
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123Z",
        "2026-01-01T00:00:00.123456Z",
        "2026-03-01T23:59:59.5Z",
        "2026-01-01T00:00:00+02:00",
        "2026-01-01T00:00:00.250-05:30",
        "2026-01-01T00:00:00.123456+00:00",
        "2026-01-01T00:00:00",
        "2026-01-01",
        "2026-01-01 12:00:00Z",
        "20260101T120000Z",
        "0001-01-01T00:00:00Z",
    ]
)


@st.composite
def server_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Entry objects the parser accepts, in canonical shape or not: fields left out, unknown
    fields, keys in any order, any timestamp spelling."""
    fields: dict[str, Any] = {
        "id": draw(st.text(min_size=1, max_size=6)),
        "type": draw(st.sampled_from(["message", "document", "activity", "new_kind"])),
        "created_at": draw(_TIMES),
    }
    for name in ("role", "content"):
        if draw(st.integers(0, 4)):  # usually present (null or text), sometimes left out
            fields[name] = draw(st.none() | st.text(max_size=12))
    extra = draw(st.dictionaries(st.text(max_size=6), _VALUE, max_size=3))
    for name in list(extra):
        if name in fields or name in ("role", "content"):
            del extra[name]
    items = list(fields.items())
    if draw(st.booleans()):  # the canonical order, extras last
        order = ["id", "type", "role", "content", "created_at"]
        items.sort(key=lambda kv: order.index(kv[0]))
    else:
        items = draw(st.permutations(items))
    return dict([*items, *extra.items()])


@settings(max_examples=300)
@given(server_objects())
def test_a_lean_row_gives_back_the_servers_object_exactly(item: dict[str, Any]) -> None:
    (row,) = json_entry_rows("scope", "s1", [item], [0])
    back = _lean.decode(row[2], row[4], row[5], row[6], row[7], row[8])
    assert list(back.items()) == list(item.items())  # values, unknown fields, key order
    (from_entry,) = entry_rows("scope", "s1", [parse_entry(item, session_id="s1")], 0)
    assert from_entry == row  # the same row from the JSON as from a HistoryEntry
    if item.get("content") and len(item["content"]) > 3 and row[8][:1] != _lean.WHOLE:
        assert item["content"] not in row[8]  # stored once


def test_the_common_shapes_cost_a_byte_or_nothing() -> None:
    def raw_of(created_at: str, **extra: Any) -> str:
        item = {**obj(1), "created_at": created_at, **extra}
        return next(json_entry_rows("scope", "s1", [item], [0]))[8]

    assert raw_of("2026-01-01T00:00:00.123456Z") == ""
    assert raw_of("2026-01-01T00:00:00.123Z") == "m"  # the emulator's spelling
    assert raw_of("2026-01-01T00:00:00Z") == "s"
    assert raw_of("2026-01-01T00:00:00+02:00") == "s+02:00"
    assert raw_of("2026-01-01T00:00:00.123Z", event="document.processed") == (
        'm{"event":"document.processed"}'
    )
    reordered = {"type": "message", **obj(1)}
    assert next(json_entry_rows("scope", "s1", [reordered], [0]))[8].startswith(_lean.WHOLE)


def test_an_entry_whose_raw_disagrees_with_its_fields_keeps_raw_whole(tmp_path: Path) -> None:
    item = obj(1)
    edited = parse_entry(item, session_id="s1")
    import attrs

    edited = attrs.evolve(edited, content="edited locally")
    with HistoryCache(tmp_path / "h.db", api_key=KEY) as cache:
        cache.mirror_history("s1", [edited])
        (got,) = cache.history("s1")
    assert got.content == "edited locally" and dict(got.raw) == item


# -- the counts: written with the rows, equal to count(*) -----------------------------------------


def counts(cache: HistoryCache) -> list[tuple[str, Any, Any, Any, Any]]:
    """Each session's stored (entry_count, last_seq) beside the history's (count, max seq)."""
    of_session = "FROM history h WHERE h.scope = s.scope AND h.session_id = s.session_id"
    rows = cache._conn.execute(
        "SELECT s.session_id, s.entry_count, s.last_seq, "
        f"(SELECT count(*) {of_session}), (SELECT max(h.seq) {of_session}) "
        "FROM sessions s ORDER BY s.session_id"
    ).fetchall()
    return [tuple(r) for r in rows]


def assert_counts_hold(cache: HistoryCache) -> None:
    found = counts(cache)
    assert found, "no session rows"
    for sid, entry_count, last_seq, real_count, real_last in found:
        assert (entry_count, last_seq) == (real_count, real_last), sid
    real_last = {r[0]: r[4] for r in found}
    for s in cache.sessions():
        last = real_last[s.session_id]
        assert s.provisional_order == (last is not None and last + 1 != s.entry_count)


def test_the_entry_count_column_matches_count_after_every_kind_of_write(location: str) -> None:
    server = entries("s1", range(8))
    with HistoryCache(location, api_key=KEY, server="http://srv") as cache:
        cache.mirror_history("early", entries("early", range(3)))  # history before its row
        cache.upsert_sessions([info("early", 3), info("s1"), info("s2")])  # inserts: trigger
        assert_counts_hold(cache)
        cache.record_opened(info("opened"))
        assert_counts_hold(cache)
        cache.mirror_history("s1", server[:3])  # a first full mirror
        assert_counts_hold(cache)
        cache.append_entries("s1", server[5:7])  # a send: after a hole, provisional
        assert_counts_hold(cache)
        cache.append_entries("s1", server[5:7])  # already cached: skipped
        assert_counts_hold(cache)
        assert cache.session("s1").provisional_order  # type: ignore[union-attr]
        cache.mirror_history("s1", server[:7])  # the slow path: renumbered, dense
        assert_counts_hold(cache)
        assert not cache.session("s1").provisional_order  # type: ignore[union-attr]
        items = [obj(i) for i in range(8)]
        cache.mirror_history_json("s1", items)  # the fast path: one more, from JSON
        assert_counts_hold(cache)
        cache.mirror_history_json("s1", items)  # a no-op
        assert_counts_hold(cache)
        cache.mirror_history("s1", server[2:])  # the server forgot two: kept, after
        assert_counts_hold(cache)
        with pytest.raises(ProtocolError, match="twice"):  # refused: nothing written
            cache.mirror_history_json("s1", [*items, obj(3)])
        assert_counts_hold(cache)
        cache.append_entries("unlisted", entries("unlisted", [1]))  # no row: nothing to count
        cache.mark_end_pending("unlisted", "timed out")  # placeholder row: trigger
        assert_counts_hold(cache)
        cache.mark_ended("s2", info("s2", 0, "ended"))
        cache.mark_ended("s1")
        cache.mark_gone("opened")
        assert_counts_hold(cache)
        assert {s.session_id: s.entry_count for s in cache.sessions()} == {
            "early": 3,
            "s1": 8,
            "s2": 0,
            "opened": 0,
            "unlisted": 1,
        }
        assert cache.session("s1").message_count == 8  # type: ignore[union-attr]


# -- rows straight from JSON ---------------------------------------------------------------------


def test_rows_from_json_are_the_rows_from_entries(tmp_path: Path) -> None:
    items = [obj(i) for i in range(5)] + [
        {**obj(5), "document": {"filename": "K-1.pdf"}},
        {"id": "x", "type": "activity", "created_at": "2026-01-01T00:00:00+01:00"},
    ]
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with HistoryCache(a, api_key=KEY) as cache:
        assert cache.mirror_history("s1", parse_entries(items, session_id="s1")) == 7
    with HistoryCache(b, api_key=KEY) as cache:
        assert cache.mirror_history_json("s1", items) == 7
        assert [dict(e.raw) for e in cache.history("s1")] == items
    dump = "SELECT scope, session_id, id, seq, type, role, content, created_at, raw FROM history"
    rows = []
    for path in (a, b):
        conn = sqlite3.connect(path)
        rows.append(conn.execute(dump + " ORDER BY seq").fetchall())
        conn.close()
    assert rows[0] == rows[1]


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "message", "created_at": "2026-01-01T00:00:00Z"},
        {**obj(9), "role": 5},
        {**obj(9), "created_at": "yesterday"},
        {**obj(9), "created_at": "0001-01-01T00:00:00+01:00"},
        "not an object",
    ],
)
def test_json_is_refused_as_the_parser_refuses_it(tmp_path: Path, bad: Any) -> None:
    items = [obj(0), obj(1), bad]
    with pytest.raises(ProtocolError) as parsed:
        parse_entries(items, session_id="s1")
    with HistoryCache(tmp_path / "h.db", api_key=KEY) as cache:
        with pytest.raises(ProtocolError) as mirrored:
            cache.mirror_history_json("s1", items)
        assert str(mirrored.value) == str(parsed.value)
        assert cache.history("s1") == []  # nothing written


def test_a_prefix_the_cache_holds_is_not_rebuilt(tmp_path: Path) -> None:
    with HistoryCache(tmp_path / "h.db", api_key=KEY) as cache:
        cache.mirror_history_json("s1", [obj(i) for i in range(3)])
        # Only where the cached prefix ends is looked at: the rest is the cache's already.
        prefix: list[Any] = [None, "not even an object", {"id": "e2"}]
        assert cache.mirror_history_json("s1", [*prefix, obj(3), obj(4)]) == 2
        assert [dict(e.raw) for e in cache.history("s1")] == [obj(i) for i in range(5)]
        # A new id the cache already holds: the list is no extension of ours, so all of it
        # is checked (and here refused: an item that is not an entry).
        with pytest.raises(ProtocolError, match=r"history\[0\]"):
            cache.mirror_history_json("s1", [*prefix, obj(3), obj(4), obj(0)])
        # A list that repeats an id among the new entries is refused with both positions.
        with pytest.raises(ProtocolError, match=r"'e5' twice \(at positions 5 and 6\)"):
            cache.mirror_history_json("s1", [*prefix, obj(3), obj(4), obj(5), obj(5)])
        assert len(cache.history("s1")) == 5


# -- the migration keeps every row ---------------------------------------------------------------


def old_objects() -> list[tuple[str, dict[str, Any]]]:
    """(session id, the server's object) pairs of every shape an older file may hold."""
    return [
        ("s1", obj(0)),
        ("s1", obj(1, document={"filename": "K-1 \x00 🦄.pdf", "size_bytes": 12})),
        ("s1", {**obj(2), "created_at": "2026-01-01T00:00:02+02:00"}),
        ("s1", {"type": "activity", "id": "act", "created_at": "2026-01-01", "event": "x"}),
        (
            "s1",
            {
                "id": "bare",
                "type": "message",
                "content": None,
                "created_at": "2026-01-01T00:00:00Z",
            },
        ),
        ("s1", {**obj(3), "content": "nul \x00 and esc \x1b and ünïcödé " * 50}),
        ("s2", obj(4, object="chat.history_entry", metadata={})),
        ("s2", obj(6)),  # after a hole: appended by a send, order provisional
        ("orphan", obj(5)),  # history whose session row was never written
    ]


def write_old_rows(execute: Any, scope: str) -> None:
    """Rows as versions before the lean history wrote them: ``raw`` the whole object."""
    seqs: dict[str, int] = {}
    for sid, item in old_objects():
        e = parse_entry(item, session_id=sid)
        seq = seqs.get(sid, -1) + 1
        seqs[sid] = seq + (1 if sid == "s2" else 0)  # s2: holes (appended by sends)
        from pdffillr_sessions.cache._rows import ts

        execute(
            "INSERT INTO history (scope, session_id, id, seq, type, role, content, created_at, "
            "raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scope,
                sid,
                e.id,
                seq,
                e.type,
                e.role,
                e.content,
                ts(e.created_at),
                json.dumps(item, ensure_ascii=False, separators=(",", ":")),
            ),
        )
    execute(
        "INSERT INTO history (scope, session_id, id, seq, type, role, content, created_at, raw) "
        "VALUES (?, 's1', 'hand-made', 99, 'message', NULL, 'x', '2026-01-01T00:00:00.000000Z', "
        "'{}')",
        (scope,),
    )
    for sid in ("s1", "s2", "empty"):
        execute(
            "INSERT INTO sessions (scope, session_id, title, status, message_count, created_at, "
            "updated_at, raw) VALUES (?, ?, ?, 'active', 1, '2026-01-01T00:00:00.000000Z', "
            "'2026-01-01T00:00:00.000000Z', ?)",
            (scope, sid, f"title {sid}", json.dumps({"session_id": sid})),
        )


def expected_objects() -> dict[tuple[str, str], list[tuple[str, Any]]]:
    out = {(sid, item["id"]): list(item.items()) for sid, item in old_objects()}
    out[("s1", "hand-made")] = []
    return out


def test_the_sqlite_migration_keeps_every_row_of_an_older_file(tmp_path: Path) -> None:
    from sqlite_utils import Database

    from pdffillr_sessions.cache import _migrations

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    _migrations.migrations.apply(Database(conn), stop_before="m005_lean_history")
    write_old_rows(conn.execute, SCOPE)
    conn.execute("INSERT INTO history_fts (rowid, content) SELECT rowid, content FROM history")
    columns = "rowid, scope, session_id, id, seq, type, role, content, created_at"
    before_history = conn.execute(f"SELECT {columns} FROM history ORDER BY rowid").fetchall()
    before_sessions = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
    conn.close()
    with HistoryCache(db, readonly=True) as reader:  # not migrated: read as it is
        assert {(e.session_id, e.id): list(dict(e.raw).items()) for e in reader.history("s1")} == {
            k: v for k, v in expected_objects().items() if k[0] == "s1"
        }
        assert reader.session("s1").entry_count == 7  # type: ignore[union-attr]
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.migrations_applied == KNOWN_MIGRATIONS
        got = {
            (sid, e.id): list(dict(e.raw).items())
            for sid in ("s1", "s2", "orphan")
            for e in cache.history(sid)
        }
        assert got == expected_objects()
        assert_counts_hold(cache)
        assert cache.session("s2").provisional_order  # type: ignore[union-attr]
        assert [h.entry.id for h in cache.search("ünïcödé")] == ["e3"]
        assert cache.integrity_check() == []
    conn = sqlite3.connect(db)
    assert conn.execute(f"SELECT {columns} FROM history ORDER BY rowid").fetchall() == (
        before_history
    )
    after = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
    assert [row[: len(before_sessions[0])] for row in after] == before_sessions
    raws = [r[0] for r in conn.execute("SELECT raw FROM history")]
    conn.close()
    assert not any("ünïcödé" in r for r in raws)  # the texts are no longer stored twice
    assert sum(len(r) for r in raws) < 400  # (the 1,750-character one included)


def test_the_postgres_migration_keeps_every_row(pg_url: str) -> None:
    from pdffillr_sessions.cache import _pg, _pg_schema

    raw = _pg.connect(pg_url)
    schema = _pg_schema.SCHEMA
    with raw.transaction():
        raw.execute(f"CREATE SCHEMA {schema}")
        raw.execute(
            f"CREATE TABLE {schema}.{_pg_schema.MIGRATIONS_TABLE} (seq INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
        )
        name, statements = _pg_schema.MIGRATIONS[0]
        for statement in statements:
            raw.execute(statement)
        raw.execute(
            f"INSERT INTO {schema}.{_pg_schema.MIGRATIONS_TABLE} VALUES (1, %s, 'then')", (name,)
        )
        write_old_rows(lambda sql, args: raw.execute(sql.replace("?", "%s"), args), SCOPE)
    columns = "rowid, scope, session_id, id, seq, type, role, content, created_at"
    before = raw.execute(f"SELECT {columns} FROM history ORDER BY rowid").fetchall()
    raw.close()
    with HistoryCache(pg_url, api_key=KEY) as cache:
        assert cache.migrations_applied[-1] == _pg_schema.LEAN_HISTORY
        got = {
            (sid, e.id): list(dict(e.raw).items())
            for sid in ("s1", "s2", "orphan")
            for e in cache.history(sid)
        }
        assert got == expected_objects()
        assert_counts_hold(cache)
        assert [h.entry.id for h in cache.search("ünïcödé")] == ["e3"]
        assert cache.integrity_check() == []
        cache.upsert_sessions([info("orphan", 1)])  # a row for history it had: the trigger
        assert_counts_hold(cache)
    raw = _pg.connect(pg_url)
    assert raw.execute(f"SELECT {columns} FROM history ORDER BY rowid").fetchall() == before
    raw.close()
