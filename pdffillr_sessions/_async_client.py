"""The asynchronous client: ``httpx.AsyncClient`` and an awaited retry loop.

Everything but the I/O is shared with ``PdffillrClient``: configuration and the calls
(``_base``), what to retry and how long to wait (``_retry``), how bodies are read (``_models``).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from . import _base, _contract
from ._base import Call, FileInput, Timeout, new_idempotency_key
from ._exceptions import APITimeoutError
from ._models import HistoryEntry, SessionInfo
from ._retry import RetryPolicy, run_with_retries_async

__all__ = ["AsyncPdffillrClient", "AsyncSessionsResource"]

T = TypeVar("T")


class AsyncPdffillrClient:
    """The async twin of ``PdffillrClient``: same arguments, same errors, same retries.

    ``async with AsyncPdffillrClient() as client: await client.sessions.create()``.
    ``sleep`` replaces ``asyncio.sleep`` between retries (an async callable).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int = 2,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._config = _base.resolve_config(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
        )
        self._sleep = sleep or asyncio.sleep
        self._http = httpx.AsyncClient(
            base_url=self._config.base_url,
            headers=self._config.headers,
            timeout=self._config.timeout.for_attempt(None),
            transport=transport,
            follow_redirects=False,
        )
        self.sessions = AsyncSessionsResource(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def key_scope(self) -> str:
        """The one-way fingerprint of the key that scopes cached rows (never the key)."""
        return self._config.key_scope

    def __repr__(self) -> str:
        return f"AsyncPdffillrClient(base_url={self.base_url!r}, key_scope={self.key_scope!r})"

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def __aenter__(self) -> AsyncPdffillrClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def run(self, call: Call[T]) -> T:
        """Run one ``Call`` with retries (one Idempotency-Key for all its attempts)."""
        headers: dict[str, str] = {}
        if not call.idempotent or call.idempotency_key is not None:
            headers[_contract.IDEMPOTENCY_HEADER] = call.idempotency_key or new_idempotency_key()
        timeout = self._config.timeout
        deadline = None if timeout.total is None else time.monotonic() + timeout.total

        async def attempt(number: int) -> httpx.Response:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise APITimeoutError(
                    f"{call.method} {call.path}: the total timeout of {timeout.total} s ran out",
                    method=call.method,
                    url=call.path,
                )
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    files=call.files,
                    headers=headers,
                    timeout=timeout.for_attempt(remaining),
                )
            except httpx.TransportError as exc:
                raise _base.transport_error(exc, call.method, call.path) from exc
            return _base.check_response(response, call.method, call.path)

        try:
            response = await run_with_retries_async(
                attempt,
                sleep=self._sleep,
                policy=self._config.retry_policy,
                max_retries=self._config.max_retries,
                describe=f"{call.method} {call.path}",
                deadline=deadline,
            )
        except call.done_on:
            return call.parse(b"")
        return call.parse(response.content)


class AsyncSessionsResource:
    """``client.sessions`` of the async client."""

    def __init__(self, client: AsyncPdffillrClient) -> None:
        self._client = client

    async def create(
        self, title: str | None = None, *, idempotency_key: str | None = None
    ) -> SessionInfo:
        """Open a new, empty session; ``idempotency_key`` makes it replayable."""
        return await self._client.run(_base.create_call(title, idempotency_key))

    async def list(self) -> builtins.list[SessionInfo]:
        """Every session under this key, newest first."""
        return await self._client.run(_base.list_call())

    async def end(self, session_id: str) -> None:
        """End the session; ending one that has already ended is not an error."""
        return await self._client.run(_base.end_call(session_id))

    async def messages(self, session_id: str) -> builtins.list[HistoryEntry]:
        """The session's whole history, oldest first."""
        return await self._client.run(_base.messages_call(session_id))

    async def send(self, session_id: str, content: str) -> builtins.list[HistoryEntry]:
        """Send a message; returns the entries it appended."""
        return await self._client.run(_base.send_call(session_id, content))

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
            _base.attach_call(
                session_id, file=file, url=url, filename=filename, content_type=content_type
            )
        )
