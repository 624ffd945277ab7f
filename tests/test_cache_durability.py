"""The cache survives SIGKILL mid-write, 8 concurrent writers, and schema upgrades.

* A process killed (SIGKILL) in the middle of one large ``mirror_history`` transaction leaves a
  file that passes ``PRAGMA integrity_check`` (and the FTS5 check), holding the history exactly
  as it was before the call or exactly as after it: never half.
* 8 processes writing one file at once (different sessions, the same session by mirror, the same
  session by append) lose nothing, duplicate nothing, and never raise "database is locked".
* A file written by an OLDER schema (only ``m001``) is migrated in place on open (rows intact,
  the columns of ``m002_opened_by`` and ``m004_server_and_owner_lock`` NULL for old rows). A
  NEWER one is refused untouched: that is ``test_cache.py::test_newer_schema_refused_untouched``,
  not repeated here.
* Owner locks: ``reap`` leaves alone a session (or create intent) whose with-block still runs,
  in another process or in its own, and ends at once one whose process has died (a zombie
  included); records without a lock (older files) fall back to ``--older-than``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pdffillr_sessions import HistoryCache, PdffillrClient, Session
from pdffillr_sessions._models import HistoryEntry, parse_entry
from pdffillr_sessions._owner import OwnerLock, Probe, lock_dir
from pdffillr_sessions._scope import key_scope
from pdffillr_sessions.cache import KNOWN_MIGRATIONS
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator

KEY = "sk_durability_tests_SECRET_4c3b2a"
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def entry(i: int, sid: str, tag: str = "") -> HistoryEntry:
    return parse_entry(
        {
            "id": f"{tag}e{i}",
            "type": "message",
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"entry {tag}{i} about the capital call notice",
            "created_at": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        },
        session_id=sid,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "history.db"


def plain_count(path: Path, sql: str, *args: Any) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql, args).fetchone()[0])
    finally:
        conn.close()


# -- SIGKILL during a large mirror -------------------------------------------------------------

BIG = 50_000
PREFIX = 100

MIRROR_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pdffillr_sessions import HistoryCache
    sys.path.insert(0, sys.argv[4])
    from test_cache_durability import entry

    path, mode, big = sys.argv[1], sys.argv[2], int(sys.argv[3])
    entries = [entry(i, "big") for i in range(big)]
    with HistoryCache(path, api_key=sys.argv[5]) as cache:
        if mode == "hook":
            # Killed from inside SQLite, with 20k rows of the transaction written and
            # uncommitted: the most exact mid-transaction point there is.
            conn = cache._conn
            base = conn.total_changes
            def kill_mid_transaction():
                if conn.in_transaction and conn.total_changes - base > 20_000:
                    os.kill(os.getpid(), signal.SIGKILL)
                return 0
            conn.set_progress_handler(kill_mid_transaction, 1000)
        print("ready", flush=True)
        cache.mirror_history("big", entries)
        print("committed", flush=True)
    """
)


def _run_mirror_and_kill(db: Path, mode: str, delay: float) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", MIRROR_SCRIPT, str(db), mode, str(BIG), str(ROOT / "tests"), KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr and proc.stderr.read()
    if mode == "timer":
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    out, _err = proc.communicate(timeout=60)
    return proc.returncode, out


@pytest.mark.parametrize(
    "mode,delay",
    [("hook", 0.0), ("timer", 0.0), ("timer", 0.05), ("timer", 0.15), ("timer", 0.4)],
)
def test_sigkill_during_a_large_mirror_is_all_or_nothing(db: Path, mode: str, delay: float) -> None:
    with HistoryCache(db, api_key=KEY) as cache:
        cache.mirror_history("big", [entry(i, "big") for i in range(PREFIX)])
    delay *= random.uniform(0.5, 1.5)
    returncode, out = _run_mirror_and_kill(db, mode, delay)
    if mode == "hook":
        assert returncode == -signal.SIGKILL and "committed" not in out
    else:  # the timer may fire after the commit: both outcomes are legal, half is not
        assert returncode in (-signal.SIGKILL, 0)
    # Inspect with a plain connection first (it runs WAL recovery like any reader would).
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    rows = plain_count(db, "SELECT count(*) FROM history WHERE session_id = 'big'")
    assert rows in (PREFIX, BIG), f"half a mirror is visible: {rows} rows"
    if mode == "hook":
        assert rows == PREFIX
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.integrity_check() == []  # SQLite and FTS5
        history = cache.history("big")
        assert [e.id for e in history] == [f"e{i}" for i in range(rows)]
        assert len(cache.search("capital call", limit=rows + 1)) == rows
        # And the file is fully usable: the interrupted mirror can simply be run again.
        cache.mirror_history("big", [entry(i, "big") for i in range(BIG)])
        assert len(cache.history("big")) == BIG


