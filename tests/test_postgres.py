"""The PostgreSQL store, against a real server the tests start (``tests/_postgres.py``).

The same store as the SQLite cache behind a ``postgresql://`` URL: the tests that prove a
promise on both run once per backend (``location``); the rest are PostgreSQL's own (typed
connection errors, its migrations, text the server cannot hold, its text search). Liveness
across machines (advisory locks, SIGKILLed workers, two reapers, a cut lock connection) is in
``test_postgres_fleet.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pdffillr_sessions import (
    CacheAuthenticationError,
    CacheConnectionError,
    CacheError,
    CacheNotFoundError,
    ConfigurationError,
    HistoryCache,
    PdffillrClient,
    Session,
)
from pdffillr_sessions._models import HistoryEntry, SessionInfo, parse_entry
from pdffillr_sessions.cache import _sql
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator
from tests._blocks import KINDS, Block, run_block

KEY = "sk_postgres_tests_SECRET_5d4e3f"
PG_MIGRATIONS = ("p001_initial_schema", "p002_lean_history")
OTHER_KEY = "sk_postgres_tests_OTHER_0a9b8c"

HOSTILE = [
    "\x00NUL at the start, in the \x00 middle and at the end\x00",
    "ESC \x1b and ESC-space \x1b  and a doubled \x1b\x1b and ESC at the end \x1b",
    "'; DROP TABLE history; -- 100% ?",
    'NEAR(side letter) AND "unbalanced * OR -excluded content:title ^start',
    "emoji 🧾📄✅ and combining e\u0301 and RTL \u202eevil\u202c",
    "x" * 200_000,
]


def entry(i: int, sid: str = "s1", content: str | None = None) -> HistoryEntry:
    return parse_entry(
        {
            "id": f"e{i}",
            "type": "message",
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"entry {i} about the capital call notice" if content is None else content,
            "created_at": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        },
        session_id=sid,
    )


def info(sid: str, day: int = 1, status: str = "active") -> SessionInfo:
    return SessionInfo(
        session_id=sid,
        title=f"title {sid}",
        status=status,  # type: ignore[arg-type]
        message_count=0,
        created_at=datetime(2026, 1, day, tzinfo=UTC),
        raw={"session_id": sid, "status": status},
    )


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same store on each backend: a file path or a fresh database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "cache" / "history.db")
    return str(request.getfixturevalue("pg_url"))


# -- one store, two backends -------------------------------------------------------------------


def test_url_opens_postgres_and_stays_one_public_type(pg_url: str) -> None:
    with HistoryCache(pg_url, api_key=KEY) as cache:
        assert isinstance(cache, HistoryCache) and type(cache) is HistoryCache
        assert cache.is_postgres and cache.migrations_applied == PG_MIGRATIONS
        assert isinstance(cache.for_scope("abc"), HistoryCache)


def test_remirror_adds_nothing_and_a_new_entry_is_one_insert(location: str) -> None:
    entries = [entry(i) for i in range(50)]
    with HistoryCache(location, api_key=KEY) as cache:
        assert cache.mirror_history("s1", entries[:40]) == 40
        assert cache.mirror_history("s1", entries[:40]) == 0
        assert cache.mirror_history("s1", entries) == 10
        assert cache.append_entries("s1", [entries[49], entry(50)]) == 1
        assert cache.history("s1") == [*entries, entry(50)]
        # Out of order: the merge path inserts the unknown id and renumbers to the server's order.
        reordered = [entry(100), *entries, entry(50)]
        assert cache.mirror_history("s1", reordered) == 1
        assert [e.id for e in cache.history("s1")] == [e.id for e in reordered]
        assert cache.integrity_check() == []


def test_a_mirror_is_one_transaction(location: str) -> None:
    good = [entry(i) for i in range(5)]
    with HistoryCache(location, api_key=KEY) as cache:
        cache.mirror_history("s1", good[:2])
        bad = entry(4)
        object.__setattr__(bad, "raw", {"not json": {1, 2}})  # serialisation raises mid-insert
        with pytest.raises(TypeError):
            cache.mirror_history("s1", [*good[:4], bad])
        assert cache.history("s1") == good[:2]
        assert not cache._conn.in_transaction
        assert cache.mirror_history("s1", good) == 3


def test_any_text_round_trips_exactly(location: str) -> None:
    entries = [entry(i, content=text) for i, text in enumerate(HOSTILE)]
    with HistoryCache(location, api_key=KEY) as cache:
        cache.record_opened(
            SessionInfo(
                session_id="s\x00id\x1b",
                title="title with \x00 NUL",
                status="active",
                message_count=0,
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
                raw={"title": "title with \x00 NUL"},
            )
        )
        cache.mirror_history("s1", entries)
        assert [e.content for e in cache.history("s1")] == HOSTILE
        assert cache.history("s1") == entries  # field for field, raw included
        found = cache.session("s\x00id\x1b")
        assert found is not None and found.title == "title with \x00 NUL"
        assert dict(found.raw) == {"title": "title with \x00 NUL"}
        cache.mark_end_pending("s\x00id\x1b", "failed: \x00\x1b")
        assert cache.pending_ends()[0].local_error == "failed: \x00\x1b"
        for text in HOSTILE:
            cache.search(text)  # query syntax of either engine never raises
        assert cache.search("NUL middle")[0].entry.content == HOSTILE[0]


def test_the_search_language_is_the_same_on_both(location: str) -> None:
    texts = {
        "a": "The side letter grants MFN rights",
        "b": "side notes about a letter",
        "c": "capital call notice for Fund IV",
        "d": "Fund IV side-letter: capital call",
    }
    with HistoryCache(location, api_key=KEY) as cache:
        cache.mirror_history(
            "s1", [parse_entry(_raw(i, t), session_id="s1") for i, t in texts.items()]
        )
        cache.for_scope("other-scope").mirror_history(
            "s2", [parse_entry(_raw("z", "side letter of someone else"), session_id="s2")]
        )

        def ids(query: str, **kw: Any) -> set[str]:
            return {h.entry.id for h in cache.search(query, **kw)}

        assert ids("side-letter") == {"a", "d"}  # a token is a phrase of its words
        assert ids("letter side") == {"a", "b", "d"}  # every token, in any order
        assert ids("CAPITAL fund") == {"c", "d"}  # case folded
        assert ids("capital nonexistent") == set()
        assert ids('"side" letter*') == {"a", "b", "d"}  # a star is not syntax
        assert ids("side OR letter") == set()  # nor operators: OR is a word, required
        assert ids('"side letter"') == {"a", "d"}  # a quoted phrase is a phrase
        assert ids('"letter side"') == set()
        assert ids('"side letter" MFN') == {"a"}
        assert ids('"capital call') == {"c", "d"}  # an unbalanced quote runs to the end
        assert ids('"side\nletter"') == {"a", "d"} and ids("side\x00letter") == {"a", "d"}
        assert ids("") == set() and ids("!!! ---") == set()
        assert ids("capital", session_id="s1") == {"c", "d"}
        assert ids("capital", limit=1) <= {"c", "d"} and len(ids("capital", limit=1)) == 1
        hit = cache.search("MFN")[0]
        assert "[MFN]" in hit.snippet and hit.score == -hit.rank
    with HistoryCache(location) as unscoped:
        assert {h.entry.id for h in unscoped.search("side letter")} == {"a", "b", "d", "z"}


def _raw(entry_id: str, content: str) -> dict[str, Any]:
    return {
        "id": entry_id,
        "type": "message",
        "role": "user",
        "content": content,
        "created_at": "2026-01-01T00:00:00Z",
    }


def test_intents_states_and_pending_ends(location: str) -> None:
    with HistoryCache(location, api_key=KEY) as cache:
        cache.record_create_intent("idem-1", "t")
        cache.record_create_intent("idem-1", "t")  # idempotent
        assert [i.idempotency_key for i in cache.create_intents()] == ["idem-1"]
        cache.record_opened(info("s1", day=1), idempotency_key="idem-1")
        assert cache.create_intents() == []
        cache.record_opened(info("s2", day=2))
        cache.mark_end_pending("s2", "503 twice")
        cache.mark_ended("s1")
        pending = cache.pending_ends()
        assert [(s.session_id, s.local_state, s.local_error) for s in pending] == [
            ("s2", "end_pending", "503 twice")
        ]
        assert cache.upsert_sessions([info("s2", day=2, status="ended")]) == 1
        assert cache.upsert_sessions([info("s2", day=2, status="ended")]) == 0  # unchanged
        assert cache.pending_ends() == []
        assert [s.session_id for s in cache.sessions()] == ["s2", "s1"]  # newest first
        stats = cache.stats()
        assert stats.sessions == 2 and stats.sessions_by_host == {socket.gethostname(): 2}
    with HistoryCache(location, api_key=OTHER_KEY) as other:
        assert other.sessions() == []  # scoped by the key's fingerprint
    with HistoryCache(location) as unscoped, pytest.raises(ConfigurationError):
        unscoped.record_create_intent("x", None)


@pytest.mark.parametrize("kind", KINDS)
def test_a_session_block_mirrors_into_either_backend(
    location: str, emulator: Emulator, kind: str
) -> None:
    """``Session``, and ``AsyncSession`` (whose worker thread holds the PostgreSQL owner lock's
    connection and writes the rows)."""
    outcome = run_block(
        kind,
        Block(title="Q4 review", sends=["Summarise the side letter", "And the \x00 capital call"]),
        api_key=KEY,
        base_url=emulator.url,
        cache=location,
    )
    s = outcome.session
    assert s is not None and s.ended
    server = emulator.history(KEY, s.session_id)
    with HistoryCache(location, readonly=True) as cache:
        assert [e.id for e in cache.history(s.session_id)] == [e["id"] for e in server]
        assert [e.content for e in cache.history(s.session_id)] == [e["content"] for e in server]
        row = cache.session(s.session_id)
        assert row is not None and (row.status, row.local_state) == ("ended", "ended")
        assert cache.search("capital call")[0].entry.session_id == s.session_id


# -- PostgreSQL's own --------------------------------------------------------------------------


def test_a_newer_schema_is_refused_untouched(pg_url: str, pg_server: Any) -> None:
    HistoryCache(pg_url, api_key=KEY).close()
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pdffillr_sessions.migrations (seq, name, applied_at) "
            "VALUES (99, 'p099_from_the_future', 'x')"
        )
        before = conn.execute("SELECT count(*) FROM pdffillr_sessions.migrations").fetchone()
    for readonly in (False, True):
        with pytest.raises(CacheError, match=r"newer version.*p099_from_the_future"):
            HistoryCache(pg_url, readonly=readonly)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        after = conn.execute("SELECT count(*) FROM pdffillr_sessions.migrations").fetchone()
    assert before == after


def test_a_foreign_schema_is_refused(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA pdffillr_sessions")
        conn.execute("CREATE TABLE pdffillr_sessions.someone_elses (x int)")
    with pytest.raises(CacheError, match="not a pdffillr-sessions history"):
        HistoryCache(pg_url, api_key=KEY)


def test_read_only_never_creates_nor_writes(pg_url: str) -> None:
    with pytest.raises(CacheNotFoundError, match="no pdffillr-sessions history"):
        HistoryCache(pg_url, readonly=True)
    HistoryCache(pg_url, api_key=KEY).close()
    with HistoryCache(pg_url, readonly=True) as cache:
        with pytest.raises(CacheError, match="read-only"):
            cache._conn.execute("DELETE FROM history")
        assert cache.sessions() == []


def _open_fresh(url: str) -> tuple[str, ...]:
    with HistoryCache(url, api_key=KEY) as cache:
        return cache.migrations_applied


def test_four_processes_opening_a_fresh_database_migrate_once(pg_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_open_fresh, [pg_url] * 4)
    assert results == [PG_MIGRATIONS] * 4
    import psycopg

    with psycopg.connect(pg_url) as conn:
        names = conn.execute("SELECT name FROM pdffillr_sessions.migrations ORDER BY seq")
        assert tuple(r[0] for r in names.fetchall()) == PG_MIGRATIONS


def _mirror_worker(url: str, worker: int) -> int:
    added = 0
    with HistoryCache(url, api_key=KEY) as cache:
        for n in range(0, 200, 20):  # the shared session, growing, from every worker at once
            added += cache.mirror_history("shared", [entry(i, "shared") for i in range(n + 20)])
            cache.append_entries(f"w{worker}", [entry(n + j, f"w{worker}") for j in range(20)])
    return added


def test_four_processes_writing_at_once_lose_nothing(pg_url: str) -> None:
    HistoryCache(pg_url, api_key=KEY).close()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        added = pool.starmap(_mirror_worker, [(pg_url, w) for w in range(4)])
    assert sum(added) == 200  # every entry of the shared session inserted exactly once
    with HistoryCache(pg_url, api_key=KEY) as cache:
        assert cache.history("shared") == [entry(i, "shared") for i in range(200)]
        for w in range(4):
            assert cache.history(f"w{w}") == [entry(i, f"w{w}") for i in range(200)]
        assert cache.stats().entries == 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_a_refused_connection_is_a_typed_error() -> None:
    url = f"postgresql://someone:hunter2-secret@127.0.0.1:{_free_port()}/history"
    with pytest.raises(CacheConnectionError, match="cannot reach") as caught:
        HistoryCache(url, api_key=KEY)
    assert "hunter2-secret" not in _everything_said(caught.value)
    assert "someone:***@127.0.0.1" in str(caught.value)


def test_a_wrong_password_is_a_typed_error_that_never_shows_it(pg_server: Any) -> None:
    db = pg_server.new_database()
    wrong = "Wrong-Pa55-never-shown"
    with pytest.raises(CacheAuthenticationError, match="wrong user or password") as caught:
        HistoryCache(pg_server.tcp_url(db, password=wrong), api_key=KEY)
    assert wrong not in _everything_said(caught.value)
    right = pg_server.tcp_url(db)
    from tests._postgres import PASSWORD

    with HistoryCache(right, api_key=KEY) as cache:
        shown = repr(cache) + str(cache.path) + json.dumps(_stats(cache))
        assert PASSWORD not in shown and "fleet:***@" in shown


def _stats(cache: HistoryCache) -> dict[str, Any]:
    import attrs

    return attrs.asdict(cache.stats())


def test_a_missing_database_is_a_typed_error(pg_server: Any) -> None:
    with pytest.raises(CacheNotFoundError, match="no such PostgreSQL database"):
        HistoryCache(pg_server.url("no_such_database"), api_key=KEY)


def test_the_cli_takes_a_url_in_db_and_in_the_environment(
    pg_url: str, pg_server: Any, emulator: Emulator
) -> None:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        with Session(client, title="from the cli test", cache=pg_url) as s:
            s.send("the capital call notice")
    runner = CliRunner()
    listed = runner.invoke(main, ["sessions", "--json", "--db", pg_url])
    assert listed.exit_code == 0, listed.output
    assert [r["session_id"] for r in json.loads(listed.stdout)] == [s.session_id]
    env = {"PDFFILLR_SESSIONS_DB": pg_url, "PDFFILLR_API_KEY": KEY}
    found = runner.invoke(main, ["search", "capital", "--json"], env=env)
    assert json.loads(found.stdout)[0]["session_id"] == s.session_id
    assert runner.invoke(main, ["path"], env=env).stdout.strip() == pg_url
    checked = runner.invoke(main, ["check", "--json"], env=env)
    assert json.loads(checked.stdout)["ok"] is True
    stats = json.loads(runner.invoke(main, ["stats", "--json"], env=env).stdout)
    assert stats["sessions_by_host"] == {socket.gethostname(): 1}
    synced = runner.invoke(
        main, ["sync", "--json", "--base-url", emulator.url], env=env, catch_exceptions=False
    )
    assert synced.exit_code == 0 and json.loads(synced.stdout)["sessions"] == 1
    # A bad URL is one Error line, without the password.
    bad = f"postgresql://u:pw-in-url-SECRET@127.0.0.1:{_free_port()}/x"
    failed = runner.invoke(main, ["sessions", "--db", bad])
    assert failed.exit_code == 1 and failed.output.startswith("Error: ")
    assert "pw-in-url-SECRET" not in failed.output and "Traceback" not in failed.output
    served = runner.invoke(main, ["serve", "--db", pg_url])
    assert served.exit_code == 1 and "Datasette reads SQLite only" in served.output


def test_every_shared_statement_runs_on_postgres(pg_url: str) -> None:
    """The store's statements are written once (SQLite's spelling); the dialect translates."""
    from pdffillr_sessions.cache._pg_dialect import escape_text, translate, unescape_text

    assert translate("a IS NOT ? AND b IS NOT NULL AND c LIKE '%x'") == (
        "a IS DISTINCT FROM %s AND b IS NOT NULL AND c LIKE '%%x'"
    )
    for text in [*HOSTILE, "", "\x1b", "\x1b ", "\x00\x1b\x00"]:
        assert unescape_text(escape_text(text)) == text
        assert "\x00" not in escape_text(text)
    with HistoryCache(pg_url, api_key=KEY) as cache:
        for statement in (_sql.UPSERT_SESSION, _sql.RECORD_OPENED, _sql.INSERT_HISTORY):
            assert "?" in statement
        cache.record_opened(info("s1"))
        cache.upsert_sessions([info("s1"), info("s2")])
        cache.mirror_history("s1", [entry(0)])
        rows = cache._conn.execute(_sql.SESSION_SELECT + " ORDER BY s.session_id").fetchall()
        assert [r[0] for r in rows] == ["s1", "s2"]


def test_without_psycopg_a_url_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pdffillr_sessions.cache._pg", None)  # import -> ImportError
    with pytest.raises(ConfigurationError, match=r"pdffillr-sessions\[postgres\]"):
        HistoryCache("postgresql://nobody@/nowhere", api_key=KEY)
