"""The ``pdffillr-sessions`` command line, over caches made by the library and a real emulator."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pdffillr_sessions import PdffillrClient, Session
from pdffillr_sessions._owner import OwnerLock
from pdffillr_sessions._scope import key_scope
from pdffillr_sessions.cache import HistoryCache
from pdffillr_sessions.cli import main, parse_duration, parse_since

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk_cli_test_0123456789SECRET"
TRICKY = 'Line one\nline two \x00 NUL, emoji 📄🇪🇺, quote " and tab\t, é'

SESSION_KEYS = {
    "session_id",
    "title",
    "status",
    "message_count",
    "entry_count",
    "created_at",
    "ended_at",
    "scope",
    "local_state",
    "local_error",
    "opened_at",
    "synced_at",
}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert err.startswith("Error: "), err
    assert "\n" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


@pytest.fixture
def client(emulator: Any) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def filled(client: PdffillrClient, db: Path) -> dict[str, str]:
    """Two ended sessions recorded by real ``Session`` blocks against the emulator."""
    with Session(client, title="Q4 Contract Review", cache=db) as first:
        first.send(TRICKY)
        first.attach(file=b"%PDF-1.4 side letter", filename="side-letter.pdf")
    with Session(client, title="Capital call", cache=db) as second:
        second.send("Draft the capital call notice")
    return {"first": first.session_id, "second": second.session_id}


# -- parsing -----------------------------------------------------------------------------------


def test_durations_and_since() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration("0") == timedelta(0)
    for bad in ("", "7", "d", "1x", "1h junk"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert parse_since("2d", now=now) == datetime(2026, 1, 8, tzinfo=UTC)
    assert parse_since("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)


# -- offline commands --------------------------------------------------------------------------


def test_path_follows_env_and_db(tmp_path: Path) -> None:
    assert run("path").stdout.strip() == os.environ["PDFFILLR_SESSIONS_DB"]
    assert run("path", "--db", str(tmp_path / "x.db")).stdout.strip() == str(tmp_path / "x.db")


def test_sessions_table_and_json(filled: dict[str, str], db: Path) -> None:
    table = run("sessions", "--db", str(db))
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    # One key's sessions, none open or end-pending here: no SCOPE, no LOCAL column.
    assert lines[0].split() == ["ID", "TITLE", "STATUS", "ENTRIES", "CREATED"]
    assert filled["second"] in lines[2] and filled["first"] in lines[3]  # newest first
    assert key_scope(KEY) not in table.stdout

    data = json.loads(run("sessions", "--db", str(db), "--json").stdout)
    assert [s["session_id"] for s in data] == [filled["second"], filled["first"]]
    assert all(set(s) == SESSION_KEYS for s in data)
    assert data[1]["entry_count"] == 4 and data[1]["status"] == "ended"
    assert data[1]["local_state"] == "ended"

    nl = run("sessions", "--db", str(db), "--nl", "--limit", "1").stdout.splitlines()
    assert [json.loads(x)["session_id"] for x in nl] == [filled["second"]]
    assert json.loads(run("sessions", "--db", str(db), "--json", "--status", "active").stdout) == []
    since = run("sessions", "--db", str(db), "--json", "--since", "2999-01-01").stdout
    assert json.loads(since) == []
    assert len(json.loads(run("sessions", "--db", str(db), "--json", "--since", "1h").stdout)) == 2


def test_sessions_shows_local_open_and_end_pending(db: Path) -> None:
    from pdffillr_sessions import SessionInfo

    with HistoryCache(db, api_key=KEY) as cache:
        for sid in ("sess_open", "sess_pending"):
            cache.record_opened(
                SessionInfo(
                    session_id=sid,
                    title=None,
                    status="active",
                    message_count=0,
                    created_at=datetime.now(UTC),
                )
            )
        cache.mark_end_pending("sess_pending", "APIConnectionError: refused")
    out = run("sessions", "--db", str(db)).stdout
    row = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert row["sess_open"].rstrip().endswith("open")
    assert row["sess_pending"].rstrip().endswith("end pending")


def test_show_transcript_and_json(filled: dict[str, str], db: Path) -> None:
    out = run("show", filled["first"], "--db", str(db)).stdout
    assert "Session " + filled["first"] + ": Q4 Contract Review" in out
    assert "] user:" in out and "] assistant:" in out
    assert "line two \\x00 NUL, emoji 📄🇪🇺" in out  # control characters made visible
    assert "document: side-letter.pdf (20 bytes, upload)" in out
    assert "activity document.processed: Processed side-letter.pdf" in out

    data = json.loads(run("show", filled["first"], "--db", str(db), "--json").stdout)
    assert set(data) >= SESSION_KEYS
    assert [e["type"] for e in data["entries"]] == ["message", "message", "document", "activity"]
    assert data["entries"][0]["content"] == TRICKY
    assert data["entries"][2]["document"]["filename"] == "side-letter.pdf"


def test_export_jsonl_round_trips_text_exactly(filled: dict[str, str], db: Path) -> None:
    result = run("export", filled["first"], "--db", str(db), "--format", "jsonl")
    lines = result.stdout_bytes.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5  # one line per entry, newline in content kept
    entries = [json.loads(line) for line in lines[:-1]]
    assert entries[0]["content"] == TRICKY
    assert "📄".encode() in result.stdout_bytes  # UTF-8, not \\u escapes
    for e in entries:
        assert list(e)[:6] == ["id", "session_id", "type", "role", "content", "created_at"]
        assert e["session_id"] == filled["first"]
    assert entries[2]["document"]["size_bytes"] == 20  # server fields beyond the stable ones
    assert entries[3]["event"] == "document.processed"


def test_export_to_file_json_and_markdown(filled: dict[str, str], db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run("export", filled["first"], "--db", str(db), "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_bytes() == run("export", filled["first"], "--db", str(db)).stdout_bytes

    doc = json.loads(run("export", filled["first"], "--db", str(db), "-f", "json").stdout)
    assert doc["session_id"] == filled["first"] and len(doc["entries"]) == 4
    assert doc["entries"][0]["content"] == TRICKY

    md = run("export", filled["first"], "--db", str(db), "-f", "markdown").stdout
    assert md.startswith("# Q4 Contract Review\n")
    assert TRICKY in md and "## user · " in md and "**side-letter.pdf (20 bytes, upload)**" in md


def test_search(filled: dict[str, str], db: Path) -> None:
    hits = json.loads(run("search", "capital", "--db", str(db), "--json").stdout)
    assert hits and all(h["session_id"] == filled["second"] for h in hits)
    assert set(hits[0]) == {
        "session_id",
        "session_title",
        "entry_id",
        "type",
        "role",
        "created_at",
        "score",
        "snippet",
        "content",
    }
    assert hits[0]["session_title"] == "Capital call"
    scoped = json.loads(
        run("search", "side", "--session", filled["second"], "--db", str(db), "--json").stdout
    )
    assert scoped == []
    table = run("search", "letter", "--db", str(db), "--limit", "2").stdout.splitlines()
    assert len(table) == 4 and filled["first"] in table[2]
    for weird in ('"unbalanced', "AND OR NOT", "a*b:c(", "NEAR("):
        result = run("search", weird, "--db", str(db), "--json")
        assert result.exit_code == 0 and isinstance(json.loads(result.stdout), list)


def test_stats_and_check(filled: dict[str, str], db: Path) -> None:
    data = json.loads(run("stats", "--db", str(db), "--json").stdout)
    assert data["sessions"] == 2 and data["entries"] == 6
    assert data["sessions_by_status"] == {"ended": 2}
    assert data["sessions_by_scope"] == {key_scope(KEY): 2}
    assert data["schema_version"] >= 1 and data["file_size"] > 0
    assert "sessions:        2" in run("stats", "--db", str(db)).stdout

    result = run("check", "--db", str(db))
    assert result.exit_code == 0 and result.stdout.startswith("ok: ")


def test_check_finds_a_stale_fts_index_and_leaves_the_file_alone(
    filled: dict[str, str], db: Path
) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER history_ad")  # a delete the FTS index never hears about
    conn.execute("DELETE FROM history WHERE rowid = (SELECT min(rowid) FROM history)")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = db.read_bytes()
    result = run("check", "--db", str(db), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and "history_fts" in data["problems"][0]
    assert db.read_bytes() == before


def test_offline_commands_never_write(filled: dict[str, str], db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = db.read_bytes()
    for args in (
        ["sessions"],
        ["show", filled["first"]],
        ["search", "letter"],
        ["export", filled["first"]],
        ["stats"],
        ["check"],
    ):
        assert run(*args, "--db", str(db)).exit_code == 0, args
    assert db.read_bytes() == before


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["sessions", "stats", "check", "search x", "show s", "export s"]
)
def test_missing_file_is_one_line_and_not_created(command: str, db: Path) -> None:
    result = run(*command.split(), "--db", str(db))
    assert_one_line_error(result, "no history cache at", str(db))
    assert not db.exists()


@pytest.mark.parametrize(
    "content", [b"just some text\n", os.urandom(8192), b"SQLite format 3\x00" + os.urandom(4000)]
)
@pytest.mark.parametrize("command", ["sessions", "check", "stats"])
def test_foreign_files_are_reported_and_untouched(content: bytes, command: str, db: Path) -> None:
    db.write_bytes(content)
    result = run(command, "--db", str(db))
    assert_one_line_error(result, str(db))
    assert db.read_bytes() == content


def test_unknown_session_and_bad_output_path(filled: dict[str, str], db: Path) -> None:
    assert_one_line_error(run("show", "sess_nope", "--db", str(db)), "sess_nope")
    assert_one_line_error(run("export", "sess_nope", "--db", str(db)), "sess_nope")
    bad = db.parent / "no-such-dir" / "out.jsonl"
    assert_one_line_error(run("export", filled["first"], "--db", str(db), "-o", str(bad)))


@pytest.mark.parametrize("command", ["sync", "reap --older-than 0"])
def test_online_commands_need_a_key(command: str, filled: dict[str, str], db: Path) -> None:
    assert_one_line_error(run(*command.split(), "--db", str(db)), "PDFFILLR_API_KEY")


def test_api_errors_are_one_line_without_the_key(
    emulator: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    emulator.add_fault("401:GET::times=5")
    result = run("sync", "--db", str(db), "--base-url", emulator.url)
    assert_one_line_error(result, "401")
    assert KEY not in result.output
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = run("sync", "--db", str(db), "--base-url", dead)
    assert_one_line_error(result)


# -- start-up ----------------------------------------------------------------------------------


def test_offline_commands_do_not_import_httpx(filled: dict[str, str], db: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from click.testing import CliRunner
        from pdffillr_sessions.cli import main
        for args in (["sessions"], ["show", {filled["first"]!r}], ["search", "letter"],
                     ["stats"], ["check"], ["export", {filled["first"]!r}]):
            r = CliRunner().invoke(main, args + ["--db", {str(db)!r}])
            assert r.exit_code == 0, (args, r.output)
        print(sorted(m for m in ("httpx", "tenacity", "sqlite_utils") if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_emulator_command_is_registered_without_loading_the_server() -> None:
    """`pdffillr-sessions emulator` is the emulator module's own command object, and
    registering it imports neither the HTTP server nor the stdlib's http.server."""
    code = textwrap.dedent(
        """
        import sys
        from pdffillr_sessions.cli import main
        from pdffillr_sessions.emulator._cli import emulator_command
        assert main.commands["emulator"] is emulator_command
        heavy = ("pdffillr_sessions.emulator._server", "http.server")
        print([m for m in heavy if m in sys.modules])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("pdffillr-sessions")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pdffillr_sessions"]


def test_real_subprocess(filled: dict[str, str], db: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PDFFILLR_SESSIONS_DB": str(db)}
    env.pop("PDFFILLR_API_KEY", None)
    out = subprocess.run(
        [*_cli_command(), "export", filled["first"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=True,
    )
    assert json.loads(out.stdout.splitlines()[0])["content"] == TRICKY
    bad = subprocess.run(
        [*_cli_command(), "sessions", "--db", str(tmp_path / "missing.db")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("Error: no history cache") and bad.stderr.count("\n") == 1


def test_emulator_command_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdffillr_sessions", "emulator", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        with PdffillrClient(KEY, base_url=url) as c:
            assert c.sessions.create("via the CLI emulator").title == "via the CLI emulator"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- sync --------------------------------------------------------------------------------------


def test_sync_mirrors_incrementally(
    client: PdffillrClient, emulator: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    monkeypatch.setenv("PDFFILLR_BASE_URL", emulator.url)
    a = client.sessions.create("A")
    b = client.sessions.create("B")
    client.sessions.send(a.session_id, "first message 📄")
    client.sessions.create("empty")

    first = json.loads(run("sync", "--db", str(db), "--json").stdout)
    assert first == {
        "sessions": 3,
        "new": 3,
        "changed": 0,
        "unchanged": 0,
        "histories_fetched": 3,  # every new session, even one whose count says 0
        "entries_added": 2,
        "not_listed_upstream": 0,
        "failures": [],
    }
    exported = run("export", a.session_id, "--db", str(db)).stdout.splitlines()
    assert json.loads(exported[0])["content"] == "first message 📄"

    second = json.loads(run("sync", "--db", str(db), "--json").stdout)
    assert second["new"] == 0 and second["changed"] == 0
    assert second["histories_fetched"] == 0 and second["entries_added"] == 0

    client.sessions.send(b.session_id, "more")
    client.sessions.end(a.session_id)
    requests_before = len(emulator.request_log)
    third = run("sync", "--db", str(db))
    assert third.stdout.strip() == (
        "Synced 3 session(s): 0 new, 2 changed, 1 unchanged; fetched 2 histories, added 2 entries."
    )
    # B has new entries; A ended (its history is final now): both are fetched, not "empty".
    fetched = [r.path for r in emulator.request_log[requests_before:] if r.method == "GET"]
    assert fetched[0] == "/v1/sdk/chat/sessions"
    assert sorted(fetched[1:]) == sorted(
        f"/v1/sdk/chat/sessions/{x.session_id}/messages" for x in (a, b)
    )
    listing = json.loads(run("sessions", "--db", str(db), "--json").stdout)
    cached = {s["session_id"]: s for s in listing}
    assert cached[a.session_id]["status"] == "ended" and cached[b.session_id]["entry_count"] == 2

    only = json.loads(run("sync", b.session_id, "--db", str(db), "--json").stdout)
    assert only["sessions"] == 1
    assert_one_line_error(run("sync", "sess_nope", "--db", str(db)), "sess_nope")


# -- reap --------------------------------------------------------------------------------------

KILLED_SCRIPT = """
import os, signal, sys
from pdffillr_sessions import PdffillrClient, Session

with PdffillrClient(base_url=sys.argv[1]) as client:
    with Session(client, title="killed mid-block", cache=sys.argv[2]) as s:
        s.send("hello before dying")
        print(s.session_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_reap_ends_a_session_left_active_by_a_killed_script(
    emulator: Any, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PDFFILLR_API_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, str(script), emulator.url, str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sid = proc.stdout.strip()
    assert [s["status"] for s in emulator.sessions(KEY)] == ["active"]
    shown = json.loads(run("show", sid, "--db", str(db), "--json").stdout)
    assert shown["local_state"] == "open" and len(shown["entries"]) == 2

    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    monkeypatch.setenv("PDFFILLR_BASE_URL", emulator.url)
    # Its with-block died (the kernel released its owner lock): reaped at once, by default.
    dry = run("reap", "--db", str(db), "--dry-run")
    assert dry.exit_code == 0 and f"would end  {sid}" in dry.stdout
    assert emulator.sessions(KEY)[0]["status"] == "active"

    result = run("reap", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert f"ended  {sid}" in result.stdout and KEY not in result.output
    assert [s["status"] for s in emulator.sessions(KEY)] == ["ended"]
    shown = json.loads(run("show", sid, "--db", str(db), "--json").stdout)
    assert shown["local_state"] == "ended" and shown["status"] == "ended"
    assert run("reap", "--db", str(db), "--older-than", "0").stdout == "Nothing to reap.\n"


def test_reap_recovers_a_create_whose_reply_was_lost(
    client: PdffillrClient, emulator: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HistoryCache(db, api_key=KEY, server=client.server) as cache:
        lock = OwnerLock.acquire(db)
        assert lock is not None
        cache.record_create_intent("pfs_lost_reply_key", "lost reply", owner_lock=lock.name)
    made = client.sessions.create("lost reply", idempotency_key="pfs_lost_reply_key")
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    monkeypatch.setenv("PDFFILLR_BASE_URL", emulator.url)

    # Its block still holds the lock: it may still be inside its create. Left alone.
    live = json.loads(run("reap", "--db", str(db), "--older-than", "0", "--json").stdout)
    assert [(r["action"], r["live"], r["owner"]) for r in live["results"]] == [
        ("skipped", True, "alive")
    ]
    assert len(emulator.sessions(KEY)) == 1 and emulator.sessions(KEY)[0]["status"] == "active"
    lock.release(resolved=False)  # the block has exited: reaped at once, by default
    data = json.loads(run("reap", "--db", str(db), "--json").stdout)
    assert [(r["kind"], r["action"], r["session_id"]) for r in data["results"]] == [
        ("create_intent", "ended", made.session_id)
    ]
    upstream = emulator.sessions(KEY)
    assert [(s["session_id"], s["status"]) for s in upstream] == [(made.session_id, "ended")]
    with HistoryCache(db, readonly=True) as cache:
        assert cache.create_intents() == []
        cached = cache.session(made.session_id)
        assert cached is not None and cached.local_state == "ended"


def test_reap_marks_a_session_gone_upstream_and_reports_failures(
    client: PdffillrClient, emulator: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pdffillr_sessions import SessionInfo

    alive = client.sessions.create("alive")
    with HistoryCache(db, api_key=KEY, server=client.server) as cache:
        cache.record_opened(
            SessionInfo(
                session_id="sess_gone",
                title="gone",
                status="active",
                message_count=0,
                created_at=datetime.now(UTC),
            )
        )
        lock = OwnerLock.acquire(db)
        assert lock is not None
        cache.record_opened(alive, owner_lock=lock.name)
    with HistoryCache(db, api_key="sk_another_key") as other:
        other.record_opened(
            SessionInfo(
                session_id="sess_other",
                title=None,
                status="active",
                message_count=0,
                created_at=datetime.now(UTC),
            )
        )
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    monkeypatch.setenv("PDFFILLR_BASE_URL", emulator.url)
    emulator.add_fault("400:POST:/end$:times=1")  # the first end (of `alive`) fails

    # `alive` has a running block (its lock is held): left alone; `sess_gone` has no lock and
    # is too young for the default --older-than.
    live = json.loads(run("reap", "--db", str(db), "--json").stdout)
    assert {r["session_id"]: (r["action"], r["owner"]) for r in live["results"]} == {
        "sess_gone": ("skipped", "unknown"),
        alive.session_id: ("skipped", "alive"),
    }
    assert emulator.stats["requests"] == 1  # the create above, nothing else
    failed = run("reap", "--db", str(db), "--older-than", "0", "--include-live", "--json")
    assert failed.exit_code == 1
    actions = {r["session_id"]: r["action"] for r in json.loads(failed.stdout)["results"]}
    assert actions == {"sess_gone": "gone", alive.session_id: "failed"}
    assert "sess_other" not in actions  # another key's sessions are never touched
    pending = json.loads(run("sessions", "--db", str(db), "--json").stdout)
    states = {s["session_id"]: s["local_state"] for s in pending}
    assert states == {"sess_gone": "ended", alive.session_id: "end_pending", "sess_other": "open"}

    again = run("reap", "--db", str(db))  # end-pending: reaped whatever its lock says
    assert again.exit_code == 0 and f"ended  {alive.session_id}" in again.stdout
    assert emulator.sessions(KEY)[0]["status"] == "ended"
    lock.release(resolved=True)


def test_reap_without_a_cache_file(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    result = run("reap", "--db", str(db))
    assert result.exit_code == 0 and result.stdout.startswith("Nothing to reap")
    assert not db.exists()