# -- 8 processes, one file ---------------------------------------------------------------------

WORKERS = 8


def _mirror_own_session(path: str, worker: int) -> int:
    with HistoryCache(path, api_key=KEY) as cache:
        sid = f"w{worker}"
        entries = [entry(i, sid) for i in range(150)]
        return sum(cache.mirror_history(sid, entries[:stop]) for stop in range(10, 151, 10))


def _mirror_shared_session(path: str, worker: int) -> int:
    with HistoryCache(path, api_key=KEY) as cache:
        entries = [entry(i, "shared") for i in range(150)]
        stops = list(range(10, 151, 10))
        random.Random(worker).shuffle(stops)  # writers race with different views of the history
        total = sum(cache.mirror_history("shared", entries[:stop]) for stop in sorted(stops))
        return total + cache.mirror_history("shared", entries)


def _append_to_shared_session(path: str, worker: int) -> int:
    with HistoryCache(path, api_key=KEY) as cache:
        return sum(
            cache.append_entries("appended", [entry(i, "appended", tag=f"w{worker}-")])
            for i in range(40)
        )


def _pool_run(fn: Any, db: Path) -> list[int]:
    HistoryCache(db, api_key=KEY).close()  # created and migrated once, before the race
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:  # any exception (a lock error included) re-raises here
        return pool.starmap(fn, [(str(db), w) for w in range(WORKERS)])


def test_eight_processes_writing_one_cache_lose_nothing(db: Path) -> None:
    totals = _pool_run(_mirror_own_session, db)
    assert totals == [150] * WORKERS
    with HistoryCache(db, api_key=KEY) as cache:
        for w in range(WORKERS):
            assert cache.history(f"w{w}") == [entry(i, f"w{w}") for i in range(150)]
        assert cache.stats().entries == 150 * WORKERS
        assert cache.integrity_check() == []


def test_eight_processes_mirroring_the_same_session(db: Path) -> None:
    totals = _pool_run(_mirror_shared_session, db)
    assert sum(totals) == 150  # every entry inserted by exactly one of them
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.history("shared") == [entry(i, "shared") for i in range(150)]
        assert cache.integrity_check() == []
    seqs = plain_count(db, "SELECT count(DISTINCT seq) FROM history WHERE session_id='shared'")
    assert seqs == 150


def test_eight_processes_appending_to_the_same_session(db: Path) -> None:
    totals = _pool_run(_append_to_shared_session, db)
    assert totals == [40] * WORKERS
    with HistoryCache(db, api_key=KEY) as cache:
        history = cache.history("appended")
        assert len(history) == len({e.id for e in history}) == 40 * WORKERS
        for w in range(WORKERS):  # each writer's entries keep their own order
            mine = [e.id for e in history if e.id.startswith(f"w{w}-")]
            assert mine == [f"w{w}-e{i}" for i in range(40)]
        assert cache.integrity_check() == []
    seqs = plain_count(db, "SELECT count(DISTINCT seq) FROM history WHERE session_id='appended'")
    assert seqs == 40 * WORKERS  # no two appends got the same position


# -- migrations ----------------------------------------------------------------------------------


def _make_m001_cache(path: Path) -> None:
    """A cache file exactly as the version with only m001 wrote it."""
    from sqlite_utils import Database

    from pdffillr_sessions.cache import _migrations

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    _migrations.migrations.apply(
        Database(conn, execute_plugins=False), stop_before="m002_opened_by"
    )
    scope = key_scope(KEY)
    conn.execute(
        "INSERT INTO sessions (scope, session_id, title, status, message_count, created_at, "
        "local_state, opened_at, updated_at, raw) VALUES (?, 'sess_old', 'old one', 'active', "
        "2, '2026-01-01T00:00:00.000000Z', 'open', '2026-01-01T00:00:01.000000Z', "
        "'2026-01-01T00:00:01.000000Z', ?)",
        (scope, json.dumps({"session_id": "sess_old", "title": "old one"})),
    )
    for i in range(2):
        e = entry(i, "sess_old")
        conn.execute(
            "INSERT INTO history (scope, session_id, id, seq, type, role, content, created_at, "
            "raw) VALUES (?, 'sess_old', ?, ?, 'message', ?, ?, ?, ?)",
            (scope, e.id, i, e.role, e.content, f"2026-01-01T00:00:0{i}.000000Z", "{}"),
        )
        conn.execute(
            "INSERT INTO history_fts (rowid, content) SELECT rowid, content FROM history "
            "WHERE id = ?",
            (e.id,),
        )
    conn.execute(
        "INSERT INTO create_intents VALUES (?, 'pfs_old_intent', 'lost', "
        "'2026-01-01T00:00:00.000000Z')",
        (scope,),
    )
    conn.close()


