"""The examples run as a user runs them: a subprocess, the embedded emulator, a fresh cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFFILLR_")}
    env["PDFFILLR_SESSIONS_DB"] = str(db)
    env["PYTHONPATH"] = str(ROOT)
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
