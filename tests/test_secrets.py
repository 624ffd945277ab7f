"""The API key never reaches a cassette, the cache, a log line, an exception, a repr, a frame's
local variables (what ``pytest --showlocals`` and error trackers capture) or CLI output, even when
a server echoes it back."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import re
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import CASSETTE_KEY, REDACTED_AUTH, ROOT
from rawserver import serving

from pdffillr_sessions import (
    APIConnectionError,
    AsyncPdffillrClient,
    AuthenticationError,
    ConfigurationError,
    HistoryCache,
    InternalServerError,
    PdffillrClient,
    ProtocolError,
    Session,
    Timeout,
)
from pdffillr_sessions._secret import Secret
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Emulator, Fault
from tests._blocks import KINDS, Block, run_block


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
    proxy_token = "sk_proxy_token_in_default_headers_42"
    with (
        httpx.Client() as http,
        PdffillrClient(
            FAKE_KEY,
            base_url=server.url,
            default_headers={"X-Proxy-Token": proxy_token},
            http_client=http,
        ) as client,
    ):
        copy = client.with_options(timeout=Timeout(9, total=30), default_headers={"X-Run": "1"})
        with Session(copy, cache=tmp_path / "c.db") as s:
            objects: list[object] = [client, client.sessions, s, s.info, s.cache]
            objects += s.send("hi")
            objects += [client._http, client._http.headers, copy, copy._config, copy._defaults]
            objects.append(copy._call_settings({"X-Call": proxy_token}, {"q": "v"}, 3, 0))
    for obj in objects:
        assert proxy_token not in repr(obj) and proxy_token not in str(obj), type(obj)
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
            ["sessions", "--csv"],
            ["search", "hello", "--tsv"],
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
    # The command line with PDFFILLR_LOG=debug, retrying (its log on stderr).
    server.add_fault(Fault("status", status=503, times=2, body=f"echo {FAKE_KEY}"))
    logged = subprocess.run(
        [sys.executable, "-m", "pdffillr_sessions", "sync", "-d", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PDFFILLR_LOG": "debug", "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=True,
    )
    assert "retry 1 of 2" in logged.stderr and "<redacted>" in logged.stderr
    assert FAKE_KEY not in logged.stdout + logged.stderr


# -- no frame local, no echoed text -------------------------------------------------------------

#: A canary key: a module constant, so that no test frame holds it as a local variable.
CANARY = "sk_live_CANARY_frame_locals_9f8e7d6c5b4a"
TESTS = str(Path(__file__).resolve().parent)


def _exceptions_in(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if any(e is seen for seen in out):
            continue
        out.append(e)
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return out


def _shown(value: object) -> list[str]:
    """What a tracker shows of a local: its repr and str, and those of its attributes."""
    texts: list[str] = []
    for candidate in (value, *getattr(value, "__dict__", {}).values()):
        for show in (repr, str):
            try:
                texts.append(show(candidate))
            except Exception:  # a half-built object's repr may fail: a tracker shows nothing
                continue
    return texts


def leaks(exc: BaseException) -> list[str]:
    """Where the canary shows in a failure: any library frame's locals (as ``--showlocals``
    and error trackers capture them), the formatted traceback with locals, any message."""
    found: list[str] = []
    for e in _exceptions_in(exc):
        text = "".join(traceback.TracebackException.from_exception(e, capture_locals=True).format())
        if CANARY in text:
            found.append(f"formatted {type(e).__name__} with locals")
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not frame.f_code.co_filename.startswith(TESTS):
                for name, value in frame.f_locals.items():
                    if any(CANARY in shown for shown in _shown(value)):
                        found.append(f"{frame.f_code.co_name}() local {name!r}")
            tb = tb.tb_next
    return found


def _raise(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("expected a failure")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "ftp://nowhere"},
        {"base_url": "http://host/?q=1"},
        {"timeout": "abc"},
        {"max_retries": -1},
        {"max_response_bytes": 0},
        {"default_headers": {"Authorization": "Bearer <CANARY>"}},
        {"default_headers": {"X-Proxy-Token": "<CANARY>\r\nX-Injected: 1"}},
        {"default_headers": {"X-Proxy-Token": "<CANARY>", "Idempotency-Key": "fixed"}},
        {"http_client": "not an httpx client"},
    ],
)
@pytest.mark.parametrize("source", ["argument", "environment"])
def test_no_frame_local_holds_the_key_when_the_client_setup_fails(
    kwargs: dict[str, Any], source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", CANARY)
    for make in (PdffillrClient, AsyncPdffillrClient):
        if source == "argument":
            exc = _raise(lambda m=make: m(CANARY, **canaried(kwargs)))  # type: ignore[operator]
        else:
            exc = _raise(lambda m=make: m(**canaried(kwargs)))  # type: ignore[operator]
        assert isinstance(exc, ConfigurationError)
        assert leaks(exc) == []
        assert CANARY not in str(exc)


def canaried(value: Any) -> Any:
    """``value`` with ``<CANARY>`` replaced by the canary: a temporary of the caller's
    expression, so that no test frame holds the canary as a local either."""
    if isinstance(value, dict):
        return {k: canaried(v) for k, v in value.items()}
    return value.replace("<CANARY>", CANARY) if isinstance(value, str) else value


def test_no_frame_local_holds_the_key_when_with_options_is_refused() -> None:
    """``default_headers`` may hold a credential: a refused one is in no message and no frame
    of the library (``with_options`` drops the mapping before anything can raise)."""
    for make in (PdffillrClient, AsyncPdffillrClient):
        client = make(CANARY, base_url="http://x.test")
        for headers in (
            {"Authorization": "Bearer <CANARY>"},
            {"X-Proxy-Token": "<CANARY>\n"},
            {"X-Proxy-Token": "<CANARY>", "Accept-Encoding": "br"},
        ):
            exc = _raise(lambda c=client, h=headers: c.with_options(default_headers=canaried(h)))
            assert isinstance(exc, ConfigurationError)
            assert leaks(exc) == [] and CANARY not in str(exc)
        for bad in ({"timeout": -1}, {"max_retries": -1}, {"max_response_bytes": 0}):
            exc = _raise(lambda c=client, b=bad: c.with_options(**b))
            assert isinstance(exc, ConfigurationError) and leaks(exc) == []
        if isinstance(client, PdffillrClient):
            client.close()
        else:
            asyncio.run(client.aclose())


def test_a_refused_per_call_header_never_shows_its_value() -> None:
    """A per-call ``extra_headers`` value that is refused is in no message or traceback text
    (like any argument, it stays among the locals of the frames it was passed through)."""
    with PdffillrClient(CANARY, base_url="http://x.test") as client:
        for headers in ({"Authorization": f"Bearer {CANARY}"}, {"X-Token": f"{CANARY}\r\n"}):
            exc = _raise(lambda h=headers: client.sessions.list(extra_headers=h))
            assert isinstance(exc, ConfigurationError)
            assert CANARY not in "".join(traceback.format_exception(exc)) + repr(exc)


def test_no_frame_local_holds_the_key_when_a_call_with_the_new_options_fails() -> None:
    """A copy made by ``with_options``, a caller's ``http_client``, per-call options and
    ``default_headers``: every failure path still leaves no frame whose locals show the key."""
    failures: list[BaseException] = []
    hooked: list[str] = []
    options: dict[str, Any] = {
        "extra_headers": {"X-Trace": "t1"},
        "extra_query": {"region": "eu"},
        "timeout": Timeout(5, total=5),
        "max_retries": 1,
    }
    with Emulator() as emu:
        http = httpx.Client(event_hooks={"request": [lambda r: hooked.append(r.method)]})
        for client in (
            PdffillrClient(CANARY, base_url=emu.url, sleep=lambda s: None),
            PdffillrClient(
                CANARY,
                base_url=emu.url,
                sleep=lambda s: None,
                http_client=http,
                default_headers={"X-Team": "ops"},
            ),
        ):
            with client:
                copy = client.with_options(timeout=Timeout(5, total=5), max_retries=1)
                emu.add_fault(_echo_fault(401))
                failures.append(_raise(lambda c=copy: c.sessions.list(**options)))
                emu.add_fault(_echo_fault(503, times=2))
                failures.append(_raise(lambda c=copy: c.sessions.create(**options)))
                emu.add_fault(Fault("status", status=200, body=f"<html>{CANARY}</html>"))
                failures.append(_raise(lambda c=client: c.sessions.list(**options)))

        async def on_async() -> None:
            async def no_sleep(seconds: float) -> None:
                return None

            async with httpx.AsyncClient() as ahttp:
                async with AsyncPdffillrClient(
                    CANARY, base_url=emu.url, sleep=no_sleep, http_client=ahttp
                ) as aclient:
                    emu.add_fault(_echo_fault(401))
                    try:
                        await aclient.with_options(max_retries=0).sessions.list(**options)
                    except Exception as exc:
                        failures.append(exc)

        asyncio.run(on_async())
        http.close()
    assert hooked  # the caller's client sent them
    kinds = [type(e).__name__ for e in failures]
    assert kinds == ["AuthenticationError", "InternalServerError", "ProtocolError"] * 2 + [
        "AuthenticationError"
    ]
    for exc in failures:
        assert leaks(exc) == [], type(exc)
        assert CANARY not in repr(getattr(exc, "body", None))


def test_the_key_and_header_values_are_in_no_log_line_with_pdffillr_log_debug(
    tmp_path: Path,
) -> None:
    """``PDFFILLR_LOG=debug``: the package's records on stderr, with retries, failures, a
    caller's http_client, with_options, default and extra headers carrying a second canary."""
    script = tmp_path / "logs.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, httpx
            from pdffillr_sessions import PdffillrClient, Session
            from pdffillr_sessions.emulator import Emulator, Fault

            other = os.environ["OTHER_SECRET"]
            with Emulator() as emu, httpx.Client() as http:
                with PdffillrClient(
                    base_url=emu.url, sleep=lambda s: None, http_client=http,
                    default_headers={"X-Proxy-Token": other},
                ) as client:
                    copy = client.with_options(default_headers={"X-Run": other})
                    emu.add_fault(Fault("status", status=503, times=2,
                        body="echo " + os.environ["PDFFILLR_API_KEY"]))
                    copy.sessions.list(extra_headers={"X-Call": other}, extra_query={"q": other})
                    with Session(copy, title="logged", cache=sys.argv[1]) as s:
                        s.send("hello")
                    emu.add_fault(Fault("status", status=401, times=1))
                    try:
                        copy.sessions.list(max_retries=0)
                    except Exception as exc:
                        print(type(exc).__name__)
            """
        ),
        encoding="utf-8",
    )
    other = "OTHER_CANARY_header_value_77aa"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "c.db")],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PDFFILLR_API_KEY": CANARY,
            "PDFFILLR_LOG": "debug",
            "OTHER_SECRET": other,
            "PYTHONPATH": str(ROOT),
        },
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "AuthenticationError\n"
    assert "retry 1 of 2" in result.stderr and ": HTTP 200" in result.stderr  # it did log
    assert "<redacted>" in result.stderr  # the echoed key, in the retry lines
    for text in (result.stdout, result.stderr):
        assert CANARY not in text and other not in text


def test_no_frame_local_holds_a_malformed_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", CANARY + "\u00e9")
    exc = _raise(PdffillrClient)
    assert isinstance(exc, ConfigurationError) and "malformed" in str(exc)
    assert leaks(exc) == []
    exc = _raise(lambda: HistoryCache(api_key=CANARY, scope="both"))
    assert isinstance(exc, ConfigurationError) and leaks(exc) == []


def _echo_fault(status: int, **kwargs: Any) -> Fault:
    body = json.dumps({"error": {"type": "bad", "message": f"bad token Bearer {CANARY}"}})
    return Fault(
        "status",
        status=status,
        body=body,
        content_type="application/json",
        headers={"x-request-id": CANARY, "x-echo": f"Bearer {CANARY}"},
        **kwargs,
    )


def test_no_frame_local_holds_the_key_when_a_call_fails(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    with Emulator() as emu:
        with PdffillrClient(CANARY, base_url=emu.url, sleep=lambda s: None) as client:
            emu.add_fault(_echo_fault(401))
            failures.append(_raise(client.sessions.list))
            emu.add_fault(_echo_fault(503, times=3))
            failures.append(_raise(client.sessions.create))
            emu.add_fault(Fault("status", status=200, body=f"<html>{CANARY}</html>"))
            failures.append(_raise(client.sessions.list))
            emu.add_fault(Fault("drop_before"))
            emu.add_fault(Fault("drop_before"))
            emu.add_fault(Fault("drop_before"))
            failures.append(_raise(client.sessions.list))
    with PdffillrClient(CANARY, base_url="http://127.0.0.1:9", max_retries=0) as client:
        failures.append(_raise(client.sessions.list))

    def echoing_header_line(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nBearer {CANARY}\r\n\r\n".encode())

    with serving(echoing_header_line) as server:
        with PdffillrClient(CANARY, base_url=server.url, max_retries=0) as client:
            failures.append(_raise(client.sessions.list))

    def trickling(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        time.sleep(1.0)

    with serving(trickling) as server:
        timeout = Timeout(5, total=0.3)
        with PdffillrClient(CANARY, base_url=server.url, timeout=timeout) as client:
            failures.append(_raise(client.sessions.list))
    kinds = [type(e).__name__ for e in failures]
    assert kinds == [
        "AuthenticationError",
        "InternalServerError",
        "ProtocolError",
        "APIConnectionError",
        "APIConnectionError",
        "APIConnectionError",
        "APITimeoutError",
    ]
    for exc in failures:
        assert leaks(exc) == [], type(exc)
        assert CANARY not in repr(getattr(exc, "body", None))
        assert CANARY not in str(getattr(exc, "request_id", None))
    assert "<redacted>" in str(failures[0])
    assert "<redacted>" in failures[0].request_id  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
def test_no_frame_local_holds_the_key_when_a_session_block_fails(kind: str, tmp_path: Path) -> None:
    """A with-block whose create, then whose end, is refused by a server echoing the key: the
    failures pass through the lifecycle's frames (``Session``'s and ``AsyncSession``'s)."""
    failures: list[BaseException] = []
    key = Secret.of(CANARY)  # (the test helper's frames hold what they are given)
    with Emulator() as emu:
        emu.add_fault(_echo_fault(401, method="POST", path="/sessions$"))
        create = run_block(
            kind,
            Block(),
            api_key=key,
            base_url=emu.url,
            cache=tmp_path / "a.db",
            catch=Exception,
        )
        emu.add_fault(_echo_fault(503, method="POST", path="/end$", times=3))
        end = run_block(
            kind,
            Block(sends=["hello"]),
            api_key=key,
            base_url=emu.url,
            cache=tmp_path / "b.db",
            catch=Exception,
        )
    failures += [e for e in (create.error, end.error) if e is not None]
    assert [type(e).__name__ for e in failures] == ["AuthenticationError", "InternalServerError"]
    for exc in failures:
        assert leaks(exc) == [], type(exc)
    assert end.session is not None and CANARY not in repr(end.session)


