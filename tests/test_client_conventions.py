"""The conventions of openai-python and anthropic-sdk-python, on both clients.

Per-call ``timeout``, ``max_retries``, ``extra_headers``, ``extra_query``; ``with_options``
sharing the pool; ``default_headers``; a caller's own ``http_client`` (whose bodies stay bounded
and whose calls still end by ``Timeout(total=...)``, through a proxy too); the package logger
(a ``NullHandler``, retries at INFO, ``PDFFILLR_LOG``). Every scenario runs on the sync and
the async client (``both``): one implementation, so one behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import ROOT
from rawserver import RawServer, gzip_bomb, response_head, serving, trickle

from pdffillr_sessions import (
    APIStatusError,
    APITimeoutError,
    AsyncPdffillrClient,
    ClientClosedError,
    ConfigurationError,
    InternalServerError,
    PdffillrClient,
    ProtocolError,
    Timeout,
)
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_conventions_SECRET_5e6f7a8b"
SESSION = {
    "session_id": "sess_1",
    "title": "Q4",
    "status": "active",
    "message_count": 0,
    "created_at": "2026-01-01T00:00:00Z",
}
MIB = 1024 * 1024


# -- running one scenario on both clients ---------------------------------------------------------


class Sync:
    """Drives a ``PdffillrClient`` with the same calls as ``Async`` drives its twin."""

    kind = "sync"
    http_class: type[Any] = httpx.Client

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("sleep", lambda s: None)
        self.client: Any = PdffillrClient(KEY, **kwargs)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def close(self, *http_clients: Any) -> None:
        self.client.close()
        for http in http_clients:
            http.close()


class Async:
    """Drives an ``AsyncPdffillrClient`` on one event loop of its own (a caller's
    ``httpx.AsyncClient`` keeps connections bound to the loop that opened them)."""

    kind = "async"
    http_class: type[Any] = httpx.AsyncClient

    def __init__(self, **kwargs: Any) -> None:
        async def no_sleep(seconds: float) -> None:
            return None

        kwargs.setdefault("sleep", no_sleep)
        self.loop = asyncio.new_event_loop()
        self.client: Any = AsyncPdffillrClient(KEY, **kwargs)

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return self.loop.run_until_complete(fn(*args, **kwargs))

    def close(self, *http_clients: Any) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.client.aclose())
            for http in http_clients:
                self.loop.run_until_complete(http.aclose())
            self.loop.close()


Driver = Sync | Async


@pytest.fixture(params=[Sync, Async], ids=["sync", "async"])
def both(request: pytest.FixtureRequest) -> type[Driver]:
    return request.param  # type: ignore[no-any-return]


def recording(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport (for either client) that gives ``answers`` in order, the last one again
    when they run out, and records every request."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handler), seen


@pytest.fixture
def driver(both: type[Driver]) -> Iterator[Callable[..., Driver]]:
    made: list[Driver] = []

    def make(**kwargs: Any) -> Driver:
        kwargs.setdefault("base_url", "http://pdffillr.test")
        d = both(**kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


# -- per-call options -----------------------------------------------------------------------------


def test_each_call_takes_extra_headers_and_extra_query(driver: Callable[..., Driver]) -> None:
    transport, seen = recording(httpx.Response(200, json=[SESSION]))
    d = driver(transport=transport, default_headers={"X-Team": "fund-ops", "X-Trace": "default"})
    sessions = d.client.sessions
    d.call(sessions.list)
    d.call(
        sessions.list,
        extra_headers={"x-trace": "call-1", "User-Agent": "my-app/1.0"},
        extra_query={"region": "eu", "limit": 5, "verbose": True},
    )
    first, second = seen
    assert first.headers["x-team"] == "fund-ops" and first.headers["x-trace"] == "default"
    assert first.url.query == b""
    # The call's own headers win over default_headers and the client's own, names compared
    # case-insensitively (one header each, not two).
    assert second.headers.get_list("x-trace") == ["call-1"]
    assert second.headers.get_list("user-agent") == ["my-app/1.0"]
    assert second.headers["x-team"] == "fund-ops"
    assert second.headers["authorization"] == f"Bearer {KEY}"
    assert dict(second.url.params) == {"region": "eu", "limit": "5", "verbose": "true"}
    assert second.url.path == "/v1/sdk/chat/sessions"


def test_extra_headers_never_touch_the_idempotency_key_of_a_retried_create(
    driver: Callable[..., Driver],
) -> None:
    transport, seen = recording(httpx.Response(503), httpx.Response(201, json=SESSION))
    d = driver(transport=transport)
    d.call(d.client.sessions.create, "Q4", extra_headers={"X-Trace": "t"})
    keys = [r.headers["idempotency-key"] for r in seen]
    assert len(keys) == 2 and keys[0] == keys[1]  # one key per logical call, every attempt
    assert all(r.headers["x-trace"] == "t" for r in seen)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Authorization", "writes it from its own key"),
        ("authorization", "writes it from its own key"),
        ("Idempotency-Key", "idempotency_key="),
        ("Accept-Encoding", "decodes gzip and deflate itself"),
    ],
)
def test_the_headers_the_client_owns_are_refused_by_every_option(
    driver: Callable[..., Driver], name: str, why: str
) -> None:
    """Never silently: a typed error saying why, the value never shown, nothing sent."""
    value = f"Bearer {KEY}"
    transport, seen = recording(httpx.Response(200, json=[]))
    d = driver(transport=transport)
    with pytest.raises(ConfigurationError, match=why) as refused:
        d.call(d.client.sessions.list, extra_headers={name: value})
    with pytest.raises(ConfigurationError, match=why):
        d.client.with_options(default_headers={name: value})
    with pytest.raises(ConfigurationError, match=why):
        type(d.client)(KEY, base_url="http://x.test", default_headers={name: value})
    assert seen == []
    assert KEY not in str(refused.value) and KEY not in repr(refused.value)


@pytest.mark.parametrize(
    ("headers", "query", "match"),
    [
        ({"X-Bad\n": "v"}, None, "not a valid header name"),
        ({"": "v"}, None, "not a valid header name"),
        ({"X-Ok": "hidden\r\nInjected: yes"}, None, "printable ASCII"),
        ({"X-Ok": "hidden caf\u00e9"}, None, "printable ASCII"),
        ({"X-Ok": 5}, None, "printable ASCII"),
        ("X-Ok: v", None, "must be a mapping"),
        (None, {"q": object()}, "text or a number"),
        (None, {"q": "\ud800"}, "text or a number"),
        (None, {5: "v"}, "parameter name"),
        (None, [("q", "v")], "must be a mapping"),
    ],
)
def test_a_bad_header_or_query_is_refused_without_showing_its_value(
    driver: Callable[..., Driver], headers: Any, query: Any, match: str
) -> None:
    transport, seen = recording(httpx.Response(200, json=[]))
    d = driver(transport=transport)
    with pytest.raises(ConfigurationError, match=match) as refused:
        d.call(d.client.sessions.list, extra_headers=headers, extra_query=query)
    assert seen == []
    assert "hidden" not in str(refused.value) and "Injected" not in str(refused.value)


def test_per_call_timeout_and_max_retries(driver: Callable[..., Driver]) -> None:
    transport, seen = recording(httpx.Response(503))
    d = driver(transport=transport, timeout=Timeout(30, connect=3), max_retries=2)
    sessions = d.client.sessions
    with pytest.raises(InternalServerError):
        d.call(sessions.list, max_retries=0)
    assert len(seen) == 1
    with pytest.raises(InternalServerError):
        d.call(sessions.list, max_retries=4)
    assert len(seen) == 1 + 5
    with pytest.raises(InternalServerError):
        d.call(sessions.list)  # the client's own: two retries
    assert len(seen) == 6 + 3
    # A number means what it means to the constructor: that many seconds per network wait,
    # the default 5 s to connect; a Timeout is used as given.
    seen.clear()
    with pytest.raises(InternalServerError):
        d.call(sessions.list, timeout=7, max_retries=0)
    with pytest.raises(InternalServerError):
        d.call(sessions.list, timeout=Timeout(9, connect=1), max_retries=0)
    with pytest.raises(InternalServerError):
        d.call(sessions.list, max_retries=0)
    limits = [r.extensions["timeout"] for r in seen]
    assert [(t["read"], t["connect"]) for t in limits] == [(7, 5), (9, 1), (30, 3)]
    for bad in ("soon", -1, 0):
        with pytest.raises(ConfigurationError, match="timeout"):
            d.call(sessions.list, timeout=bad)
    with pytest.raises(ConfigurationError, match="max_retries"):
        d.call(sessions.list, max_retries=-1)


def test_a_per_call_total_bounds_that_call_only(both: type[Driver]) -> None:
    def reply(conn: socket.socket) -> None:
        head = response_head(200, {"Content-Type": "application/json", "Content-Length": "2"})
        trickle(conn, head + b"[]", 0.3, server.stopping)

    server = RawServer(reply)
    with server:
        d = both(base_url=server.url)  # no total: the client alone would wait ~10 s
        try:
            started = time.monotonic()
            with pytest.raises(APITimeoutError):
                d.call(d.client.sessions.list, timeout=Timeout(5, total=0.8))
            assert time.monotonic() - started < 0.8 + 2.0
        finally:
            d.close()


# -- with_options ---------------------------------------------------------------------------------


def test_with_options_shares_the_pool_and_changes_only_what_it_is_given(
    driver: Callable[..., Driver],
) -> None:
    transport, seen = recording(httpx.Response(200, json=[]))
    d = driver(transport=transport, default_headers={"X-Team": "ops"}, max_retries=3)
    client = d.client
    copy = client.with_options(timeout=Timeout(4, total=20), default_headers={"X-Run": "nightly"})
    assert copy._http is client._http  # one connection pool
    assert copy.timeout == Timeout(4, total=20) and client.timeout == Timeout()
    assert copy.max_retries == 3 and copy.retry_policy is client.retry_policy
    assert copy.key_scope == client.key_scope and copy.server == client.server
    assert repr(copy) == repr(client) and KEY not in repr(copy)
    d.call(copy.sessions.list)
    d.call(client.sessions.list)
    with_copy, with_original = seen
    assert with_copy.headers["x-team"] == "ops" and with_copy.headers["x-run"] == "nightly"
    assert "x-run" not in with_original.headers  # the original is unchanged
    assert with_copy.extensions["timeout"]["read"] == 4
    assert copy.with_options(max_retries=0).max_retries == 0
    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        client.with_options(max_response_bytes=0)


def test_closing_a_copy_closes_only_the_copy_and_closing_the_original_closes_both(
    driver: Callable[..., Driver],
) -> None:
    transport, _ = recording(httpx.Response(200, json=[]))
    d = driver(transport=transport)
    client = d.client
    copy = client.with_options(max_retries=0)
    d.call(copy.close if isinstance(d, Sync) else copy.aclose)
    assert copy.closed and not client.closed
    with pytest.raises(ClientClosedError):
        d.call(copy.sessions.list)
    assert d.call(client.sessions.list) == []  # the pool is still open
    other = client.with_options(max_retries=1)
    d.call(client.close if isinstance(d, Sync) else client.aclose)
    assert client.closed and other.closed
    with pytest.raises(ClientClosedError):
        d.call(other.sessions.list)


# -- http_client: the caller's own httpx client ---------------------------------------------------


def test_a_callers_http_client_sends_our_requests_and_keeps_its_own_settings(
    both: type[Driver],
) -> None:
    """Its event hooks run and its default headers are sent; its base_url, auth, timeout and
    redirects are not used (the client's own are); closing our client leaves it open."""
    hooked: list[tuple[str, str]] = []
    is_async = both is Async

    def on_request(request: httpx.Request) -> None:
        hooked.append(("request", str(request.url)))

    def on_response(response: httpx.Response) -> None:
        hooked.append(("response", str(response.status_code)))

    async def a_on_request(request: httpx.Request) -> None:
        on_request(request)

    async def a_on_response(response: httpx.Response) -> None:
        on_response(response)

    with Emulator(valid_keys=[KEY]) as emu:
        emu.add_fault(Fault("status", status=307, headers={"Location": "/elsewhere"}))
        hooks = (
            {"request": [a_on_request], "response": [a_on_response]}
            if is_async
            else {"request": [on_request], "response": [on_response]}
        )
        http = both.http_class(
            base_url="http://wrong.invalid",
            auth=("someone", "else"),
            timeout=0.001,
            follow_redirects=True,
            headers={"X-From-Http-Client": "yes"},
            event_hooks=hooks,
        )
        d = both(base_url=emu.url, http_client=http)
        try:
            with pytest.raises(APIStatusError) as redirected:
                d.call(d.client.sessions.list, max_retries=0)
            assert redirected.value.status_code == 307  # not followed
            created = d.call(d.client.sessions.create, "via my client")
            d.call(d.client.sessions.end, created.session_id)
            d.call(d.client.close if isinstance(d, Sync) else d.client.aclose)
            assert not http.is_closed  # the caller's to close
        finally:
            d.close(http)
        assert hooked[:2] == [
            ("request", f"{emu.url}/v1/sdk/chat/sessions"),
            ("response", "307"),
        ]
        assert len(hooked) == 6
        assert emu.sessions(KEY)[0]["status"] == "ended"  # the key's auth, not the client's


def test_a_closed_http_client_or_a_wrong_one_is_a_typed_error(both: type[Driver]) -> None:
    http = both.http_class()
    d = both(base_url="http://x.test", http_client=http)
    try:
        d.call(http.close if both is Sync else http.aclose)
        assert d.client.closed
        with pytest.raises(ClientClosedError):
            d.call(d.client.sessions.list)
    finally:
        d.close()
    wrong = httpx.AsyncClient() if both is Sync else httpx.Client()
    with pytest.raises(ConfigurationError, match="http_client must be an httpx"):
        both(base_url="http://x.test", http_client=wrong)
    with pytest.raises(ConfigurationError, match="not both"):
        both(base_url="http://x.test", http_client=both.http_class(), transport=object())


def trickling(server: RawServer) -> Callable[[socket.socket], None]:
    def reply(conn: socket.socket) -> None:
        head = response_head(200, {"Content-Type": "application/json", "Content-Length": "2"})
        trickle(conn, head + b"[]", 0.3, server.stopping)

    return reply


def test_a_callers_http_client_still_ends_by_the_total_deadline(both: type[Driver]) -> None:
    """Its connection pool gets the deadline backend: a server trickling its headers cannot
    hold a call past ``Timeout(total=...)`` (each byte would restart a per-read timeout)."""
    server = RawServer(lambda conn: None)
    server._reply = trickling(server)
    with server:
        http = both.http_class()
        d = both(base_url=server.url, http_client=http, timeout=Timeout(5, total=0.8))
        try:
            assert d.client._deadline_pools >= 1
            started = time.monotonic()
            with pytest.raises(APITimeoutError):
                d.call(d.client.sessions.list)
            assert time.monotonic() - started < 0.8 + 2.0
        finally:
            d.close(http)


def test_through_a_callers_proxy_the_deadline_still_holds(both: type[Driver]) -> None:
    """``httpx.Client(proxy=...)``: the request goes to the proxy (absolute form), and the
    proxy's pool is wrapped too: a proxy that trickles cannot hold the call either."""
    proxy = RawServer(lambda conn: None)
    proxy._reply = trickling(proxy)
    with proxy:
        http = both.http_class(proxy=proxy.url, trust_env=False)
        d = both(
            base_url="http://api.pdffillr.test", http_client=http, timeout=Timeout(5, total=0.8)
        )
        try:
            started = time.monotonic()
            with pytest.raises(APITimeoutError):
                d.call(d.client.sessions.list)
            assert time.monotonic() - started < 0.8 + 2.0
        finally:
            d.close(http)
    request_line = proxy.requests[0].split(b"\r\n")[0]
    assert request_line == b"GET http://api.pdffillr.test/v1/sdk/chat/sessions HTTP/1.1"


def test_a_callers_http_client_reads_bodies_bounded(both: type[Driver]) -> None:
    bomb = gzip_bomb(200 * MIB)

    def reply(conn: socket.socket) -> None:
        head = {"Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
        conn.sendall(response_head(200, head) + bomb)

    with serving(reply) as server:
        http = both.http_class()
        d = both(base_url=server.url, http_client=http, max_response_bytes=2 * MIB)
        try:
            import tracemalloc

            tracemalloc.start()
            try:
                with pytest.raises(ProtocolError, match="2 MiB limit"):
                    d.call(d.client.sessions.list)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 10 * MIB, peak
        finally:
            d.close(http)


# -- logging --------------------------------------------------------------------------------------


def test_the_package_logger_is_silent_unless_asked_and_logs_retries_at_info(
    driver: Callable[..., Driver], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("pdffillr_sessions")
    assert any(type(h) is logging.NullHandler for h in logger.handlers)
    transport, _ = recording(httpx.Response(503), httpx.Response(200, json=[]))
    d = driver(transport=transport)
    caplog.set_level(logging.DEBUG, logger="pdffillr_sessions")
    d.call(d.client.sessions.list)
    retries = [r for r in caplog.records if "retry 1 of 2" in r.getMessage()]
    assert [r.levelno for r in retries] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    statuses = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert statuses == [
        "GET /v1/sdk/chat/sessions: HTTP 503",
        "GET /v1/sdk/chat/sessions: HTTP 200",
    ]


LOG_SCRIPT = textwrap.dedent(
    """
    import sys
    from pdffillr_sessions import PdffillrClient
    from pdffillr_sessions.emulator import Emulator, Fault

    with Emulator() as emu:
        emu.add_fault(Fault("status", status=503, times=1))
        with PdffillrClient(base_url=emu.url, sleep=lambda s: None) as client:
            client = client.with_options(default_headers={"X-Token": sys.argv[1]})
            client.sessions.list(
                extra_headers={"X-Other": sys.argv[1]}, extra_query={"q": sys.argv[1]}
            )
    print("done")
    """
)


def run_logging_script(level: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PDFFILLR_LOG"}
    env.update({"PDFFILLR_API_KEY": KEY, "PYTHONPATH": str(ROOT)})
    if level is not None:
        env["PDFFILLR_LOG"] = level
    return subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT, "header-value-not-logged"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )


def test_pdffillr_log_turns_the_package_logger_on() -> None:
    quiet = run_logging_script(None)
    assert quiet.stdout == "done\n" and quiet.stderr == ""  # a retry prints nothing by default
    info = run_logging_script("info")
    lines = info.stderr.splitlines()
    assert len(lines) == 1, info.stderr
    assert " - pdffillr_sessions:" in lines[0] and " - INFO] " in lines[0]
    assert "GET /v1/sdk/chat/sessions failed (InternalServerError" in lines[0]
    debug = run_logging_script("DEBUG")
    assert "GET /v1/sdk/chat/sessions: HTTP 503" in debug.stderr
    assert "GET /v1/sdk/chat/sessions: HTTP 200" in debug.stderr
    for result in (quiet, info, debug):
        assert KEY not in result.stderr and "header-value-not-logged" not in result.stderr
    assert run_logging_script("verbose").stderr == ""  # other values are ignored
