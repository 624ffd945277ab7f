"""HistoryCache: the offline SQLite mirror (no network, tmp_path only)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pdffillr_sessions._exceptions import CacheError, ConfigurationError, ProtocolError
from pdffillr_sessions._models import HistoryEntry, SessionInfo, parse_entry, parse_session
from pdffillr_sessions._scope import key_scope
from pdffillr_sessions.cache import KNOWN_MIGRATIONS, HistoryCache

KEY_A = "sk-test-AAAA-secret-key-alpha-0123456789"
KEY_B = "sk-test-BBBB-secret-key-bravo-9876543210"
SQLITE_UTILS = str(Path(sys.executable).with_name("sqlite-utils"))


def entry(i: int, sid: str = "s1", content: str | None = None, **extra: Any) -> HistoryEntry:
    obj: dict[str, Any] = {
        "id": f"e{i}",
        "type": "message",
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"message number {i} about capital calls" if content is None else content,
        "created_at": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}+02:00",
        **extra,
    }
    return parse_entry(obj, session_id=sid)


def info(
    sid: str, status: str = "active", count: int = 0, day: int = 1, **extra: Any
) -> SessionInfo:
    return parse_session(
        {
            "session_id": sid,
            "title": f"title {sid}",
            "status": status,
            "message_count": count,
            "created_at": f"2026-02-{day:02d}T10:00:00Z",
            **extra,
        }
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "history.db"


def total_changes(path: Path) -> int:
    """Rows in the history table, read through a separate plain connection."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM history").fetchone()[0])
    finally:
        conn.close()


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_equal_field_for_field(db: Path) -> None:
    entries = [
        entry(0),
        entry(1, content="nul \x00 byte and emoji 🦄 and ünïcödé"),
        entry(2, content="x" * 200_000),
        parse_entry(
            {
                "id": "doc-1",
                "type": "document",
                "role": None,
                "content": "summary",
                "created_at": "2026-01-01T00:00:00Z",
                "document": {"document_id": "d1", "filename": "K-1 \x00 🦄.pdf", "size_bytes": 12},
                "unknown_field": [1, {"nested": None}],
            },
            session_id="s1",
        ),
        parse_entry(
            {"id": "act", "type": "weird_new_type", "content": None, "created_at": "2026-01-01"},
            session_id="s1",
        ),
    ]
    with HistoryCache(db, api_key=KEY_A) as cache:
        assert cache.mirror_history("s1", entries) == len(entries)
        got = cache.history("s1")
    assert got == entries
    for a, b in zip(got, entries, strict=True):
        assert a.content == b.content
        assert dict(a.raw) == dict(b.raw)
        assert a.created_at == b.created_at and a.created_at.tzinfo is not None
    assert got[3].document == {"document_id": "d1", "filename": "K-1 \x00 🦄.pdf", "size_bytes": 12}
    assert json.loads(json.dumps(dict(got[3].raw))) == dict(entries[3].raw)
    # Timestamps are stored in one sortable UTC form; raw keeps the server's string.
    conn = sqlite3.connect(db)
    created = [r[0] for r in conn.execute("SELECT created_at FROM history ORDER BY seq")]
    assert created[0] == "2025-12-31T22:00:00.000000Z"
    raw0 = json.loads(conn.execute("SELECT raw FROM history WHERE id = 'e0'").fetchone()[0])
    assert raw0["created_at"] == "2026-01-01T00:00:00+02:00"
    raw1 = conn.execute("SELECT raw FROM history WHERE id = 'e1'").fetchone()[0]
    assert "🦄" in raw1  # ensure_ascii=False
    conn.close()


def test_readonly_reader_sees_same_history(db: Path) -> None:
    entries = [entry(i) for i in range(5)]
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", entries)
    with HistoryCache(db, readonly=True) as ro:
        assert ro.history("s1") == entries
        assert ro.scope is None


# -- idempotence / incremental -------------------------------------------------------------------


