"""A hostile or broken server cannot exhaust memory or time: every body is bounded (decoded size
counted, gzip bombs included), every call ends by ``Timeout(total=...)`` however slowly the
server trickles, and what it says reaches an exception without raw control bytes."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rawserver import RawServer, gzip_bomb, response_head, serving, trickle

from pdffillr_sessions import (
    APITimeoutError,
    AsyncPdffillrClient,
    InternalServerError,
    PdffillrClient,
    ProtocolError,
    Timeout,
)
from pdffillr_sessions._body import MAX_ERROR_BODY_BYTES, BodyReader
from tests._blocks import KINDS, Block, run_block

KEY = "sk_hostile_server_0123456789"
MIB = 1024 * 1024
SESSION = {
    "session_id": "sess_1",
    "title": None,
    "status": "active",
    "message_count": 0,
    "created_at": "2026-01-01T00:00:00Z",
}


def client_for(server: RawServer, **kwargs: Any) -> PdffillrClient:
    return PdffillrClient(KEY, base_url=server.url, sleep=lambda s: None, **kwargs)


def send_body(body: bytes, status: int = 200, **headers: str) -> Callable[[socket.socket], None]:
    def reply(conn: socket.socket) -> None:
        head = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
        conn.sendall(response_head(status, head) + body)

    return reply


# -- bounded memory -----------------------------------------------------------------------------


def test_a_declared_500_mb_body_is_refused_before_reading_it() -> None:
    def reply(conn: socket.socket) -> None:
        conn.sendall(response_head(200, {"Content-Length": str(500 * MIB)}) + b"[" * 1000)

    with serving(reply) as server, client_for(server) as client:
        with pytest.raises(ProtocolError, match=r"declares 524,288,000 bytes.*256 MiB limit"):
            client.sessions.list()
    assert len(server.requests) == 1  # a ProtocolError is not retried


def endless_chunks(conn: socket.socket) -> None:
    conn.sendall(response_head(200, {"Transfer-Encoding": "chunked"}))
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    try:
        while True:
            conn.sendall(chunk)
    except OSError:
        return  # the client hung up


def peak_memory(call: Callable[[], object]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        call()
    except BaseException as exc:
        return tracemalloc.get_traced_memory()[1], exc
    finally:
        tracemalloc.stop()
    return 0, None


def test_an_endless_chunked_body_stops_at_the_cap_in_bounded_memory() -> None:
    with serving(endless_chunks) as server, client_for(server, max_response_bytes=4 * MIB) as c:
        peak, exc = peak_memory(c.sessions.list)
    assert isinstance(exc, ProtocolError), exc
    assert "4 MiB limit for response bodies" in str(exc)
    assert peak < 12 * MIB, peak  # the cap, a chunk or two, and what joining them costs


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
def test_a_gzip_bomb_is_counted_decoded_and_stopped_in_bounded_memory(encoding: str) -> None:
    bomb = gzip_bomb(200 * MIB)  # ~200 KB on the wire
    if encoding == "gzip, gzip":
        bomb = gzip_bomb_of(bomb)  # a bomb of a bomb: a few KB that would expand 1,000,000x
    reply = send_body(bomb, **{"Content-Encoding": encoding})
    with serving(reply) as server, client_for(server, max_response_bytes=2 * MIB) as client:
        peak, exc = peak_memory(client.sessions.list)
    assert isinstance(exc, ProtocolError), exc
    assert "decoded bytes" in str(exc) and "2 MiB limit" in str(exc)
    assert peak < 10 * MIB, peak


def gzip_bomb_of(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def test_a_503_gzip_bomb_is_refused_at_the_error_cap_and_not_retried() -> None:
    reply = send_body(gzip_bomb(64 * MIB), 503, **{"Content-Encoding": "gzip"})
    with serving(reply) as server, client_for(server) as client:
        peak, exc = peak_memory(client.sessions.list)
    assert isinstance(exc, ProtocolError), exc
    assert f"{MAX_ERROR_BODY_BYTES // MIB} MiB limit for error bodies" in str(exc)
    assert len(server.requests) == 1
    assert peak < 8 * MIB, peak


def test_a_compressed_body_within_the_cap_is_decoded() -> None:
    import gzip

    body = json.dumps([SESSION] * 1000).encode()
    reply = send_body(gzip.compress(body), **{"Content-Encoding": "gzip"})
    with serving(reply) as server, client_for(server) as client:
        assert len(client.sessions.list()) == 1000


@pytest.mark.parametrize(
    ("encoding", "body", "why"),
    [
        ("br", b"\x0b\x02\x80[]\x03", "Content-Encoding 'br' is not supported"),
        ("gzip", b"not gzip at all", "compressed data is corrupt"),
        ("gzip, gzip, gzip", b"", "3 stacked Content-Encodings"),
    ],
)
def test_a_body_that_cannot_be_decoded_is_a_protocol_error(
    encoding: str, body: bytes, why: str
) -> None:
    reply = send_body(body, **{"Content-Encoding": encoding})
    with serving(reply) as server, client_for(server) as client:
        with pytest.raises(ProtocolError, match=why):
            client.sessions.list()


def test_an_error_message_never_carries_raw_control_bytes() -> None:
    nasty = b"\x00\x1b]0;pwned\x07\x1b[2J\x9b31m\r\x08"
    reply = send_body(nasty * 50, 503, **{"Content-Type": "text/html"})
    with serving(reply) as server, client_for(server, max_retries=1) as client:
        with pytest.raises(InternalServerError) as info:
            client.sessions.list()
    assert len(server.requests) == 2  # a 503 within the error cap is still retried
    text = str(info.value)
    assert "\\x1b]0;pwned\\x07" in text
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text), text


def test_the_body_reader_decides_the_cap_the_encoding_and_the_deadline() -> None:
    def reader(status: int = 200, **headers: str) -> BodyReader:
        return BodyReader(
            status_code=status,
            headers=headers,
            max_response_bytes=10,
            deadline=100.0,
            method="GET",
            path="/x",
        )

    r = reader()
    assert r.feed(b"0123456789", now=1.0) and r.finish() == b"0123456789" and r.error is None
    r = reader()
    assert not r.feed(b"0123456789A", now=1.0) and isinstance(r.error, ProtocolError)
    r = reader()
    assert not r.feed(b"0", now=100.5) and isinstance(r.error, APITimeoutError)
    assert isinstance(reader(**{"Content-Length": "11"}).error, ProtocolError)
    assert reader(**{"Content-Length": "11", "Content-Encoding": "gzip"}).error is None
    r = reader(503, **{"Content-Encoding": "zstd"})  # an error status keeps its class
    assert r.error is None and r.stopped is not None and not r.feed(b"x", now=1.0)
    r = reader(**{"Content-Encoding": "gzip"})
    assert r.feed(gzip_bomb(5)[:5], now=1.0)
    r.finish()
    assert isinstance(r.error, ProtocolError) and "cut short" in str(r.error)
    assert "0123" not in repr(reader())


# -- bounded time ---------------------------------------------------------------------------------

TRICKLE_EVERY = 0.2
TOTAL = 1.0
#: A call must end within total + this. Without a wall-clock deadline it would run for minutes:
#: every byte restarts a per-read timeout.
MARGIN = 2.0


def trickling_headers(server_stop: Any) -> Callable[[socket.socket], None]:
    def reply(conn: socket.socket) -> None:
        head = response_head(200, {"Content-Type": "application/json", "Content-Length": "2"})
        trickle(conn, head + b"[]", TRICKLE_EVERY, server_stop)

    return reply


def trickling_body(server_stop: Any) -> Callable[[socket.socket], None]:
    def reply(conn: socket.socket) -> None:
        body = json.dumps([SESSION] * 50).encode()
        conn.sendall(response_head(200, {"Content-Length": str(len(body))}))
        trickle(conn, body, TRICKLE_EVERY, server_stop)

    return reply


def trickling_server(kind: str) -> RawServer:
    server = RawServer(lambda conn: None)
    make = trickling_headers if kind == "headers" else trickling_body
    server._reply = make(server.stopping)
    return server


@pytest.mark.parametrize("kind", ["headers", "body"])
def test_a_trickling_server_cannot_hold_a_sync_call_past_its_total(kind: str) -> None:
    with trickling_server(kind) as server:
        with client_for(server, timeout=Timeout(5, connect=2, total=TOTAL)) as client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError):
                client.sessions.list()
            elapsed = time.monotonic() - started
    assert elapsed < TOTAL + MARGIN, elapsed


@pytest.mark.parametrize("kind", ["headers", "body"])
def test_a_trickling_server_cannot_hold_an_async_call_past_its_total(kind: str) -> None:
    async def scenario(url: str) -> float:
        async def no_sleep(seconds: float) -> None:
            return None

        timeout = Timeout(5, connect=2, total=TOTAL)
        async with AsyncPdffillrClient(KEY, base_url=url, timeout=timeout, sleep=no_sleep) as c:
            started = time.monotonic()
            with pytest.raises(APITimeoutError):
                await c.sessions.list()
            return time.monotonic() - started

    with trickling_server(kind) as server:
        elapsed = asyncio.run(scenario(server.url))
    assert elapsed < TOTAL + MARGIN, elapsed


def test_both_clients_bound_every_network_wait_by_the_deadline() -> None:
    """If an httpx upgrade moves the connection pool, this fails (the deadline would then only
    hold between body chunks)."""
    with PdffillrClient(KEY) as client:
        assert client._deadline_pools >= 1

    async def scenario() -> int:
        async with AsyncPdffillrClient(KEY) as client:
            return client._deadline_pools

    assert asyncio.run(scenario()) >= 1


def test_a_deadline_clips_every_wait_and_fails_once_it_has_passed() -> None:
    import httpcore

    from pdffillr_sessions._deadline import clip

    assert clip(5.0, None, 0.0, httpcore.ReadTimeout) == 5.0
    assert clip(5.0, 10.0, 8.0, httpcore.ReadTimeout) == 2.0
    assert clip(None, 10.0, 8.0, httpcore.ReadTimeout) == 2.0
    assert clip(1.0, 10.0, 8.0, httpcore.ReadTimeout) == 1.0
    with pytest.raises(httpcore.ReadTimeout):
        clip(5.0, 10.0, 10.0, httpcore.ReadTimeout)


def test_a_callers_transport_still_stops_at_the_deadline_between_chunks() -> None:
    def forever() -> Any:
        while True:
            time.sleep(0.05)
            yield b" "

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=IterStream(forever()))

    with PdffillrClient(
        KEY,
        base_url="http://x.test",
        transport=httpx.MockTransport(handler),
        timeout=Timeout(5, total=0.5),
    ) as client:
        with pytest.raises(APITimeoutError, match="while reading the body"):
            client.sessions.list()


class IterStream(httpx.SyncByteStream):
    def __init__(self, chunks: Any) -> None:
        self._chunks = chunks

    def __iter__(self) -> Any:
        return iter(self._chunks)


@pytest.mark.parametrize("kind", KINDS)
def test_a_trickled_final_history_cannot_hold_a_blocks_exit_and_the_end_is_sent(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10's exit deadline against a server that trickles (not one that hangs): every
    byte would restart a read timeout, so only the wall-clock deadline ends the final fetch.
    For ``Session`` and ``AsyncSession`` (``tests/_blocks.py``)."""
    from pdffillr_sessions import _lifecycle as session_module

    monkeypatch.setattr(session_module, "FINAL_MIRROR_DEADLINE", TOTAL)
    server = RawServer(lambda conn: None)

    def reply(conn: socket.socket) -> None:
        line = server.requests[-1].split(b"\r\n", 1)[0]
        if line.startswith(b"GET ") and line.split()[1].endswith(b"/messages"):
            head = response_head(200, {"Content-Length": "2"})  # headers a byte at a time
            trickle(conn, head + b"[]", TRICKLE_EVERY, server.stopping)
            return
        answer = json.dumps(
            dict(SESSION, status="ended") if line.endswith(b"/end HTTP/1.1") else SESSION
        )
        send_body(answer.encode())(conn)

    server._reply = reply
    leaving: list[float] = []
    with server:
        run_block(
            kind,
            Block(after=lambda s: leaving.append(time.monotonic())),
            api_key=KEY,
            base_url=server.url,
            cache=tmp_path / "c.db",
        )
        took = time.monotonic() - leaving[0]
    assert took < TOTAL + MARGIN, took
    assert any(b"/sess_1/end " in head.split(b"\r\n", 1)[0] for head in server.requests)