def test_an_older_cache_is_migrated_with_its_rows_intact(db: Path) -> None:
    _make_m001_cache(db)
    conn = sqlite3.connect(db)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
    conn.close()
    assert "opened_pid" not in columns  # really the old schema
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.migrations_applied == KNOWN_MIGRATIONS
        assert cache.schema_version == len(KNOWN_MIGRATIONS)
        old = cache.session("sess_old")
        assert old is not None and old.title == "old one" and old.local_state == "open"
        assert old.opened_pid is None and old.opened_host is None
        assert old.server is None and old.owner_lock is None  # unknown server, no lock
        assert [e.id for e in cache.history("sess_old")] == ["e0", "e1"]
        assert [h.entry.id for h in cache.search("capital")] != []
        [intent] = cache.create_intents()
        assert intent.idempotency_key == "pfs_old_intent" and intent.opened_pid is None
        assert intent.server is None and intent.owner_lock is None
        assert cache.integrity_check() == []
    migrated = sqlite3.connect(db)
    names = [r[0] for r in migrated.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    migrated.close()
    assert tuple(names) == KNOWN_MIGRATIONS  # each recorded once, in order
    with HistoryCache(db, readonly=True) as reader:  # now current: read-only opens work
        assert reader.session("sess_old") is not None


def test_record_opened_records_the_opening_process_and_keeps_the_first(db: Path) -> None:
    from datetime import UTC, datetime

    from pdffillr_sessions import SessionInfo

    info = SessionInfo(
        session_id="sess_new",
        title=None,
        status="active",
        message_count=0,
        created_at=datetime.now(UTC),
    )
    with HistoryCache(db, api_key=KEY) as cache:
        cache.record_opened(info)
        row = cache.session("sess_new")
        assert row is not None
        assert (row.opened_pid, row.opened_host) == (os.getpid(), socket.gethostname())
        conn = sqlite3.connect(db)
        conn.execute("UPDATE sessions SET opened_pid = 1 WHERE session_id = 'sess_new'")
        conn.commit()
        conn.close()
        cache.record_opened(info)  # e.g. reap replaying the create: the opener stays
        again = cache.session("sess_new")
        assert again is not None and again.opened_pid == 1


# -- reap and live openers ---------------------------------------------------------------------

LIVE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pdffillr_sessions import PdffillrClient, Session
    with PdffillrClient(sys.argv[1], base_url=sys.argv[2]) as client:
        with Session(client, title="still running", cache=sys.argv[3]) as s:
            print(s.session_id, flush=True)
            sys.stdin.readline()  # hold the block open until the test says so
    """
)


def reap(emulator: Emulator, db: Path, *args: str) -> Result:
    env = {
        "PDFFILLR_API_KEY": KEY,
        "PDFFILLR_BASE_URL": emulator.url,
        "PDFFILLR_SESSIONS_DB": str(db),
    }
    return CliRunner().invoke(main, ["reap", "--json", *args], env=env, catch_exceptions=False)


def test_reap_leaves_a_running_scripts_session_alone(emulator: Emulator, db: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LIVE_SCRIPT, KEY, emulator.url, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        sid = proc.stdout.readline().strip()
        with HistoryCache(db, api_key=KEY) as cache:
            row = cache.session(sid)
            assert row is not None and row.opened_pid == proc.pid
        for args in ((), ("--older-than", "0")):  # by default, and whatever its age
            data = json.loads(reap(emulator, db, *args).stdout)
            [result] = data["results"]
            assert (result["action"], result["owner"], result["opened_pid"]) == (
                "skipped",
                "alive",
                proc.pid,
            )
        assert emulator.sessions(KEY)[0]["status"] == "active"
        # --include-live overrides it (the script's next call would then get a 409).
        forced = json.loads(reap(emulator, db, "--older-than", "0", "--include-live").stdout)
        assert [r["action"] for r in forced["results"]] == ["ended"]
        assert emulator.sessions(KEY)[0]["status"] == "ended"
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0  # its own end of an ended session is not an error
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_dead_owner_is_reaped_at_once_and_a_lockless_record_by_age(
    emulator: Emulator, db: Path
) -> None:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        a = client.sessions.create("its block died")
        b = client.sessions.create("older version, no lock")
        with HistoryCache(db, api_key=KEY, server=client.server) as cache:
            lock = OwnerLock.acquire(db)
            assert lock is not None
            cache.record_opened(a, owner_lock=lock.name)
            cache.record_opened(b)
        lock.release(resolved=False)  # what the kernel does when its process dies
    young = json.loads(reap(emulator, db).stdout)  # the default --older-than 1h
    assert {r["session_id"]: (r["action"], r["owner"]) for r in young["results"]} == {
        a.session_id: ("ended", "dead"),
        b.session_id: ("skipped", "unknown"),
    }
    done = json.loads(reap(emulator, db, "--older-than", "0").stdout)
    assert [(r["session_id"], r["action"]) for r in done["results"]] == [(b.session_id, "ended")]
    assert {s["status"] for s in emulator.sessions(KEY)} == {"ended"}


HOLD_A_LOCK = textwrap.dedent(
    """
    import sys
    from pdffillr_sessions._owner import OwnerLock
    lock = OwnerLock.acquire(sys.argv[1])
    print(lock.name, flush=True)
    sys.stdin.readline()
    """
)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_a_zombie_owner_counts_as_dead(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_LOCK, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        name = proc.stdout.readline().strip()
        with Probe(db, name) as probe:
            assert probe.liveness == "alive"
        proc.stdin.write("\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while not _is_zombie(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # exited, not waited for: a zombie, whose pid kill(0) still finds
        os.kill(proc.pid, 0)  # the pid still exists...
        with Probe(db, name) as probe:
            assert probe.liveness == "dead"  # ...but the kernel released its lock at exit
    finally:
        proc.wait()
    with Probe(db, None) as none, Probe(db, "../../etc/passwd") as hostile:
        assert none.liveness == hostile.liveness == "unknown"  # no usable lock: by age


def test_a_session_block_in_this_process_is_live(emulator: Emulator, db: Path) -> None:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        with Session(client, cache=db) as s:
            data = json.loads(reap(emulator, db).stdout)  # flock: its own process's reap too
            assert [(r["session_id"], r["live"]) for r in data["results"]] == [(s.session_id, True)]
            assert emulator.sessions(KEY)[0]["status"] == "active"
    assert emulator.sessions(KEY)[0]["status"] == "ended"


STUCK_CREATE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pdffillr_sessions import PdffillrClient, Session, _contract

    original = PdffillrClient.request

    def request(self, method, path, **kwargs):
        if method == "POST" and path == _contract.SESSIONS_PATH:
            print("creating", flush=True)
            sys.stdin.readline()  # as if the create were slow, or retrying with backoff
        return original(self, method, path, **kwargs)

    PdffillrClient.request = request
    with PdffillrClient(sys.argv[1], base_url=sys.argv[2]) as client:
        with Session(client, title="slow create", cache=sys.argv[3]) as s:
            s.send("after the create")
    print(s.session_id, flush=True)
    """
)