def test_remirror_unchanged_writes_nothing(db: Path) -> None:
    entries = [entry(i) for i in range(50)]
    with HistoryCache(db, api_key=KEY_A) as cache:
        assert cache.mirror_history("s1", entries) == 50
        before_changes = cache._conn.total_changes
        before_bytes = db.read_bytes()
        wal = Path(f"{db}-wal")
        wal_before = wal.read_bytes() if wal.exists() else b""
        assert cache.mirror_history("s1", entries) == 0
        assert cache.mirror_history("s1", list(entries)) == 0
        assert cache._conn.total_changes == before_changes
        assert db.read_bytes() == before_bytes
        assert (wal.read_bytes() if wal.exists() else b"") == wal_before
        assert total_changes(db) == 50


def test_incremental_mirror_inserts_only_new(db: Path) -> None:
    entries = [entry(i) for i in range(30)]
    with HistoryCache(db, api_key=KEY_A) as cache:
        assert cache.mirror_history("s1", entries[:10]) == 10
        rowids = dict(cache._conn.execute("SELECT id, rowid FROM history").fetchall())
        conn = cache._conn
        conn.execute("CREATE TEMP TABLE audit (op TEXT)")
        conn.execute(
            "CREATE TEMP TRIGGER audit_u AFTER UPDATE ON main.history "
            "BEGIN INSERT INTO audit VALUES ('u'); END"
        )
        conn.execute(
            "CREATE TEMP TRIGGER audit_d AFTER DELETE ON main.history "
            "BEGIN INSERT INTO audit VALUES ('d'); END"
        )
        assert cache.mirror_history("s1", entries) == 20
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 0
        assert dict(cache._conn.execute("SELECT id, rowid FROM history WHERE seq < 10")) == rowids
        assert cache.history("s1") == entries
        seqs = [r[0] for r in cache._conn.execute("SELECT seq FROM history ORDER BY seq")]
        assert seqs == list(range(30))


def test_mirror_fallback_when_prefix_differs(db: Path) -> None:
    entries = [entry(i) for i in range(10)]
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", [entries[0], entries[2], entries[5]])
        assert cache.mirror_history("s1", entries) == 7
        assert cache.history("s1") == entries
        assert cache.mirror_history("s1", entries) == 0
        assert cache.integrity_check() == []


def test_append_entries_continues_seq_and_ignores_known(db: Path) -> None:
    entries = [entry(i) for i in range(6)]
    with HistoryCache(db, api_key=KEY_A) as cache:
        assert cache.append_entries("s1", entries[:2]) == 2
        assert cache.append_entries("s1", entries[1:4]) == 2
        assert cache.append_entries("s1", entries[:4]) == 0
        assert cache.mirror_history("s1", entries) == 2
        assert cache.history("s1") == entries
        seqs = [r[0] for r in cache._conn.execute("SELECT seq FROM history ORDER BY seq")]
        assert seqs == list(range(6))
        assert [h.entry.id for h in cache.search("capital", limit=50)] != []
        assert {h.entry.id for h in cache.search("capital", limit=50)} == {e.id for e in entries}


def test_mirror_is_one_transaction(db: Path) -> None:
    good = [entry(i) for i in range(5)]
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", good[:2])
        bad = entry(4)
        object.__setattr__(bad, "raw", {"not json": {1, 2}})  # serialisation raises
        bad_raw = [*good[:4], bad]
        with pytest.raises(TypeError):
            cache.mirror_history("s1", bad_raw)
        assert cache.history("s1") == good[:2]
        surrogate = entry(7, content="bad \ud800 surrogate")
        with pytest.raises(ProtocolError, match=r"lone surrogate.*nothing was written"):
            cache.mirror_history("s1", [*good, surrogate])
        assert cache.history("s1") == good[:2]
        assert not cache._conn.in_transaction
        assert cache.integrity_check() == []
        assert cache.mirror_history("s1", good) == 3


# -- sessions and local state -------------------------------------------------------------------