def test_pytest_showlocals_never_prints_the_key(tmp_path: Path) -> None:
    """The real ``pytest --showlocals``, on failures whose frames pass through the client."""
    script = tmp_path / "test_failing.py"
    script.write_text(
        textwrap.dedent(
            """
            import pdffillr_sessions as pfs
            from pdffillr_sessions.emulator import Emulator, Fault

            def test_setup_fails():
                pfs.PdffillrClient(base_url="ftp://nowhere")

            def test_a_call_fails():
                with Emulator() as emu:
                    emu.add_fault(Fault("status", status=401, body="key echoed: " + KEY))
                    with pfs.PdffillrClient(base_url=emu.url) as client:
                        client.sessions.list()

            def test_a_connection_fails():
                with pfs.PdffillrClient(base_url="http://127.0.0.1:9", max_retries=0) as c:
                    c.sessions.list()

            import os
            KEY = os.environ["PDFFILLR_API_KEY"]
            """
        ).replace("KEY = os.environ", "KEY = os.environ"),
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--showlocals",
            "--tb=long",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            str(script),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PDFFILLR_API_KEY": CANARY, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        check=False,
    )
    assert "3 failed" in result.stdout, result.stdout[-2000:]
    assert "self       = " in result.stdout or "self = " in result.stdout  # locals were shown
    assert CANARY not in result.stdout + result.stderr