def test_reap_leaves_a_running_scripts_create_intent_alone(emulator: Emulator, db: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_CREATE_SCRIPT, KEY, emulator.url, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "creating"
        data = json.loads(reap(emulator, db).stdout)
        [result] = data["results"]
        assert (result["kind"], result["action"], result["live"]) == (
            "create_intent",
            "skipped",
            True,
        )
        assert emulator.sessions(KEY) == []  # the create was not replayed behind its back
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
        sid = proc.stdout.readline().strip()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The script's block ran undisturbed and ended its session; nothing is left to reap.
    assert [(s["session_id"], s["status"]) for s in emulator.sessions(KEY)] == [(sid, "ended")]
    assert user_messages_in(emulator, sid) == ["after the create"]
    assert json.loads(reap(emulator, db, "--older-than", "0").stdout)["results"] == []
    assert list(lock_dir(db).iterdir()) == []  # and no lock file


def user_messages_in(emulator: Emulator, sid: str) -> list[str]:
    return [e["content"] for e in emulator.history(KEY, sid) if e["role"] == "user"]


def test_an_older_cache_is_readable_read_only_without_being_touched(db: Path) -> None:
    from click.testing import CliRunner

    from pdffillr_sessions.cli import main as cli

    _make_m001_cache(db)
    before = db.read_bytes()
    with HistoryCache(db, readonly=True) as reader:
        assert reader.migrations_applied == KNOWN_MIGRATIONS[:1]
        old = reader.session("sess_old")
        assert old is not None and old.title == "old one" and old.opened_pid is None
        assert [p.session_id for p in reader.pending_ends()] == ["sess_old"]
        [intent] = reader.create_intents()
        assert intent.opened_pid is None
        assert [e.id for e in reader.history("sess_old")] == ["e0", "e1"]
    result = CliRunner().invoke(cli, ["sessions", "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert [s["session_id"] for s in json.loads(result.output)] == ["sess_old"]
    assert db.read_bytes() == before  # never migrated by a reader
    conn = sqlite3.connect(db)
    assert "opened_pid" not in {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
    conn.close()
