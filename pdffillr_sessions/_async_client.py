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
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from . import _calls, _deadline, _exchange
from ._body import DEFAULT_MAX_RESPONSE_BYTES, BodyReader
from ._calls import Call
from ._config import Timeout
from ._models import HistoryEntry, SessionInfo
from ._options import CallSettings, HeaderSet
from ._pause import hold_for
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
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        secret = None if api_key is None else Secret.of(api_key)  # no frame below holds the key
        headers = HeaderSet.of(default_headers, "default_headers")  # nor a header's value
        del api_key, default_headers
        super().__init__(
            secret,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
            max_response_bytes=max_response_bytes,
            default_headers=headers,
        )
        self._sleep = sleep or asyncio.sleep
        self._http = self._open_http(http_client, transport, httpx.AsyncClient)
        self._bind_resources()

    def _bind_resources(self) -> None:
        self.sessions = AsyncSessionsResource(self)

    async def aclose(self) -> None:
        """Close the connection pool, if this client opened it (see ``PdffillrClient.close``).
        Idempotent."""
        self._closed = True
        if self._owns_http:
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
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> httpx.Response:
        """Send one logical request with retries and return its 2xx response.

        Non-idempotent calls (create, send, attach) get ONE ``Idempotency-Key`` made here, before
        the retry loop (or given as ``idempotency_key``), and sent unchanged on every attempt: a
        retry after a lost reply can never create a second session or send a message twice.
        The response's body is decoded, bounded and has the key redacted (see ``_body``).
        ``extra_headers``, ``extra_query``, ``timeout`` and ``max_retries`` apply to this call
        only (see ``_options``).
        """
        settings = self._call_settings(extra_headers, extra_query, timeout, max_retries)
        response, body = await self._send(
            method, path, json, files, idempotent, idempotency_key, settings
        )
        return _exchange.as_response(response, body, self._config.api_key)

    async def _send(
        self,
        method: str,
        path: str,
        json: Any,
        files: Mapping[str, Any] | None,
        idempotent: bool,
        idempotency_key: str | None,
        settings: CallSettings,
    ) -> tuple[httpx.Response, bytes]:
        """The one I/O loop: the retries of one logical request; (its 2xx response, read and
        closed, and its decoded body)."""
        _exchange.ensure_open(self.closed, type(self).__name__)
        headers = _exchange.request_headers(settings, idempotent, idempotency_key)
        timeout = settings.timeout
        deadline = _exchange.deadline_of(timeout, time.monotonic())
        secret = self._config.api_key
        url = self._config.base_url + path

        pause = self._pause

        async def attempt(number: int) -> tuple[httpx.Response, bytes]:
            if pause is not None:  # a pool that backs off together (``_pause``)
                await pause.wait_async(self._sleep)
            limits = _exchange.attempt_timeout(timeout, deadline, time.monotonic(), method, path)
            try:
                with _deadline.bound(deadline):
                    return await self._exchange_once(
                        method, url, path, limits, deadline, json, files, headers, settings.params
                    )
            except httpx.TransportError as exc:
                raise _exchange.transport_error(exc, method, path, secret) from exc
            except BaseException as exc:
                _exchange.scrub(exc, secret)
                if pause is not None:
                    hold_for(pause, exc, number, self.retry_policy)
                raise

        return await run_with_retries_async(
            attempt,
            sleep=self._sleep,
            policy=self.retry_policy,
            max_retries=settings.max_retries,
            describe=f"{method} {path}",
            deadline=deadline,
        )

    async def _exchange_once(
        self,
        method: str,
        url: str,
        path: str,
        limits: httpx.Timeout,
        deadline: float | None,
        json: Any,
        files: Mapping[str, Any] | None,
        headers: _exchange.HeaderPairs,
        params: _exchange.QueryPairs | None,
    ) -> tuple[httpx.Response, bytes]:
        """One HTTP exchange: send, stream the body through its reader, then the 2xx response
        and its body, or the typed error. Its frame is the only one holding the raw response
        (which may hold an echoed key); ``_send()`` scrubs it from any error that leaves."""
        request = self._http.build_request(
            method, url, json=json, files=files, headers=headers, params=params, timeout=limits
        )
        response = await self._http.send(
            request, stream=True, auth=self._auth, follow_redirects=False
        )
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

    async def run(
        self,
        call: Call[T],
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> T:
        """Run one ``Call`` (see ``_calls``) through ``request()`` and read its answer."""
        try:
            response = await self.request(
                call.method,
                call.path,
                json=call.json,
                files=call.files,
                idempotent=call.idempotent,
                idempotency_key=call.idempotency_key,
                extra_headers=extra_headers,
                extra_query=extra_query,
                timeout=timeout,
                max_retries=max_retries,
            )
        except call.done_on:
            return call.parse(b"")
        return call.parse(response.content)


async def _pump(reader: BodyReader, response: httpx.Response) -> None:
    """The async twin of ``_client._pump``."""
    if response.is_stream_consumed:
        reader.feed(response.content, time.monotonic())
        return
    async for chunk in response.aiter_raw():
        if not reader.feed(chunk, time.monotonic()):
            return


class AsyncSessionsResource:
    """``client.sessions`` of the async client: ``SessionsResource``'s calls, awaited.

    Every method also takes, for that call only (as openai-python's methods do):
    ``timeout`` (a number of seconds or a ``Timeout``; None: the client's), ``max_retries``
    (None: the client's), ``extra_headers`` and ``extra_query`` (sent after the client's own
    and ``default_headers``; ``Authorization``, ``Idempotency-Key`` and ``Accept-Encoding``
    are refused: see ``_options``).
    """

    def __init__(self, client: AsyncPdffillrClient) -> None:
        self._client = client

    async def create(
        self,
        title: str | None = None,
        *,
        idempotency_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> SessionInfo:
        """Open a new, empty session (``POST /v1/sdk/chat/sessions``).

        Pass ``idempotency_key`` to make the create replayable: the same key gives back the same
        session instead of a second one (``Session`` records it before sending, for recovery).
        """
        return await self._client.run(
            _calls.create_call(title, idempotency_key),
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def list(
        self,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> builtins.list[SessionInfo]:
        """Every session under this key, newest first."""
        return await self._client.run(
            _calls.list_call(),
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def end(
        self,
        session_id: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> None:
        """End the session; ending one that has already ended is not an error."""
        return await self._client.run(
            _calls.end_call(session_id),
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def messages(
        self,
        session_id: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> builtins.list[HistoryEntry]:
        """The session's whole history, oldest first (allowed on ended sessions too)."""
        return await self._client.run(
            _calls.messages_call(session_id),
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def send(
        self,
        session_id: str,
        content: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> builtins.list[HistoryEntry]:
        """Send a message; returns the entries it appended (the message, the reply, ...)."""
        return await self._client.run(
            _calls.send_call(session_id, content),
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def attach(
        self,
        session_id: str,
        *,
        file: FileInput | None = None,
        url: str | None = None,
        filename: str | None = None,
        content_type: str = "application/pdf",
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
    ) -> builtins.list[HistoryEntry]:
        """Attach a document by upload (``file``: a path, bytes or a binary file) or by ``url``."""
        return await self._client.run(
            _calls.attach_call(
                session_id, file=file, url=url, filename=filename, content_type=content_type
            ),
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            max_retries=max_retries,
        )
