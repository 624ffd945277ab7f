"""The examples run as a user runs them: a subprocess, a fresh cache, and the embedded emulator
unless ``PDFFILLR_BASE_URL`` names a server."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pdffillr_sessions import PdffillrClient

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk_examples_0123456789abcdef"


def user_env(db: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who set only what ``extra`` says (and the demo cache)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFFILLR_")}
    env["PDFFILLR_SESSIONS_DB"] = str(db)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_example(
    name: str, db: Path, *args: str, **env_extra: str
) -> subprocess.CompletedProcess[str]:
    env = user_env(db, **env_extra)
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "examples.db"


def test_quickstart_then_offline_query(db: Path) -> None:
    quick = run_example("quickstart.py", db)
    assert quick.returncode == 0, quick.stderr
    assert "started the embedded emulator" in quick.stderr
    assert "Session ended: True (status ended)" in quick.stdout
    assert "Offline from" in quick.stdout and ", 4 entries" in quick.stdout

    offline = run_example("offline_query.py", db, "side", "letter")
    assert offline.returncode == 0, offline.stderr
    assert "1 cached sessions" in offline.stdout and "[ended]" in offline.stdout
    assert "hits for 'side letter'" in offline.stdout and "0 hits" not in offline.stdout


def test_offline_query_without_a_cache_says_what_to_do(db: Path) -> None:
    result = run_example("offline_query.py", db)
    assert result.returncode == 1
    assert "run examples/quickstart.py first" in result.stderr
    assert "Traceback" not in result.stderr


def test_continue_session(db: Path) -> None:
    result = run_example("continue_session.py", db)
    assert result.returncode == 0, result.stderr
    assert "0 entries before, 2 now" in result.stdout
    assert "Ended: True" in result.stdout


def test_quickstarts_next_step_runs_as_printed(db: Path) -> None:
    quick = run_example("quickstart.py", db)
    assert quick.returncode == 0, quick.stderr
    (line,) = [x for x in quick.stdout.splitlines() if x.startswith("Inspect it with: ")]
    command = shlex.split(line.removeprefix("Inspect it with: "))
    # The same interpreter, by its path: nothing to activate, nothing else on PATH needed.
    assert command[0] == sys.executable
    shown = subprocess.run(
        command, capture_output=True, text=True, env=user_env(db), timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "Due Diligence Review" in shown.stdout
    assert "Summarise the side letter for the Q4 subscription." in shown.stdout


def test_the_examples_use_the_server_in_pdffillr_base_url(db: Path, emulator: Any) -> None:
    server = {"PDFFILLR_BASE_URL": emulator.url, "PDFFILLR_API_KEY": KEY}
    quick = run_example("quickstart.py", db, **server)
    assert quick.returncode == 0, quick.stderr
    assert "embedded emulator" not in quick.stderr
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        (made,) = client.sessions.list()
        assert (made.title, made.status) == ("Due Diligence Review", "ended")
        waiting = client.sessions.create(title="Continue me")

    # A session of an earlier run, continued by id on the server that holds it.
    cont = run_example("continue_session.py", db, waiting.session_id, **server)
    assert cont.returncode == 0, cont.stderr
    assert f"{waiting.session_id}: 0 entries before, 2 now" in cont.stdout
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        assert {s.status for s in client.sessions.list()} == {"ended"}

    again = run_example("continue_session.py", db, waiting.session_id, **server)
    assert again.returncode == 1
    assert "has ended" in again.stderr and "Traceback" not in again.stderr
    unknown = run_example("continue_session.py", db, "sess_unknown", **server)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: ") and "Traceback" not in unknown.stderr


def test_continue_session_with_an_id_and_no_server_says_what_to_do(db: Path) -> None:
    result = run_example("continue_session.py", db, "sess_from_yesterday")
    assert result.returncode == 2
    assert "PDFFILLR_BASE_URL" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