def test_a_key_echoed_by_the_server_reaches_no_log_cli_output_or_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "echo.db"
    with Emulator() as emu:
        with PdffillrClient(CANARY, base_url=emu.url, sleep=lambda s: None) as client:
            with pytest.raises(InternalServerError):
                with Session(client, cache=db) as s:
                    s.send("hello")
                    # The server stores an entry that quotes the key, then every end fails
                    # with a message echoing it.
                    emu.add_fault(
                        Fault(
                            "status",
                            status=200,
                            method="GET",
                            path="/messages$",
                            body=json.dumps(
                                [
                                    {
                                        "id": "e1",
                                        "type": "message",
                                        "role": "assistant",
                                        "content": f"your key is {CANARY}",
                                        "created_at": "2026-01-01T00:00:00Z",
                                    }
                                ]
                            ),
                            content_type="application/json",
                        )
                    )
                    emu.add_fault(_echo_fault(500, path="/end$", times=10))
        runner = CliRunner()
        emu.add_fault(_echo_fault(401, times=5))
        result = runner.invoke(
            cli,
            ["sync", "--db", str(db)],
            env={"PDFFILLR_API_KEY": CANARY, "PDFFILLR_BASE_URL": emu.url},
        )
    assert result.exit_code == 1 and "<redacted>" in result.output
    assert CANARY not in result.output
    for record in caplog.records:
        assert CANARY not in record.getMessage()
    for f in db.parent.rglob("*"):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f
    with HistoryCache(db) as cache:
        [row] = cache.sessions()
        assert row.local_state == "end_pending" and "<redacted>" in (row.local_error or "")
        assert "your key is <redacted>" in [e.content for e in cache.history(row.session_id)]
    show = runner.invoke(cli, ["show", row.session_id, "--db", str(db)])
    assert show.exit_code == 0 and CANARY not in show.output


def test_a_secret_never_shows_its_value() -> None:
    secret = Secret(CANARY)
    for text in (repr(secret), str(secret), f"{secret}", repr([secret]), repr({"k": secret})):
        assert CANARY not in text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert (secret == Secret(CANARY)) is False  # no comparison (a failed assert would diff it)
    assert Secret.of(secret) is secret
    assert secret.redact(f"a{CANARY}b") == "a<redacted>b"
    assert secret.redact_bytes(json.dumps({"k": CANARY}).encode()) == b'{"k": "<redacted>"}'
    plain = b"nothing to hide"
    assert secret.redact_bytes(plain) is plain
    assert Secret("short").redact("short text") == "short text"  # too short to search for
    assert Secret(None).problem == "missing" and Secret(5).problem == "not a string"
