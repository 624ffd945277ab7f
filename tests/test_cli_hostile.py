"""A command line that cannot be turned against its user, and a cache whose every failure is typed.

The export never overwrites the cache; ``--db`` at a FIFO, a device or a directory is one error
line (never a hang); every numeric and date option has a range; arguments that are not text are
a usage error; server text reaching a terminal is escaped. SQLite errors reach users as a
``CacheError`` naming the file and the cause; a cache readable by others is made private; and
``check`` works in a read-only location without copying the file.
"""

from __future__ import annotations

import logging
import os
import pty
import select
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pdffillr_sessions import CacheError, HistoryCache, PdffillrClient, Session
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk_cli_hostile_0123456789"
NASTY = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def python_cli(*args: str | bytes, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kwargs.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "pdffillr_sessions", *args],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
        **kwargs,
    )


def assert_one_line_error(
    result: Result | subprocess.CompletedProcess[bytes], *needles: str
) -> None:
    if isinstance(result, Result):
        code, err = result.exit_code, result.stderr
    else:
        code, err = result.returncode, result.stderr.decode()
    assert code == 1, (code, err)
    err = err.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def filled(client: PdffillrClient, tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "history.db"
    with Session(client, title="kept", cache=db) as s:
        s.send("a message worth keeping")
    return db, s.session_id


# -- the export never overwrites the cache ---------------------------------------------------


@pytest.mark.parametrize("target", ["db", "wal", "shm", "hardlink", "symlink", "relative"])
def test_export_refuses_to_write_over_the_cache(
    filled: tuple[Path, str], target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, sid = filled
    with HistoryCache(db, readonly=True):  # a reader leaves -wal and -shm in place
        pass
    out = {
        "db": db,
        "wal": Path(f"{db}-wal"),
        "shm": Path(f"{db}-shm"),
        "hardlink": db.parent / "link.db",
        "symlink": db.parent / "sym.db",
        "relative": Path("history.db"),
    }[target]
    if target == "hardlink":
        os.link(db, out)
    elif target == "symlink":
        out.symlink_to(db)
    elif target == "relative":
        monkeypatch.chdir(db.parent)
    before = db.read_bytes()
    result = run("export", sid, "--db", str(db), "-o", str(out))
    assert result.exit_code == 2 and "it is the history cache" in result.stderr, result.output
    assert db.read_bytes() == before
    assert sid in run("sessions", "--db", str(db)).stdout


# -- --db that is not a regular file ---------------------------------------------------------


@pytest.fixture(params=["fifo", "device", "directory"])
def not_a_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "fifo":
        path = tmp_path / "fifo.db"
        os.mkfifo(path)
        return path
    if request.param == "device":
        return Path("/dev/zero")
    path = tmp_path / "dir.db"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "command", [["sessions"], ["stats"], ["check"], ["show", "x"], ["export", "x"], ["sync"]]
)
def test_a_db_that_is_not_a_regular_file_is_one_error_line(
    not_a_file: Path, command: list[str], emulator: Emulator
) -> None:
    env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emulator.url}
    result = python_cli(*command, "--db", str(not_a_file), env=env)  # a hang fails the timeout
    assert_one_line_error(result, str(not_a_file), "not a cache file")


def test_the_library_refuses_a_cache_that_is_not_a_regular_file(
    not_a_file: Path, client: PdffillrClient
) -> None:
    with pytest.raises(CacheError, match="not a cache file"):
        HistoryCache(not_a_file, readonly=True)
    with pytest.raises(CacheError, match="not a cache file"):
        HistoryCache(not_a_file, api_key=KEY)
    with pytest.raises(CacheError, match="not a cache file"), Session(client, cache=not_a_file):
        pass


# -- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["sessions", "--since", "99999999999w"],
        ["sessions", "--since", "0001-01-01T00:00:00+01:00"],
        ["sessions", "--since", "9999-12-31T23:59:59-01:00"],
        ["sessions", "--since", "1" + "0" * 400 + "s"],
        ["sessions", "-n", "1180591620717411303424"],
        ["search", "x", "-n", "1180591620717411303424"],
        ["reap", "--older-than", "99999999w"],
        ["emulator", "--fault", "delay:::seconds=1e308"],
        ["emulator", "--fault", "503:::times=99999999999999999999"],
    ],
)
def test_numeric_and_date_options_have_ranges(filled: tuple[Path, str], args: list[str]) -> None:
    db, _ = filled
    extra = [] if args[0] == "emulator" else ["--db", str(db)]
    result = run(*args, *extra, env={"PDFFILLR_API_KEY": KEY})
    assert result.exit_code == 2, result.output  # a usage error, before anything runs
    assert "Usage:" in result.stderr and "Traceback" not in result.output


def test_dates_at_the_edge_of_the_range_still_work(filled: tuple[Path, str]) -> None:
    db, sid = filled
    for since in ("36525d", "0001-01-01", "0001-01-01T00:00:00Z"):
        result = run("sessions", "--since", since, "--db", str(db))
        assert result.exit_code == 0 and sid in result.stdout


# -- arguments that are not text ---------------------------------------------------------------


def test_arguments_that_are_not_text_are_a_usage_error(filled: tuple[Path, str]) -> None:
    db, _ = filled
    for args in ([b"show", b"sess_\xff\xfe"], [b"search", b"caf\xe9"], [b"export", b"\x80"]):
        result = python_cli(*args, b"--db", os.fsencode(db))
        assert result.returncode == 2, result
        assert b"is not valid text" in result.stderr and b"Traceback" not in result.stderr


# -- server text on a terminal -----------------------------------------------------------------


