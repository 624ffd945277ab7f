"""Defects found in review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pdffillr_sessions import (
    AsyncPdffillrClient,
    ClientClosedError,
    ConfigurationError,
    HistoryCache,
    InvalidInputError,
    PdffillrClient,
    Session,
    SessionEndedError,
)
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Emulator

KEY = "sk_review_fixes_0123456789"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


def test_a_session_shared_by_threads_caches_the_servers_order(
    client: PdffillrClient, tmp_path: Path
) -> None:
    db = tmp_path / "threads.db"
    with Session(client, cache=db) as s:

        def worker(i: int) -> None:
            for j in range(15):
                s.send(f"thread {i} message {j}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    server = [e.id for e in client.sessions.messages(s.session_id)]
    with HistoryCache(db) as cache:
        assert [e.id for e in cache.history(s.session_id)] == server
    assert len(server) == 4 * 15 * 2


def test_a_session_ended_by_someone_else_is_recorded_ended_with_its_history(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "ext.db"
    with Session(client, cache=db) as s:
        s.send("one")
        client.sessions.end(s.session_id)  # another script ends it
        with pytest.raises(SessionEndedError):
            s.send("two")
        assert s.ended
        before = len(emulator.request_log)
        with pytest.raises(SessionEndedError, match="no request was sent"):
            s.send("three")
        assert len(emulator.request_log) == before
    with HistoryCache(db) as cache:
        row = cache.session(s.session_id)
        assert row is not None and row.status == "ended" and row.local_state == "ended"
        assert cache.pending_ends() == []
        assert len(cache.history(s.session_id)) == len(emulator.history(KEY, s.session_id))


def test_a_resumed_session_found_ended_is_recorded_at_once(
    client: PdffillrClient, tmp_path: Path
) -> None:
    db = tmp_path / "resumed.db"
    info = client.sessions.create()
    s = Session.resume(client, info.session_id, cache=db)
    client.sessions.end(info.session_id)
    with pytest.raises(SessionEndedError):
        s.send("late")
    assert s.ended
    with HistoryCache(db) as cache:
        row = cache.session(info.session_id)
        assert row is not None and row.status == "ended"


def test_a_closed_client_raises_a_typed_error_and_leaves_no_intent(
    emulator: Emulator, tmp_path: Path
) -> None:
    import asyncio

    db = tmp_path / "closed.db"
    client = PdffillrClient(KEY, base_url=emulator.url)
    client.close()
    with pytest.raises(ClientClosedError):
        client.sessions.list()
    with pytest.raises(ClientClosedError), Session(client, cache=db):
        pytest.fail("the block must not run")
    with HistoryCache(db) as cache:
        assert cache.create_intents() == []
    assert emulator.request_log == []

    async def closed_async() -> None:
        async with AsyncPdffillrClient(KEY, base_url=emulator.url) as ac:
            pass
        await ac.sessions.list()

    with pytest.raises(ClientClosedError):
        asyncio.run(closed_async())


@pytest.mark.parametrize("key", ["sk_tést_SECRET_value", "sk_del\x7fSECRET", "sk_\u200bSECRET"])
def test_non_ascii_or_unprintable_keys_are_configuration_errors_without_the_key(
    key: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as info:
        PdffillrClient(key)
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value.args)
    result = CliRunner().invoke(
        cli, ["sync", "--db", str(tmp_path / "k.db")], env={"PDFFILLR_API_KEY": key}
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "SECRET" not in result.output
    assert result.output.startswith("Error: ")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": "abc"},
        {"max_retries": -1},
        {"base_url": "http://host/api?x=1"},
        {"base_url": "http://host/#frag"},
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        PdffillrClient(KEY, **kwargs)  # type: ignore[arg-type]


def test_a_base_url_path_prefix_is_kept(emulator: Emulator) -> None:
    import httpx

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=[])

    with PdffillrClient(
        KEY, base_url="http://proxy.test/pdffillr", transport=httpx.MockTransport(handler)
    ) as c:
        c.sessions.list()
    assert seen == ["/pdffillr/v1/sdk/chat/sessions"]


def test_lone_surrogates_are_refused_before_any_request(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError):
        client.sessions.create(title="bad \udcff title")
    info = client.sessions.create()
    with pytest.raises(InvalidInputError):
        client.sessions.send(info.session_id, "lone \ud800 surrogate")
    with pytest.raises(InvalidInputError):
        client.sessions.attach(info.session_id, file=b"%PDF", filename="bad\udcff.pdf")
    assert emulator.history(KEY, info.session_id) == []
    # A POSIX file name that is not UTF-8 still uploads, under a readable name.
    weird = Path(os.fsdecode(bytes(tmp_path) + b"/r\xe9sum\xe9.pdf"))
    weird.write_bytes(b"%PDF-1.7")
    [doc, *_] = client.sessions.attach(info.session_id, file=weird)
    assert doc.document is not None and doc.document["filename"] == "r\ufffdsum\ufffd.pdf"


def test_every_directory_the_cache_creates_is_private(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "c" / "history.db"
    old = os.umask(0o022)
    try:
        HistoryCache(db, api_key=KEY).close()
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_resume_refuses_an_empty_id_before_any_request(
    client: PdffillrClient, emulator: Emulator
) -> None:
    with pytest.raises(InvalidInputError):
        Session.resume(client, "", cache=False)
    assert emulator.request_log == []


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


def test_a_resumed_session_closes_its_own_cache(client: PdffillrClient, tmp_path: Path) -> None:
    info = client.sessions.create()
    s = Session.resume(client, info.session_id, cache=tmp_path / "r.db")
    assert s.cache is not None
    s.close()
    assert s.cache is None
    s.send("still works, no longer mirrored")
    s.close()  # idempotent
    with HistoryCache(tmp_path / "r.db") as cache:
        assert cache.history(info.session_id) == []