def test_sessions_lifecycle_and_pending_ends(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.record_create_intent("idem-1", "t")
        cache.record_create_intent("idem-1", "t")  # idempotent
        assert [i.idempotency_key for i in cache.create_intents()] == ["idem-1"]
        cache.record_opened(info("s1", day=1), idempotency_key="idem-1")
        assert cache.create_intents() == []
        cache.record_opened(info("s2", day=2))
        cache.record_opened(info("s3", day=3))
        assert [s.session_id for s in cache.pending_ends()] == ["s1", "s2", "s3"]
        cache.mark_end_pending("s2", "timeout")
        cache.mark_ended("s3")
        s2 = cache.session("s2")
        assert s2 is not None and s2.local_state == "end_pending" and s2.local_error == "timeout"
        assert s2.end_pending
        s3 = cache.session("s3")
        assert s3 is not None and s3.local_state == "ended" and s3.status == "ended"
        assert s3.ended_at is not None and not s3.end_pending
        assert [s.session_id for s in cache.pending_ends()] == ["s1", "s2"]
        # The server says s1 ended: local_state follows; an active listing never downgrades.
        assert cache.upsert_sessions([info("s1", status="ended"), info("s3")]) == 2
        assert cache.session("s1").local_state == "ended"  # type: ignore[union-attr]
        assert cache.session("s3").local_state == "ended"  # type: ignore[union-attr]
        assert [s.session_id for s in cache.pending_ends()] == ["s2"]
        # mark_end_pending never downgrades an ended session.
        cache.mark_end_pending("s3", "late failure")
        assert cache.session("s3").local_state == "ended"  # type: ignore[union-attr]
        # Unknown session: a placeholder row so that the end is retried.
        cache.mark_end_pending("ghost", "boom")
        assert "ghost" in {s.session_id for s in cache.pending_ends()}
        assert cache.mark_ended("nope") is False


def test_upsert_sessions_counts_only_changes(db: Path) -> None:
    infos = [info(f"s{i}", count=i, day=i + 1) for i in range(5)]
    with HistoryCache(db, api_key=KEY_A) as cache:
        assert cache.upsert_sessions(infos) == 5
        changes = cache._conn.total_changes
        assert cache.upsert_sessions(infos) == 0
        assert cache._conn.total_changes == changes
        infos[2] = info("s2", count=9, day=3)
        assert cache.upsert_sessions(infos) == 1
        listed = cache.sessions()
        assert [s.session_id for s in listed] == ["s4", "s3", "s2", "s1", "s0"]
        assert listed[2].message_count == 9 and listed[2].info == infos[2]
        assert [s.session_id for s in cache.sessions(limit=2)] == ["s4", "s3"]
        since = datetime(2026, 2, 4, tzinfo=UTC)
        assert [s.session_id for s in cache.sessions(since=since)] == ["s4", "s3"]
        cache.upsert_sessions([info("s0", status="ended", day=1)])
        assert [s.session_id for s in cache.sessions(status="ended")] == ["s0"]
        cache.mirror_history("s1", [entry(i, sid="s1") for i in range(3)])
        assert cache.session("s1").entry_count == 3  # type: ignore[union-attr]
        stats = cache.stats()
        assert stats.sessions == 5 and stats.entries == 3
        assert stats.sessions_by_status == {"active": 4, "ended": 1}
        assert stats.schema_version == len(KNOWN_MIGRATIONS)
        assert stats.oldest_created_at == "2026-02-01T10:00:00.000000Z"


# -- scoping --------------------------------------------------------------------------------------


def test_scoping_two_keys_one_file(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_A) as a, HistoryCache(db, api_key=KEY_B) as b:
        a.record_opened(info("shared-id", day=1))
        b.record_opened(info("shared-id", day=2))
        b.record_opened(info("only-b", day=3))
        a.mirror_history("shared-id", [entry(0, "shared-id", content="alpha secret plan")])
        b.mirror_history("shared-id", [entry(0, "shared-id", content="bravo other plan")])
        assert [s.session_id for s in a.sessions()] == ["shared-id"]
        assert [e.content for e in a.history("shared-id")] == ["alpha secret plan"]
        assert a.search("bravo") == []
        assert [h.entry.content for h in b.search("plan")] == ["bravo other plan"]
        assert b.session("only-b") is not None and a.session("only-b") is None
        view = a.for_scope(key_scope(KEY_B))
        assert view.session("only-b") is not None
        view.close()  # a view does not close the shared connection
        assert a.sessions()
    with HistoryCache(db) as everything:
        assert len(everything.sessions()) == 3
        assert len(everything.history("shared-id")) == 2
        assert len(everything.search("plan")) == 2
        assert everything.stats().sessions_by_scope == {
            key_scope(KEY_A): 1,
            key_scope(KEY_B): 2,
        }
        with pytest.raises(ConfigurationError):
            everything.mirror_history("x", [entry(0, "x")])
        with pytest.raises(ConfigurationError):
            everything.record_opened(info("x"))
    data = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    for key in (KEY_A, KEY_B):
        assert key.encode() not in data
        assert key.encode("utf-16-le") not in data
    with pytest.raises(ConfigurationError):
        HistoryCache(db, api_key=KEY_A, scope="x")


# -- files, permissions, refusals ----------------------------------------------------------------


def test_permissions(db: Path) -> None:
    old = os.umask(0o022)
    try:
        with HistoryCache(db, api_key=KEY_A) as cache:
            cache.mirror_history("s1", [entry(0)])
            for p in [db, Path(f"{db}-wal"), Path(f"{db}-shm")]:
                assert p.exists()
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
            assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(8192),
        b"just a text file\n" * 100,
        b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 200,  # truncated
    ],
    ids=["random", "text", "truncated"],
)
def test_not_sqlite_refused_untouched(db: Path, content: bytes) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(content)
    with pytest.raises(CacheError, match=str(db)):
        HistoryCache(db, api_key=KEY_A)
    with pytest.raises(CacheError, match=str(db)):
        HistoryCache(db, readonly=True)
    assert db.read_bytes() == content
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]


