"""Shared fixtures: cassette configuration, a running emulator, fake keys.

Cassettes live in the top-level ``cassettes/`` folder, one sub-folder per test module. They are
replayed with record mode ``none`` (pytest-recording's default: an unrecorded request fails the
test, and no server is needed). Re-record them all, from a deterministic emulator started on a
fixed port, with::

    python -m pytest -m vcr --record-mode=rewrite
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Read when the package is first imported (at collection, before any fixture runs): a developer's
# PDFFILLR_LOG would put the package's log on every test's stderr.
os.environ.pop("PDFFILLR_LOG", None)

ROOT = Path(__file__).resolve().parent.parent
CASSETTE_KEY = "sk_cassette_0123456789abcdefSECRET"
CASSETTE_PORT = 18765
CASSETTE_URL = f"http://127.0.0.1:{CASSETTE_PORT}"
REDACTED_AUTH = "Bearer <API_KEY>"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's key, server, cache, log switch or terminal width."""
    for name in ("PDFFILLR_API_KEY", "PDFFILLR_BASE_URL", "PDFFILLR_LOG", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PDFFILLR_SESSIONS_DB", str(tmp_path / "default-cache" / "history.db"))


_IDEMPOTENCY_PLACEHOLDERS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _fresh_idempotency_placeholders() -> None:
    _IDEMPOTENCY_PLACEHOLDERS.clear()


def _stable_idempotency_key(request: Any) -> Any:
    """Replace each random Idempotency-Key by ``pfs_recorded_N`` (N per test, in order of first
    use), so re-recording gives a clean diff and a cassette still shows a retry reusing its key."""
    for name in list(request.headers):
        if name.lower() == "idempotency-key":
            value = request.headers[name]
            placeholder = _IDEMPOTENCY_PLACEHOLDERS.setdefault(
                value, f"pfs_recorded_{len(_IDEMPOTENCY_PLACEHOLDERS) + 1}"
            )
            request.headers[name] = placeholder
    return request


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    # No record_mode here: it would silently override --record-mode on the command line.
    return {
        "before_record_request": _stable_idempotency_key,
        "filter_headers": [("authorization", REDACTED_AUTH)],
        "decode_compressed_response": True,
        "match_on": ["method", "scheme", "host", "port", "path", "query", "body"],
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    return str(ROOT / "cassettes" / request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def recording(request: pytest.FixtureRequest) -> bool:
    return request.config.getoption("--record-mode", default="none") != "none"


@dataclass
class CassetteServer:
    """Where cassette tests send requests; ``emulator`` is None while replaying."""

    url: str
    emulator: Any | None

    def add_fault(self, *args: Any, **kwargs: Any) -> None:
        """Script a fault while recording (the cassette replays its answer afterwards)."""
        if self.emulator is not None:
            from pdffillr_sessions.emulator import Fault

            self.emulator.add_fault(Fault(*args, **kwargs))


@pytest.fixture
def cassette_server(recording: bool) -> Iterator[CassetteServer]:
    """A fresh deterministic emulator on a fixed port while recording, accepting only
    ``CASSETTE_KEY``; nothing at all while replaying (the cassette answers)."""
    if not recording:
        yield CassetteServer(CASSETTE_URL, None)
        return
    from pdffillr_sessions.emulator import Emulator

    with Emulator(port=CASSETTE_PORT, deterministic=True, valid_keys=[CASSETTE_KEY]) as emu:
        yield CassetteServer(emu.url, emu)


@pytest.fixture
def emulator() -> Iterator[Any]:
    """A fresh emulator on a free port, for fault and behaviour tests over a real socket."""
    from pdffillr_sessions.emulator import Emulator

    with Emulator(port=0) as emu:
        yield emu


# -- PostgreSQL --------------------------------------------------------------------------------


def _install_postgres() -> str | None:
    """Install Debian's ``postgresql`` when missing and possible (root with apt-get, as in CI);
    returns why not, or None."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root with apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        done = subprocess.run(step, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            return f"{' '.join(step)} failed: {done.stderr.strip()[-200:]}"
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One throwaway PostgreSQL server for the whole test session (``tests/_postgres.py``)."""
    from tests import _postgres

    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[test]' (or '.[postgres]')")
    bindir = _postgres.find_binaries()
    if bindir is None:
        why = _install_postgres()
        bindir = _postgres.find_binaries()
        if bindir is None:
            pytest.skip(f"{_postgres.HOW_TO_ENABLE} ({why or 'install did not provide them'})")
    server = _postgres.start_server(bindir)
    try:
        yield server
    finally:
        _postgres.remove(server)


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """A fresh, empty database of the session's server, as a ``postgresql://`` URL."""
    return str(pg_server.url(pg_server.new_database()))
