"""The command line speaks llm's and sqlite-utils' conventions, and fits the terminal.

``-d/--database`` beside ``--db``; ``-t/--table``, ``--json``, ``--nl``, ``--csv``, ``--tsv`` on
every listing; ``-n 0`` means all; tables that fit the width (columns that say nothing
dropped, long cells cut with an ellipsis, then less useful columns dropped), a ``sync``
progress line that never wraps at 80 columns; one timestamp style; ``search --session`` of an
unknown session is an error, as ``show`` makes it; the library's warnings as ``Warning:``
lines.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import pty
import re
import select
import stat
import struct
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import ROOT

from pdffillr_sessions import HistoryEntry, PdffillrClient, SessionInfo
from pdffillr_sessions import _cli_output as out
from pdffillr_sessions._scope import key_scope
from pdffillr_sessions.cache import HistoryCache
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator

KEY = "sk_cli_conventions_0123456789"
OTHER_KEY = "sk_cli_conventions_other_9876"
LONG_TITLE = "Quarterly review of the Fund IV side letters and the MFN elections " * 2
SID_LEN = len("sess_0123456789abcdef01234567")  # the emulator's ids: 29 characters
START = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def sid(n: int) -> str:
    return f"sess_{n:024x}"


def fill(db: Path, *, sessions: int = 3, keys: tuple[str, ...] = (KEY,)) -> None:
    """Sessions with long titles and long messages, ``sessions`` per key."""
    n = 0
    for key in keys:
        with HistoryCache(db, api_key=key) as cache:
            for _ in range(sessions):
                created = START + timedelta(minutes=n)
                info = SessionInfo(
                    session_id=sid(n),
                    title=LONG_TITLE if n % 2 == 0 else "Capital call",
                    status="ended",
                    message_count=2,
                    created_at=created,
                )
                cache.upsert_sessions([info])
                cache.mirror_history(
                    info.session_id,
                    [
                        HistoryEntry(
                            id=f"e{i}",
                            session_id=info.session_id,
                            type="message",
                            role="user" if i == 0 else "assistant",
                            content=(
                                "The side letter grants the investor most favoured nation "
                                "rights over every later side letter, subject to the cap. " * 3
                            ),
                            created_at=created + timedelta(seconds=i),
                            raw={"id": f"e{i}"},
                        )
                        for i in range(2)
                    ],
                )
                n += 1


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "history.db"
    fill(path)
    return path


def widths(text: str) -> list[int]:
    return [out.display_width(line) for line in text.splitlines()]


# -- options of llm and sqlite-utils ------------------------------------------------------------


def test_d_and_database_are_db(db: Path) -> None:
    outputs = {
        flag: run("sessions", flag, str(db), "--json").stdout
        for flag in ("-d", "--database", "--db")
    }
    assert len(set(outputs.values())) == 1 and len(json.loads(outputs["-d"])) == 3
    assert run("path", "-d", str(db)).stdout.strip() == str(db)


def test_every_listing_takes_table_json_nl_csv_and_tsv(db: Path) -> None:
    for command in (["sessions"], ["search", "side letter"]):
        as_json = json.loads(run(*command, "-d", str(db), "--json").stdout)
        assert len(as_json) == 3 if command == ["sessions"] else len(as_json) == 6
        nl = [json.loads(line) for line in run(*command, "-d", str(db), "--nl").stdout.splitlines()]
        assert nl == as_json
        for flag, delimiter in (("--csv", ","), ("--tsv", "\t")):
            text = run(*command, "-d", str(db), flag).stdout
            rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
            assert list(rows[0]) == list(as_json[0])  # the keys of --json, in order
            assert [r[next(iter(rows[0]))] for r in rows] == [
                str(o[next(iter(as_json[0]))]) for o in as_json
            ]
            bare = run(*command, "-d", str(db), flag, "--no-headers").stdout
            assert bare == text.split("\n", 1)[1]
        table = run(*command, "-d", str(db), "-t").stdout
        assert (
            table
            == run(*command, "-d", str(db)).stdout
            == run(*command, "-d", str(db), "--table").stdout
        )
        both = CliRunner().invoke(main, [*command, "-d", str(db), "--csv", "--json"])
        assert both.exit_code == 2 and "cannot be used together" in both.output
        loose = CliRunner().invoke(main, [*command, "-d", str(db), "--no-headers"])
        assert loose.exit_code == 2 and "--csv or --tsv" in loose.output


def test_csv_keeps_any_text_exact_in_one_field(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    text = 'a "quoted", multi\nline\tvalue 📄'
    with HistoryCache(db, api_key=KEY) as cache:
        cache.upsert_sessions(
            [
                SessionInfo(
                    session_id="s1", title=text, status="active", message_count=0, created_at=START
                )
            ]
        )
    rows = list(csv.DictReader(io.StringIO(run("sessions", "-d", str(db), "--csv").stdout)))
    assert rows[0]["title"] == text and rows[0]["created_at"] == "2026-01-31T12:00:00Z"
    assert rows[0]["ended_at"] == ""  # None is an empty field


def test_n_0_means_all(db: Path) -> None:
    assert len(json.loads(run("sessions", "-d", str(db), "-n", "0", "--json").stdout)) == 3
    assert len(json.loads(run("sessions", "-d", str(db), "-n", "1", "--json").stdout)) == 1
    hits = json.loads(run("search", "letter", "-d", str(db), "-n", "0", "--json").stdout)
    assert len(hits) == 6
    assert len(json.loads(run("search", "letter", "-d", str(db), "-n", "2", "--json").stdout)) == 2


def test_search_n_0_returns_every_hit_of_a_large_cache(tmp_path: Path) -> None:
    """More hits than SQLite takes parameters in one statement (999 on older builds)."""
    db = tmp_path / "big.db"
    with HistoryCache(db, api_key=KEY) as cache:
        cache.mirror_history(
            "s1",
            [
                HistoryEntry(
                    id=f"e{i}",
                    session_id="s1",
                    type="message",
                    role="user",
                    content=f"needle number {i}",
                    created_at=START,
                    raw={},
                )
                for i in range(2500)
            ],
        )
    hits = json.loads(run("search", "needle", "-d", str(db), "-n", "0", "--json").stdout)
    assert len(hits) == 2500 and len({h["entry_id"] for h in hits}) == 2500


def test_search_in_an_unknown_session_is_an_error_like_show(db: Path) -> None:
    for args in (["search", "letter", "--session", "sess_typo"], ["show", "sess_typo"]):
        result = CliRunner().invoke(main, [*args, "-d", str(db)])
        assert result.exit_code == 1 and result.stdout == ""
        assert "Error: no session 'sess_typo' in the cache" in result.stderr
    known = run("search", "letter", "--session", sid(1), "-d", str(db), "--json")
    assert {h["session_id"] for h in json.loads(known.stdout)} == {sid(1)}


# -- output that fits the terminal --------------------------------------------------------------


def test_a_column_that_says_the_same_on_every_row_is_dropped(tmp_path: Path) -> None:
    one = tmp_path / "one.db"
    fill(one)
    header = run("sessions", "-d", str(one)).stdout.splitlines()[0].split()
    assert header == ["ID", "TITLE", "STATUS", "ENTRIES", "CREATED"]  # one key: no SCOPE
    two = tmp_path / "two.db"
    fill(two, keys=(KEY, OTHER_KEY))
    table = run("sessions", "-d", str(two)).stdout
    assert table.splitlines()[0].split() == ["ID", "TITLE", "STATUS", "ENTRIES", "CREATED", "SCOPE"]
    assert key_scope(KEY) in table and key_scope(OTHER_KEY) in table
    with HistoryCache(one, api_key=KEY) as cache:
        cache.mark_end_pending(sid(0), "refused")
    assert run("sessions", "-d", str(one)).stdout.splitlines()[0].split()[-1] == "LOCAL"
    # search --session: the session's id and title would be the same on every row.
    scoped = run("search", "letter", "--session", sid(0), "-d", str(one)).stdout
    assert scoped.splitlines()[0].split() == ["WHEN", "WHO", "MATCH"]


@pytest.mark.parametrize("columns", [80, 100, 60])
def test_tables_fit_the_terminal_width(tmp_path: Path, columns: int) -> None:
    db = tmp_path / "h.db"
    fill(db, keys=(KEY, OTHER_KEY))
    env = {"COLUMNS": str(columns)}
    sessions = run("sessions", "-d", str(db), env=env).stdout
    hits = run("search", "side letter", "-d", str(db), env=env).stdout
    for text in (sessions, hits):
        assert max(widths(text)) <= columns, text
        assert "…" in text  # long titles and matches are cut, with an ellipsis
    for n in range(6):  # ids are never cut: they are what `show` takes
        assert re.search(rf"^{sid(n)}\b", sessions, re.MULTILINE)
        assert sid(n) in hits or columns < SID_LEN + 30


def test_at_80_columns_the_least_useful_columns_go_first(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db)
    env = {"COLUMNS": "80"}
    header = run("sessions", "-d", str(db), env=env).stdout.splitlines()[0].split()
    assert header == ["ID", "TITLE", "STATUS", "ENTRIES", "CREATED"]  # the title is cut instead
    header = run("search", "side letter", "-d", str(db), env=env).stdout.splitlines()[0].split()
    assert header == ["SESSION", "WHO", "MATCH"]  # TITLE, then WHEN, went; MATCH stays readable
    wide = run("search", "side letter", "-d", str(db), env={"COLUMNS": "200"}).stdout
    assert wide.splitlines()[0].split() == ["SESSION", "TITLE", "WHEN", "WHO", "MATCH"]
    whole = run("search", "side letter", "-d", str(db)).stdout  # a pipe: nothing to fit
    assert whole.splitlines()[0].split() == ["SESSION", "TITLE", "WHEN", "WHO", "MATCH"]


def test_cells_are_cut_by_the_columns_they_take_wide_characters_included() -> None:
    assert out.display_width("表格📄é") == 7 and out.display_width("e\u0301") == 1
    assert out.truncate("表格表格", 5) == "表格…" and out.display_width("表格…") == 5
    text = out.table([out.Column("ID"), out.Column("T", shrink=3)], [["a", "表格" * 20]], 20)
    assert max(widths(text)) <= 20


def test_one_timestamp_style_everywhere(tmp_path: Path) -> None:
    """People read ``2026-01-31 12:00:00`` (UTC) in every table, transcript, stats and
    Markdown; JSON, CSV and TSV carry ISO 8601 with ``Z``."""
    db = tmp_path / "h.db"
    other_offset = datetime(2026, 1, 31, 14, 0, 0, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=2))
    )
    with HistoryCache(db, api_key=KEY) as cache:
        cache.upsert_sessions(
            [
                SessionInfo(
                    session_id="s1", title="T", status="active", message_count=1, created_at=START
                )
            ]
        )
        cache.mirror_history(
            "s1",
            [
                HistoryEntry(
                    id="e1",
                    session_id="s1",
                    type="message",
                    role="user",
                    content="timestamp check",
                    created_at=other_offset,
                    raw={"id": "e1", "created_at": other_offset.isoformat()},
                )
            ],
        )
    texts = {
        "sessions": run("sessions", "-d", str(db)).stdout,
        "search": run("search", "timestamp", "-d", str(db)).stdout,
        "show": run("show", "s1", "-d", str(db)).stdout,
        "stats": run("stats", "-d", str(db)).stdout,
        "markdown": run("export", "s1", "-d", str(db), "-f", "markdown").stdout,
    }
    stamp = re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.]+(?:Z|[+-]\d\d:\d\d)?")
    for name, text in texts.items():
        found = set(stamp.findall(text))
        assert found and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", f) for f in found), (
            name,
            found,
        )
    assert "2026-01-31 12:00:00" in texts["sessions"]
    assert "2026-01-31 14:00:00" in texts["show"]  # +02:00 shown in UTC
    row = json.loads(run("sessions", "-d", str(db), "--json").stdout)[0]
    assert row["created_at"] == "2026-01-31T12:00:00Z"


# -- the sync progress line ---------------------------------------------------------------------


def test_the_progress_line_is_narrower_than_any_terminal() -> None:
    item = "sess_" + "f" * 24
    for width in (1, 5, 20, 40, 60, 79, 80, 81, 120, 200):
        for done in (0, 1, 15, 30):
            line = out.progress_line(done, 30, item, width)
            assert out.display_width(line) <= max(width - 1, 1), (width, line)
    assert out.progress_line(15, 30, item, 80) == (
        f"Fetching histories [##########----------] 15/30 {item}"
    )
    assert out.progress_line(15, 30, "表" * 60, 80).endswith("…")


def on_a_terminal(args: list[str], env: dict[str, str], columns: int) -> str:
    """Run the CLI on a pseudo-terminal ``columns`` wide; all it printed, line ends as
    written (the terminal's ``\\r\\n`` for ``\\n`` undone)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    attrs = termios.tcgetattr(follower)
    attrs[1] &= ~termios.ONLCR  # keep \n as \n
    termios.tcsetattr(follower, termios.TCSANOW, attrs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdffillr_sessions", *args],
        stdout=follower,
        stderr=follower,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    assert proc.wait(timeout=10) == 0, b"".join(chunks)[-2000:]
    os.close(leader)
    return b"".join(chunks).decode("utf-8")


@pytest.mark.skipif(not hasattr(termios, "TIOCSWINSZ"), reason="needs a POSIX terminal")
def test_sync_progress_never_wraps_at_80_columns(tmp_path: Path) -> None:
    """30 sessions on an 80-column terminal: one progress line redrawn in place (click's bar
    wrapped and printed 60 lines), every drawing narrower than the terminal."""
    with Emulator() as emu:
        with PdffillrClient(KEY, base_url=emu.url) as client:
            for i in range(30):
                client.sessions.send(client.sessions.create(title=f"S{i}").session_id, "hi")
        env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emu.url}
        shown = on_a_terminal(["sync", "-d", str(tmp_path / "h.db")], env, columns=80)
    lines = shown.split("\n")
    progress = [line for line in lines if "Fetching histories" in line]
    assert len(progress) == 1, shown  # every redraw returned to the start of one line
    drawings = progress[0].split("\r")[1:]
    assert len(drawings) == 30
    assert all(out.display_width(d) <= 79 for d in drawings), drawings
    assert drawings[-1].startswith("Fetching histories [####################] 30/30 sess_")
    assert any(line.startswith("Synced 30 session(s)") for line in lines)


def test_no_progress_line_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    with Emulator() as emu:
        with PdffillrClient(KEY, base_url=emu.url) as client:
            client.sessions.create(title="S")
        env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emu.url}
        result = CliRunner().invoke(main, ["sync", "-d", str(tmp_path / "h.db")], env=env)
    assert result.exit_code == 0 and result.stderr == ""