def test_truncated_real_cache_refused(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", [entry(i, content="y" * 3000) for i in range(50)])
    data = db.read_bytes()
    cut = data[: len(data) // 2 + 100]
    db.write_bytes(cut)
    with pytest.raises(CacheError, match=str(db)):
        HistoryCache(db, api_key=KEY_A)
    assert db.read_bytes() == cut


def test_foreign_sqlite_refused_untouched(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(CacheError, match="invoices"):
        HistoryCache(db, api_key=KEY_A)
    assert db.read_bytes() == before


def test_newer_schema_refused_untouched(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", [entry(0)])
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
        ("pdffillr_sessions", "m999_from_the_future", "2030-01-01"),
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    files = {p.name: p.read_bytes() for p in db.parent.iterdir()}
    for kwargs in ({"api_key": KEY_A}, {"readonly": True}, {}):
        with pytest.raises(CacheError, match=r"newer version.*refusing to downgrade"):
            HistoryCache(db, **kwargs)  # type: ignore[arg-type]
    assert {p.name: p.read_bytes() for p in db.parent.iterdir()} == files


def test_migrations_registry_matches_known_names() -> None:
    from pdffillr_sessions.cache import _migrations

    assert tuple(_migrations.names()) == KNOWN_MIGRATIONS
    assert _migrations.MIGRATION_SET == "pdffillr_sessions"


def test_readonly_never_writes(db: Path) -> None:
    with pytest.raises(CacheError, match="no cache at"):
        HistoryCache(db, readonly=True)
    assert not db.exists()
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.record_opened(info("s1"))
        cache.mirror_history("s1", [entry(i) for i in range(10)])
    before = db.read_bytes()
    mtime = db.stat().st_mtime_ns
    with HistoryCache(db, readonly=True) as ro:
        assert len(ro.history("s1")) == 10
        assert ro.sessions()[0].session_id == "s1"
        assert ro.search("capital")
        assert ro.stats().entries == 10
        assert ro.integrity_check() == []
        for scoped in (ro.for_scope(key_scope(KEY_A)),):
            with pytest.raises(ConfigurationError, match="read-only"):
                scoped.mirror_history("s1", [entry(20)])
    with (
        HistoryCache(db, api_key=KEY_A, readonly=True) as ro,
        pytest.raises(ConfigurationError),
    ):
        ro.mark_ended("s1")
    assert db.read_bytes() == before
    assert db.stat().st_mtime_ns == mtime


def test_readonly_refuses_uninitialised_file(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    with pytest.raises(CacheError, match="write command"):
        HistoryCache(db, readonly=True)
    assert db.read_bytes() == b""


# -- search ---------------------------------------------------------------------------------------


HOSTILE = [
    '"',
    '""',
    '"unbalanced',
    "*",
    "capital*",
    "AND",
    "OR NOT",
    "NEAR(",
    "NEAR(a b",
    "-",
    "--x",
    ":",
    "content:",
    "a:b",
    "^",
    "(",
    ")",
    "{",
    "}",
    "[",
    "'",
    "\\",
    "\x00",
    "🦄",
    "a AND OR b",
    "capital -calls",
    "NOT capital",
    "col:capital",
    "   ",
    "",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_search_hostile_queries_never_raise(db: Path, query: str) -> None:
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", [entry(0, content='quote " star * and NEAR( a:b capital')])
        hits = cache.search(query)
        assert isinstance(hits, list)
        if not query.strip():
            assert hits == []


def test_search_ranks_and_filters(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history(
            "s1",
            [
                entry(0, "s1", content="waterfall waterfall waterfall carry"),
                entry(1, "s1", content="nothing relevant"),
            ],
        )
        cache.mirror_history(
            "s2", [entry(0, "s2", content="one waterfall mention among many words")]
        )
        hits = cache.search("waterfall")
        assert [(h.entry.session_id, h.entry.id) for h in hits] == [("s1", "e0"), ("s2", "e0")]
        assert hits[0].rank <= hits[1].rank and hits[0].score >= hits[1].score
        assert "[waterfall]" in hits[0].snippet
        assert [h.entry.session_id for h in cache.search("waterfall", session_id="s2")] == ["s2"]
        assert len(cache.search("waterfall", limit=1)) == 1
        assert cache.search("carry waterfall")[0].entry.id == "e0"
        assert cache.search("absent") == []


def test_scoped_search_fills_limit_past_other_scopes(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_B) as b:
        b.mirror_history("sb", [entry(i, "sb", content="fund fund fund fund") for i in range(300)])
    with HistoryCache(db, api_key=KEY_A) as a:
        a.mirror_history("sa", [entry(i, "sa", content="fund and other words") for i in range(5)])
        hits = a.search("fund", limit=5)
        assert [h.entry.session_id for h in hits] == ["sa"] * 5


def test_fts_stays_consistent_after_external_delete(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", [entry(i) for i in range(5)])
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM history WHERE id = 'e1'")
    conn.execute("UPDATE history SET content = 'replaced text' WHERE id = 'e2'")
    conn.commit()
    conn.close()
    with HistoryCache(db, api_key=KEY_A) as cache:
        assert cache.integrity_check() == []
        assert {h.entry.id for h in cache.search("capital")} == {"e0", "e3", "e4"}
        assert [h.entry.id for h in cache.search("replaced")] == ["e2"]
        cache._conn.execute("INSERT INTO history_fts (rowid, content) VALUES (9999, 'ghost')")
        assert cache.integrity_check() != []


# -- sqlite-utils compatibility -------------------------------------------------------------------


def test_sqlite_utils_sees_tables(db: Path) -> None:
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.record_opened(info("s1"))
        cache.mirror_history("s1", [entry(i) for i in range(3)])
    out = subprocess.run(
        [SQLITE_UTILS, "tables", str(db), "--counts"], capture_output=True, text=True, check=True
    ).stdout
    tables = {t["table"]: t["count"] for t in json.loads(out)}
    assert tables["sessions"] == 1 and tables["history"] == 3
    assert "history_fts" in tables and "create_intents" in tables
    out = subprocess.run(
        [SQLITE_UTILS, "search", str(db), "history", "capital", "--limit", "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(json.loads(out)) == 2


# -- concurrency ----------------------------------------------------------------------------------


def _open_fresh(path: str, barrier: Any) -> int:
    barrier.wait()
    with HistoryCache(path, api_key=KEY_A) as cache:
        return cache.schema_version


def _mirror_worker(path: str, worker: int) -> int:
    with HistoryCache(path, api_key=KEY_A) as cache:
        sid = f"w{worker}"
        entries = [entry(i, sid) for i in range(200)]
        total = 0
        for stop in range(10, 201, 10):  # many small transactions, interleaved with the others
            total += cache.mirror_history(sid, entries[:stop])
            cache.upsert_sessions([info(sid, count=stop)])
        return total


@pytest.mark.slow
def test_four_processes_open_fresh_file_migrate_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        path = tmp_path / f"fresh{attempt}" / "history.db"
        with ctx.Manager() as manager:
            barrier = manager.Barrier(4)
            with ctx.Pool(4) as pool:
                versions = pool.starmap(_open_fresh, [(str(path), barrier)] * 4)
        assert versions == [len(KNOWN_MIGRATIONS)] * 4
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall()
        conn.close()
        assert rows == [("pdffillr_sessions", name) for name in KNOWN_MIGRATIONS]


@pytest.mark.slow
def test_four_processes_mirror_concurrently(db: Path) -> None:
    HistoryCache(db, api_key=KEY_A).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        totals = pool.starmap(_mirror_worker, [(str(db), w) for w in range(4)])
    assert totals == [200] * 4
    with HistoryCache(db, api_key=KEY_A) as cache:
        for w in range(4):
            assert cache.history(f"w{w}") == [entry(i, f"w{w}") for i in range(200)]
            assert cache.session(f"w{w}").message_count == 200  # type: ignore[union-attr]
        assert cache.integrity_check() == []
        assert cache.stats().entries == 800


# -- misc -----------------------------------------------------------------------------------------


def test_default_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "envdir" / "h.db"
    monkeypatch.setenv("PDFFILLR_SESSIONS_DB", str(target))
    with HistoryCache(api_key=KEY_A) as cache:
        assert cache.path == target
    assert target.exists()


def test_naive_and_offset_datetimes_normalised(db: Path) -> None:
    e = HistoryEntry(
        id="x",
        session_id="s1",
        type="message",
        role=None,
        content="c",
        created_at=datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))),
        raw={},
    )
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", [e])
        (got,) = cache.history("s1")
    assert got == e
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at.hour == 17


def test_import_is_light() -> None:
    code = (
        "import sys, pdffillr_sessions.cache as c; "
        "bad = [m for m in ('httpx', 'tenacity', 'sqlite_utils', 'click') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_new_cache_file_settings_and_raw_encoding(db: Path) -> None:
    """A new file gets 16 KB pages and the FTS5 'hashsize' of m003; raw is stored as compact
    JSON, non-ASCII kept (the cached C encoder writes what JSONEncoder would)."""
    raw = {"id": "x", "content": 'é\u2028"q"', "n": [1, 2.5, None, True], "d": {}}
    e = HistoryEntry(
        id="x",
        session_id="s1",
        type="message",
        role="user",
        content="é",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        raw=raw,
    )
    with HistoryCache(db, api_key=KEY_A) as cache:
        cache.mirror_history("s1", [e])
        (got,) = cache.history("s1")
    assert dict(got.raw) == raw
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 16384
        assert (
            conn.execute("SELECT v FROM history_fts_config WHERE k = 'hashsize'").fetchone()[0]
            == 16 * 1024 * 1024
        )
        (text,) = conn.execute("SELECT raw FROM history").fetchone()
    finally:
        conn.close()
    assert text == json.dumps(raw, ensure_ascii=False, separators=(",", ":"))


def test_raw_that_is_not_json_is_refused(db: Path) -> None:
    bad = HistoryEntry(
        id="x",
        session_id="s1",
        type="message",
        role=None,
        content="c",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        raw={"when": datetime(2026, 1, 1, tzinfo=UTC)},
    )
    with HistoryCache(db, api_key=KEY_A) as cache:
        with pytest.raises(TypeError, match="not JSON serializable"):
            cache.mirror_history("s1", [bad])
        assert cache.history("s1") == []