def on_a_terminal(*args: str, env: dict[str, str] | None = None) -> bytes:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdffillr_sessions", *args],
        stdout=follower,
        stderr=follower,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower side closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(leader)
    return b"".join(chunks)


def test_server_chosen_text_is_escaped_on_a_terminal_and_exact_in_a_pipe(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.db"
    sid = f"sess_{NASTY}"
    from pdffillr_sessions import HistoryEntry, SessionInfo
    from pdffillr_sessions._models import parse_datetime

    created = parse_datetime("2020-01-01T00:00:00Z", what="t")
    info = SessionInfo(
        session_id=sid, title=NASTY, status="active", message_count=1, created_at=created
    )
    entry = HistoryEntry(
        id="e1",
        session_id=sid,
        type="message",
        role="assistant",
        content=f"text {NASTY}",
        created_at=created,
        raw={"id": "e1", "content": f"text {NASTY}"},
    )
    with HistoryCache(db, api_key=KEY) as cache:
        cache.record_opened(info)
        cache.mirror_history(sid, [entry])
    env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": "http://127.0.0.1:9"}
    for args in (
        ["show", sid],
        ["show", sid, "--json"],
        ["sessions"],
        ["sessions", "--json"],
        ["export", sid, "-f", "markdown"],
        ["search", "text"],
        ["reap", "--dry-run", "--older-than", "0"],
    ):
        shown = on_a_terminal(*args, "--db", str(db), env=env)
        assert b"pwned" in shown, (args, shown)  # the text is there...
        for raw in (b"\x1b", b"\x07", "\x9b".encode(), "\u202e".encode()):
            assert raw not in shown, (args, raw, shown)  # ...but nothing a terminal acts on
    piped = python_cli("export", sid, "-f", "jsonl", "--db", str(db))
    assert f"text {NASTY}".encode() in piped.stdout.replace(b"\\u001b", b"\x1b").replace(
        b"\\u0007", b"\x07"
    )
    assert "\x9b".encode() in piped.stdout  # a file or a pipe gets the text exactly


# -- typed cache errors --------------------------------------------------------------------------


def test_a_corrupt_cache_is_a_cache_error_from_session_enter(
    filled: tuple[Path, str], client: PdffillrClient, emulator: Emulator
) -> None:
    db, _ = filled
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    roots = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'create_intents' AND rootpage"
    ).fetchall()
    conn.close()
    with open(db, "r+b") as fh:  # garbage over the pages a create intent is written to
        for (root,) in roots:
            fh.seek((root - 1) * page_size)
            fh.write(b"\xa5" * page_size)
    before = len(emulator.request_log)
    with pytest.raises(CacheError) as info, Session(client, cache=db):
        pass
    assert str(db) in str(info.value) and "corrupt" in str(info.value)
    assert len(emulator.request_log) == before  # nothing was created upstream
    assert_one_line_error(run("stats", "--db", str(db)), str(db), "corrupt")


def test_a_lock_held_longer_than_the_busy_timeout_says_so(
    filled: tuple[Path, str], client: PdffillrClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pdffillr_sessions.cache import _connect

    db, _ = filled
    monkeypatch.setattr(_connect, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CacheError) as info, Session(client, cache=db):
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    text = str(info.value)
    assert str(db) in text and "locked by another process" in text and "0.2 s" in text


# -- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True])
def test_a_cache_readable_by_others_is_made_private(
    filled: tuple[Path, str], readonly: bool
) -> None:
    db, _ = filled
    os.chmod(db, 0o666)
    with HistoryCache(db, readonly=readonly) if readonly else HistoryCache(db, api_key=KEY):
        pass
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    wal = Path(f"{db}-wal")
    if wal.exists():
        assert stat.S_IMODE(wal.stat().st_mode) & 0o077 == 0


def test_a_cache_that_cannot_be_made_private_is_warned_about(
    filled: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db, _ = filled
    os.chmod(db, 0o644)

    def refuse(path: Any, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    with caplog.at_level(logging.WARNING, logger="pdffillr_sessions"):
        with HistoryCache(db, readonly=True) as cache:
            assert cache.sessions()  # still readable
    assert any(
        "readable or writable by others (mode 0644)" in r.getMessage() for r in caplog.records
    )


# -- check in a read-only location, without a copy ---------------------------------------------


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv as root"
)
@pytest.mark.parametrize("stale", [False, True])
def test_check_works_in_a_read_only_location_without_copying_the_file(
    filled: tuple[Path, str], tmp_path: Path, stale: bool
) -> None:
    db, _ = filled
    conn = sqlite3.connect(db)
    if stale:  # content the index never heard of
        conn.execute("DROP TRIGGER history_au")
        conn.execute("UPDATE history SET content = 'rewritten behind its back'")
        conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for leftover in db.parent.glob("history.db-*"):
        leftover.unlink()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = db.read_bytes()
    command = [sys.executable, "-m", "pdffillr_sessions", "check", "--json", "--db", str(db)]
    if os.geteuid() == 0:  # root ignores directory modes: drop the capabilities that allow it
        command = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *command]
    db.parent.chmod(0o555)
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch)}
        result = subprocess.run(command, capture_output=True, env=env, timeout=60, check=False)
    finally:
        db.parent.chmod(0o700)
    import json

    report = json.loads(result.stdout)
    assert report["ok"] is not stale and result.returncode == (1 if stale else 0), result.stderr
    if stale:
        assert "history_fts does not match history" in report["problems"][0]
    assert list(scratch.iterdir()) == []  # no copy, no temporary file
    assert db.read_bytes() == before
