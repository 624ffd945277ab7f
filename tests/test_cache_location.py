"""Where the cache lives: every directory it creates is private, a read-only location can still
be read, and a failed sync leaves no file behind."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pdffillr_sessions import (
    HistoryCache,
    PdffillrClient,
    Session,
)
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Emulator

KEY = "sk_cache_location_0123456789"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


def test_every_directory_the_cache_creates_is_private(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "c" / "history.db"
    old = os.umask(0o022)
    try:
        HistoryCache(db, api_key=KEY).close()
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def _run_unprivileged(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pdffillr_sessions", *args]
    if os.geteuid() == 0:  # root ignores directory modes: drop the capabilities that allow it
        command = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *command]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv as root"
)
def test_offline_commands_read_a_cache_in_a_read_only_directory(
    client: PdffillrClient, tmp_path: Path
) -> None:
    folder = tmp_path / "ro"
    db = folder / "history.db"
    with Session(client, title="read-only location", cache=db) as s:
        s.send("kept")
    for leftover in folder.glob("history.db-*"):
        leftover.unlink()  # a clean, checkpointed file, as a copy or an archive would be
    before = db.read_bytes()
    folder.chmod(0o555)
    try:
        for args in (["sessions", "--json"], ["show", s.session_id], ["search", "kept"], ["stats"]):
            result = _run_unprivileged([*args, "--db", str(db)])
            assert result.returncode == 0, (args, result.stderr)
        assert "read-only location" in _run_unprivileged(["sessions", "--db", str(db)]).stdout
    finally:
        folder.chmod(0o700)
    assert db.read_bytes() == before


def test_sync_against_an_unreachable_server_leaves_no_file(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    result = CliRunner().invoke(
        cli,
        ["sync", "--db", str(db), "--base-url", "http://127.0.0.1:9"],
        env={"PDFFILLR_API_KEY": KEY},
    )
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert not db.exists()