# -- the library's warnings --------------------------------------------------------------------


def test_the_librarys_warnings_are_warning_lines_and_its_retries_are_not(tmp_path: Path) -> None:
    """The package logger has a NullHandler: the CLI shows WARNING and above itself (a cache
    others can read that cannot be made private), and a retry (INFO) stays quiet."""
    db = tmp_path / "h.db"
    fill(db)
    os.chmod(db, 0o644)
    stat_before = db.stat()
    script = (
        "import os\n"
        "def refuse(*args, **kwargs):\n"
        "    raise PermissionError(1, 'Operation not permitted')\n"
        "os.chmod = refuse\n"
        "from pdffillr_sessions.cli import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "sessions", "-d", str(db), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("Warning: the cache file ")
    assert "could not be made private" in result.stderr
    assert stat.S_IMODE(stat_before.st_mode) == 0o644
    logger = logging.getLogger("pdffillr_sessions")
    before = list(logger.handlers)
    run("sessions", "-d", str(db))
    assert logger.handlers == before  # gone with the command: the program's logger is its own


def test_sync_retries_print_nothing_unless_pdffillr_log_asks(tmp_path: Path) -> None:
    with Emulator() as emu:
        with PdffillrClient(KEY, base_url=emu.url) as client:
            client.sessions.create(title="S")
        from pdffillr_sessions.emulator import Fault

        env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emu.url}
        quiet: Any = None
        for log in (None, "info"):
            emu.add_fault(Fault("status", status=503, times=1, method="GET"))
            run_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
            if log:
                run_env["PDFFILLR_LOG"] = log
            result = subprocess.run(
                [sys.executable, "-m", "pdffillr_sessions", "sync", "-d", str(tmp_path / "h.db")],
                capture_output=True,
                text=True,
                env=run_env,
                timeout=60,
                check=True,
            )
            if log is None:
                quiet = result
            else:
                assert "retry 1 of 2" in result.stderr and KEY not in result.stderr
        assert quiet is not None and quiet.stderr == ""
