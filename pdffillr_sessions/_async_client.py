"""The asynchronous client: ``httpx.AsyncClient`` and an awaited retry loop.

Only I/O lives here, in the same shape as ``PdffillrClient``: ``request()`` is the one loop and
``run()`` reads a ``Call`` through it. Settings (``_settings``, ``_config``), the calls and how
their answers are read (``_calls``), what one exchange needs (``_exchange``), what to retry and
how long to wait (``_retry``) are shared; ``tests/test_client_surface.py`` keeps the two public
surfaces identical.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import httpx

from . import _calls, _deadline, _exchange
from ._body import DEFAULT_MAX_RESPONSE_BYTES, BodyReader
from ._calls import Call
from ._config import Timeout
from ._models import HistoryEntry, SessionInfo
from ._retry import RetryPolicy, run_with_retries_async
from ._secret import Secret
from ._settings import ConfiguredClient
from ._uploads import FileInput

__all__ = ["AsyncPdffillrClient", "AsyncSessionsResource"]

T = TypeVar("T")


class AsyncPdffillrClient(ConfiguredClient[httpx.AsyncClient]):
    """The async twin of ``PdffillrClient``: same arguments, same errors, same retries.

    ``async with AsyncPdffillrClient() as client: await client.sessions.create()``.
    ``sleep`` replaces ``asyncio.sleep`` between retries (an async callable).
    """

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int = 2,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        secret = None if api_key is None else Secret.of(api_key)  # no frame below holds the key
        del api_key
        super().__init__(
            secret,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
            max_response_bytes=max_response_bytes,
        )
        self._sleep = sleep or asyncio.sleep
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())
        self._deadline_pools = _deadline.install(self._http)
        self.sessions = AsyncSessionsResource(self)

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPdffillrClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the one I/O loop -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        files: Mapping[str, Any] | None = None,
        idempotent: bool = True,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send one logical request with retries and return its 2xx response.

        Non-idempotent calls (create, send, attach) get ONE ``Idempotency-Key`` made here, before
        the retry loop (or given as ``idempotency_key``), and sent unchanged on every attempt: a
        retry after a lost reply can never create a second session or send a message twice.
        The response's body is decoded, bounded and has the key redacted (see ``_body``).
        """
        response, body = await self._send(method, path, json, files, idempotent, idempotency_key)
        return _exchange.as_response(response, body, self._config.api_key)

    async def _send(
        self,
        method: str,
        path: str,
        json: Any,
        files: Mapping[str, Any] | None,
        idempotent: bool,
        idempotency_key: str | None,
    ) -> tuple[httpx.Response, bytes]:
        """The one I/O loop: the retries of one logical request; (its 2xx response, read and
        closed, and its decoded body)."""
        _exchange.ensure_open(self._http.is_closed, type(self).__name__)
        headers = _exchange.idempotency_headers(idempotent, idempotency_key)
        timeout = self.timeout
        deadline = _exchange.deadline_of(timeout, time.monotonic())
        secret = self._config.api_key

        async def attempt(number: int) -> tuple[httpx.Response, bytes]:
            limits = _exchange.attempt_timeout(timeout, deadline, time.monotonic(), method, path)
            try:
                with _deadline.bound(deadline):
                    return await self._exchange_once(
                        method, path, limits, deadline, json, files, headers
                    )
            except httpx.TransportError as exc:
                raise _exchange.transport_error(exc, method, path, secret) from exc
            except BaseException as exc:
                _exchange.scrub(exc, secret)
                raise

        return await run_with_retries_async(
            attempt,
            sleep=self._sleep,
            policy=self.retry_policy,
            max_retries=self.max_retries,
            describe=f"{method} {path}",
            deadline=deadline,
        )

    async def _exchange_once(
        self,
        method: str,
        path: str,
        limits: httpx.Timeout,
        deadline: float | None,
        json: Any,
        files: Mapping[str, Any] | None,
        headers: dict[str, str],
    ) -> tuple[httpx.Response, bytes]:
        """One HTTP exchange: send, stream the body through its reader, then the 2xx response
        and its body, or the typed error. Its frame is the only one holding the raw response
        (which may hold an echoed key); ``_send()`` scrubs it from any error that leaves."""
        request = self._http.build_request(
            method, path, json=json, files=files, headers=headers, timeout=limits
        )
        response = await self._http.send(request, stream=True)
        try:
            reader = _exchange.body_reader(
                response,
                max_response_bytes=self._config.max_response_bytes,
                deadline=deadline,
                method=method,
                path=path,
            )
            await _pump(reader, response)
        finally:
            await response.aclose()
        return response, _exchange.answer(response, reader, self._config.api_key, method, path)

    async def run(self, call: Call[T]) -> T:
        """Run one ``Call`` (see ``_calls``) through ``request()`` and read its answer."""
        try:
            response = await self.request(
                call.method,
                call.path,
                json=call.json,
                files=call.files,
                idempotent=call.idempotent,
                idempotency_key=call.idempotency_key,
            )
        except call.done_on:
            return call.parse(b"")
        return call.parse(response.content)

    def _with_timeout(self, timeout: Timeout) -> AsyncPdffillrClient:
        """This client with other time limits, sharing its connection pool (never close it):
        how an ``AsyncSession`` block's exit bounds its final calls (``PdffillrClient``'s twin)."""
        clone = copy.copy(self)
        clone._config = attrs.evolve(self._config, timeout=timeout)
        clone.sessions = AsyncSessionsResource(clone)
        return clone


async def _pump(reader: BodyReader, response: httpx.Response) -> None:
    """The async twin of ``_client._pump``."""
    if response.is_stream_consumed:
        reader.feed(response.content, time.monotonic())
        return
    async for chunk in response.aiter_raw():
        if not reader.feed(chunk, time.monotonic()):
            return


class AsyncSessionsResource:
    """``client.sessions`` of the async client."""

    def __init__(self, client: AsyncPdffillrClient) -> None:
        self._client = client

    async def create(
        self, title: str | None = None, *, idempotency_key: str | None = None
    ) -> SessionInfo:
        """Open a new, empty session; ``idempotency_key`` makes it replayable."""
        return await self._client.run(_calls.create_call(title, idempotency_key))

    async def list(self) -> builtins.list[SessionInfo]:
        """Every session under this key, newest first."""
        return await self._client.run(_calls.list_call())

    async def end(self, session_id: str) -> None:
        """End the session; ending one that has already ended is not an error."""
        return await self._client.run(_calls.end_call(session_id))

    async def messages(self, session_id: str) -> builtins.list[HistoryEntry]:
        """The session's whole history, oldest first."""
        return await self._client.run(_calls.messages_call(session_id))

    async def send(self, session_id: str, content: str) -> builtins.list[HistoryEntry]:
        """Send a message; returns the entries it appended."""
        return await self._client.run(_calls.send_call(session_id, content))

    async def attach(
        self,
        session_id: str,
        *,
        file: FileInput | None = None,
        url: str | None = None,
        filename: str | None = None,
        content_type: str = "application/pdf",
    ) -> builtins.list[HistoryEntry]:
        """Attach a document by upload or by URL."""
        return await self._client.run(
            _calls.attach_call(
                session_id, file=file, url=url, filename=filename, content_type=content_type
            )
        )
