"""The API key never reaches a cassette, the cache, a log line, an exception or a repr."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import CASSETTE_KEY, REDACTED_AUTH, ROOT

from pdffillr_sessions import (
    APIConnectionError,
    AuthenticationError,
    HistoryCache,
    PdffillrClient,
    ProtocolError,
    Session,
)
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Emulator, Fault


def test_no_cassette_holds_a_key() -> None:
    files = list((ROOT / "cassettes").rglob("*.yaml"))
    assert files, "no cassettes recorded"
    key_shaped = re.compile(r"[Bb]earer +[A-Za-z0-9_\-]{8,}")
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert CASSETTE_KEY not in text, path
        assert "sk_wrong_key" not in text, path
        assert not key_shaped.search(text), path
        assert REDACTED_AUTH in text, path


# -- one test per place, with a recognisable fake key -------------------------------------------


FAKE_KEY = "sk_live_FAKEKEY_do_not_leak_0123456789"


@pytest.fixture
def server() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


def exercise(base_url: str, db: Path, emu: Emulator | None = None) -> list[BaseException]:
    """Create, send, retry, fail and end, collecting every error raised on the way."""
    errors: list[BaseException] = []
    with PdffillrClient(FAKE_KEY, base_url=base_url, sleep=lambda s: None) as client:
        with Session(client, title="secrets", cache=db) as s:
            if emu is not None:
                emu.add_fault(Fault("status", status=503, times=1))
                emu.add_fault(Fault("drop_after", method="POST", path="/messages$"))
            s.send("hello")
            s.history()
        for call in (
            lambda: client.sessions.messages("sess_missing"),
            lambda: client.sessions.send(s.session_id, "after end"),
        ):
            try:
                call()
            except Exception as exc:
                errors.append(exc)
    return errors


def test_the_key_is_not_in_the_cache_files(server: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "c" / "history.db"
    exercise(server.url, db, server)
    result = CliRunner().invoke(
        cli,
        ["sync", "--db", str(db)],
        env={"PDFFILLR_API_KEY": FAKE_KEY, "PDFFILLR_BASE_URL": server.url},
    )
    assert result.exit_code == 0, result.output
    files = [f for f in db.parent.rglob("*") if f.is_file()]  # owner lock files included
    assert db in files
    for f in files:
        data = f.read_bytes()
        assert FAKE_KEY.encode() not in data, f
        assert FAKE_KEY.encode("utf-16-le") not in data, f


def test_the_key_is_not_in_debug_logs(
    server: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore
    exercise(server.url, tmp_path / "c.db", server)
    assert len(caplog.records) > 10
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert any(r.name == "pdffillr_sessions" for r in caplog.records)  # the retries
    for record in caplog.records:
        assert FAKE_KEY not in record.getMessage(), record.name
        assert FAKE_KEY not in repr(record.args), record.name


def test_the_key_is_not_in_exception_messages_or_tracebacks(
    server: Emulator, tmp_path: Path
) -> None:
    errors = exercise(server.url, tmp_path / "c.db", server)
    with Emulator(valid_keys=["someone-else"]) as strict:
        with PdffillrClient(FAKE_KEY, base_url=strict.url) as client:
            with pytest.raises(AuthenticationError) as auth:
                client.sessions.list()
    errors.append(auth.value)
    with PdffillrClient(FAKE_KEY, base_url="http://127.0.0.1:9", max_retries=0) as client:
        with pytest.raises(APIConnectionError) as conn:
            client.sessions.list()
    errors.append(conn.value)
    garbage = httpx.MockTransport(lambda r: httpx.Response(200, content=b"<html>"))
    with PdffillrClient(FAKE_KEY, base_url="http://x.test", transport=garbage) as client:
        with pytest.raises(ProtocolError) as proto:
            client.sessions.list()
    errors.append(proto.value)
    assert len(errors) == 5
    for exc in errors:
        text = "".join(traceback.format_exception(exc))
        assert FAKE_KEY not in text and FAKE_KEY not in repr(exc), type(exc)
        assert FAKE_KEY not in repr(getattr(exc, "body", None))


def test_the_key_is_not_in_reprs(server: Emulator, tmp_path: Path) -> None:
    with PdffillrClient(FAKE_KEY, base_url=server.url) as client:
        with Session(client, cache=tmp_path / "c.db") as s:
            objects: list[object] = [client, client.sessions, s, s.info, s.cache]
            objects += s.send("hi")
            objects.append(client._http)
            objects.append(client._http.headers)
    with HistoryCache(tmp_path / "c.db", api_key=FAKE_KEY) as cache:
        objects += [cache, *cache.sessions()]
    for obj in objects:
        assert FAKE_KEY not in repr(obj), type(obj)
        assert FAKE_KEY not in str(obj), type(obj)


def test_the_key_is_not_in_cli_output(server: Emulator, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    env = {"PDFFILLR_API_KEY": FAKE_KEY, "PDFFILLR_BASE_URL": server.url}
    exercise(server.url, db)
    runner = CliRunner()
    outputs = [
        runner.invoke(cli, [*args, "--db", str(db)], env=env)
        for args in (
            ["sync"],
            ["sessions", "--json"],
            ["stats", "--json"],
            ["reap", "--older-than", "0"],
        )
    ]
    outputs.append(
        runner.invoke(
            cli, ["sync", "--db", str(db)], env={**env, "PDFFILLR_BASE_URL": "http://127.0.0.1:9"}
        )
    )
    assert outputs[-1].exit_code != 0  # an error path, too
    for result in outputs:
        assert FAKE_KEY not in result.output
