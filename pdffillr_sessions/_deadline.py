"""A wall-clock deadline that every network wait of a call respects, a trickling server included.

httpx's timeouts are per operation: a read timeout restarts with every byte, so a server that
sends one byte every two seconds holds a call for as long as it likes, in its headers as in its
body. ``Timeout(total=...)`` must bound the whole call, so the client's connection pools get a
network backend (``DeadlineBackend`` / ``AsyncDeadlineBackend``) whose streams clip the timeout
of every connect, TLS handshake, read and write to what remains of the current call's deadline,
and fail at once when none remains. The deadline travels in a ``ContextVar`` set around each
attempt (``bound``): each thread and each asyncio task sees only its own call's deadline, even
over a connection another call opened.

``clip`` is the one decision (pure); the backends only apply it. ``install`` puts the backends
into the pools httpx built (its default transport and any proxy mounts): httpx has no public
argument for a network backend, so this reaches one private attribute per pool, and reports
whether it could (``tests/test_hostile_server.py`` fails if an httpx upgrade moves it). The pools
of a caller's ``http_client`` are wrapped the same way (its proxies' included); a transport
passed by the caller is left alone; the body reader still checks the deadline between chunks.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

__all__ = ["AsyncDeadlineBackend", "DeadlineBackend", "bound", "clip", "current", "install"]

_DEADLINE: ContextVar[float | None] = ContextVar("pdffillr_sessions_deadline", default=None)


def current() -> float | None:
    """The ``time.monotonic()`` deadline of the call running in this thread or task, if any."""
    return _DEADLINE.get()


@contextmanager
def bound(deadline: float | None) -> Iterator[None]:
    """Every network wait inside the block ends by ``deadline`` (None: no deadline)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def clip(
    timeout: float | None, deadline: float | None, now: float, error: type[Exception]
) -> float | None:
    """``timeout`` shortened to what remains before ``deadline``; ``error`` when nothing does.

    ``error`` is the httpcore timeout of the operation (``ReadTimeout``, ...): httpx turns it
    into its own, and the client into ``APITimeoutError``, like any other timeout.
    """
    if deadline is None:
        return timeout
    remaining = deadline - now
    if remaining <= 0:
        raise error("the call's total timeout ran out")
    return remaining if timeout is None else min(timeout, remaining)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ReadTimeout)
        return self._inner.read(max_bytes, limit)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.WriteTimeout)
        self._inner.write(buffer, limit)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, limit))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """A sync network backend whose every wait respects the current call's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, limit, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, limit, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ReadTimeout)
        return await self._inner.read(max_bytes, limit)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.WriteTimeout)
        await self._inner.write(buffer, limit)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ConnectTimeout)
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, limit))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class AsyncDeadlineBackend(httpcore.AsyncNetworkBackend):
    """The async twin of ``DeadlineBackend``."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ConnectTimeout)
        return _AsyncStream(
            await self._inner.connect_tcp(host, port, limit, local_address, socket_options)
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        limit = clip(timeout, _DEADLINE.get(), time.monotonic(), httpcore.ConnectTimeout)
        return _AsyncStream(await self._inner.connect_unix_socket(path, limit, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def install(http: httpx.Client | httpx.AsyncClient) -> int:
    """Wrap the network backend of every connection pool ``http`` built; returns how many.

    0 means the pools were not found (a caller's own transport, or an httpx that moved them):
    the deadline then holds between body chunks only. ``http`` may be a caller's own client
    (``http_client=``): the wrappers change nothing outside this library's calls, since they
    clip only while ``bound`` has set a deadline.
    """
    transports: list[Any] = [getattr(http, "_transport", None)]
    transports += list(getattr(http, "_mounts", {}).values())
    wrapped = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, DeadlineBackend | AsyncDeadlineBackend):
            wrapped += 1  # a caller's http_client given to two clients: wrapped once
        elif isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = DeadlineBackend(backend)  # type: ignore[union-attr]
            wrapped += 1
        elif isinstance(backend, httpcore.AsyncNetworkBackend):
            pool._network_backend = AsyncDeadlineBackend(backend)  # type: ignore[union-attr]
            wrapped += 1
    return wrapped
