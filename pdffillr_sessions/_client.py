"""The synchronous client: one reused ``httpx.Client`` and the retry loop around it.

Only I/O lives here. Settings (``_settings``, ``_config``), the calls and how their answers are
read (``_calls``), what one exchange needs (``_exchange``), what to retry and how long to wait
(``_retry``) are shared with ``AsyncPdffillrClient``, whose loop has exactly this shape.
"""

from __future__ import annotations

import builtins
import copy
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import httpx

from . import _calls, _exchange
from ._calls import Call
from ._config import Timeout
from ._models import HistoryEntry, SessionInfo
from ._retry import RetryPolicy, run_with_retries
from ._settings import ConfiguredClient
from ._uploads import FileInput

__all__ = ["PdffillrClient", "RetryPolicy", "SessionsResource", "Timeout"]

T = TypeVar("T")


class PdffillrClient(ConfiguredClient[httpx.Client]):
    """A client for the Pdffillr chat-sessions API.

    Make one at start-up and reuse it (it holds one connection pool); close it with ``close()``
    or a ``with`` block. The API key comes from ``api_key`` or ``PDFFILLR_API_KEY`` and is never
    shown in a repr, a log line or an exception.

    ``sleep`` replaces ``time.sleep`` between retries: pass ``lambda s: None`` in tests.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeout | None = None,
        max_retries: int = 2,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
        )
        self._sleep = sleep or time.sleep
        self._http = httpx.Client(transport=transport, **self._http_options())
        self.sessions = SessionsResource(self)

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self._http.close()

    def __enter__(self) -> PdffillrClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the one I/O loop -------------------------------------------------------------------

    def request(
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
        """
        _exchange.ensure_open(self._http.is_closed, type(self).__name__)
        headers = _exchange.idempotency_headers(idempotent, idempotency_key)
        timeout = self.timeout
        deadline = _exchange.deadline_of(timeout, time.monotonic())

        def attempt(number: int) -> httpx.Response:
            limits = _exchange.attempt_timeout(timeout, deadline, time.monotonic(), method, path)
            try:
                response = self._http.request(
                    method, path, json=json, files=files, headers=headers, timeout=limits
                )
            except httpx.TransportError as exc:
                raise _exchange.transport_error(exc, method, path) from exc
            return _exchange.check_response(response, method, path)

        return run_with_retries(
            attempt,
            sleep=self._sleep,
            policy=self.retry_policy,
            max_retries=self.max_retries,
            describe=f"{method} {path}",
            deadline=deadline,
        )

    def run(self, call: Call[T]) -> T:
        """Run one ``Call`` (see ``_calls``) and read its answer."""
        try:
            response = self.request(
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

    def _with_timeout(self, timeout: Timeout) -> PdffillrClient:
        """This client with other time limits, sharing its connection pool (never close it):
        how a with-block's exit bounds its final calls whatever the client's own ``Timeout``."""
        clone = copy.copy(self)
        clone._config = attrs.evolve(self._config, timeout=timeout)
        clone.sessions = SessionsResource(clone)
        return clone


class SessionsResource:
    """``client.sessions``: the calls of the seed's ``client.sdk.chat.sessions``."""

    def __init__(self, client: PdffillrClient) -> None:
        self._client = client

    def create(
        self, title: str | None = None, *, idempotency_key: str | None = None
    ) -> SessionInfo:
        """Open a new, empty session (``POST /v1/sdk/chat/sessions``).

        Pass ``idempotency_key`` to make the create replayable: the same key gives back the same
        session instead of a second one (``Session`` records it before sending, for recovery).
        """
        return self._client.run(_calls.create_call(title, idempotency_key))

    def list(self) -> builtins.list[SessionInfo]:
        """Every session under this key, newest first."""
        return self._client.run(_calls.list_call())

    def end(self, session_id: str) -> None:
        """End the session; ending one that has already ended is not an error."""
        return self._client.run(_calls.end_call(session_id))

    def messages(self, session_id: str) -> builtins.list[HistoryEntry]:
        """The session's whole history, oldest first (allowed on ended sessions too)."""
        return self._client.run(_calls.messages_call(session_id))

    def send(self, session_id: str, content: str) -> builtins.list[HistoryEntry]:
        """Send a message; returns the entries it appended (the message, the reply, ...)."""
        return self._client.run(_calls.send_call(session_id, content))

    def attach(
        self,
        session_id: str,
        *,
        file: FileInput | None = None,
        url: str | None = None,
        filename: str | None = None,
        content_type: str = "application/pdf",
    ) -> builtins.list[HistoryEntry]:
        """Attach a document by upload (``file``: a path, bytes or a binary file) or by ``url``."""
        return self._client.run(
            _calls.attach_call(
                session_id, file=file, url=url, filename=filename, content_type=content_type
            )
        )
