"""The synchronous client: configuration, one reused ``httpx.Client``, and the sessions calls.

Only the I/O loop lives here. What to retry and how long to wait (``_retry``), how a body is
parsed (``_models``) and how an error answer becomes an exception (``_responses``) are plain
functions that an async twin can share.
"""

from __future__ import annotations

import builtins
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import attrs
import httpx

from . import _contract
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    InvalidInputError,
    SessionEndedError,
)
from ._models import HistoryEntry, SessionInfo, parse_entries, parse_session, parse_sessions
from ._responses import decode_body, error_from_response
from ._retry import RetryPolicy, run_with_retries
from ._scope import key_scope
from ._version import __version__

__all__ = ["PdffillrClient", "RetryPolicy", "SessionsResource", "Timeout"]

logger = logging.getLogger("pdffillr_sessions")


@attrs.frozen
class Timeout:
    """Time limits for one call.

    ``request`` bounds each attempt (read, write, pool), ``connect`` bounds opening a connection,
    and ``total``, when set, bounds the whole call across every retry and backoff wait: the
    answer to per-attempt timeouts that multiply with retries.
    """

    request: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    connect: float = attrs.field(default=5.0, kw_only=True, validator=attrs.validators.gt(0))
    total: float | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(attrs.validators.gt(0)),
    )

    def for_attempt(self, remaining: float | None) -> httpx.Timeout:
        """The httpx timeout of one attempt, clipped to what remains of the total."""
        request = self.request if remaining is None else min(self.request, remaining)
        return httpx.Timeout(request, connect=min(self.connect, request))


def _validate_session_id(session_id: object) -> str:
    """Refuse ids that cannot be one path segment; everything else is encoded, never parsed."""
    if not isinstance(session_id, str):
        raise InvalidInputError(f"session_id must be a string, got {type(session_id).__name__}")
    if session_id in ("", ".", ".."):
        raise InvalidInputError(f"session_id {session_id!r} is not a valid session id")
    return session_id


def validate_title(title: object) -> str | None:
    """A title is a string or None; anything else is refused before any request or write."""
    if title is not None and not isinstance(title, str):
        raise InvalidInputError(f"title must be a string or None, got {type(title).__name__}")
    return title


def new_idempotency_key() -> str:
    """A fresh key for one logical non-idempotent call."""
    return f"pfs_{uuid.uuid4().hex}"


class PdffillrClient:
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
        key = api_key if api_key is not None else os.environ.get(_contract.ENV_API_KEY)
        if not key:
            raise ConfigurationError(
                "No API key: pass api_key=... or set the "
                f"{_contract.ENV_API_KEY} environment variable."
            )
        if not isinstance(key, str) or any(c.isspace() or ord(c) < 32 for c in key):
            raise ConfigurationError(
                "The API key is malformed (it must be a string with no whitespace or "
                "control characters); its value is not shown."
            )
        url = base_url or os.environ.get(_contract.ENV_BASE_URL) or _contract.DEFAULT_BASE_URL
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
        if isinstance(timeout, Timeout):
            self.timeout = timeout
        elif timeout is None:
            self.timeout = Timeout()
        else:
            self.timeout = Timeout(float(timeout))
        if max_retries < 0:
            raise ConfigurationError("max_retries must be >= 0")
        self.max_retries = max_retries
        self.retry_policy = retry_policy or RetryPolicy()
        self.base_url = str(parsed).rstrip("/")
        self.key_scope = key_scope(key)
        self._sleep = sleep or time.sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                _contract.AUTH_HEADER: f"{_contract.AUTH_SCHEME} {key}",
                "User-Agent": f"pdffillr-sessions/{__version__} httpx/{httpx.__version__}",
                "Accept": "application/json",
            },
            timeout=self.timeout.for_attempt(None),
            transport=transport,
            follow_redirects=False,
        )
        self.sessions = SessionsResource(self)

    def __repr__(self) -> str:
        return f"PdffillrClient(base_url={self.base_url!r}, key_scope={self.key_scope!r})"

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

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
        headers: dict[str, str] = {}
        if not idempotent or idempotency_key is not None:
            headers[_contract.IDEMPOTENCY_HEADER] = idempotency_key or new_idempotency_key()
        total = self.timeout.total
        deadline = None if total is None else time.monotonic() + total
        describe = f"{method} {path}"

        def attempt(number: int) -> httpx.Response:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise APITimeoutError(
                    f"{describe}: the total timeout of {total} s ran out",
                    method=method,
                    url=path,
                )
            return self._send_once(
                method,
                path,
                json=json,
                files=files,
                headers=headers,
                timeout=self.timeout.for_attempt(remaining),
            )

        return run_with_retries(
            attempt,
            policy=self.retry_policy,
            max_retries=self.max_retries,
            describe=describe,
            sleep=self._sleep,
            deadline=deadline,
        )

    def _send_once(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        files: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
    ) -> httpx.Response:
        try:
            response = self._http.request(
                method, path, json=json, files=files, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"{method} {path}: timed out ({type(exc).__name__})", method=method, url=path
            ) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"{method} {path}: connection failed ({type(exc).__name__}: {exc})",
                method=method,
                url=path,
            ) from exc
        if response.is_success:
            return response
        raise error_from_response(
            response.status_code,
            response.headers,
            response.content,
            method=method,
            url=path,
        )


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
        body = {} if validate_title(title) is None else {"title": title}
        response = self._client.request(
            "POST",
            _contract.SESSIONS_PATH,
            json=body,
            idempotent=False,
            idempotency_key=idempotency_key,
        )
        return parse_session(decode_body(response.content, what="create"), what="created session")

    def list(self) -> builtins.list[SessionInfo]:
        """Every session under this key, newest first."""
        response = self._client.request("GET", _contract.SESSIONS_PATH)
        return parse_sessions(decode_body(response.content, what="sessions list"))

    def end(self, session_id: str) -> None:
        """End the session; ending one that has already ended is not an error."""
        path = _contract.end_path(_validate_session_id(session_id))
        try:
            self._client.request("POST", path)
        except SessionEndedError:
            return

    def messages(self, session_id: str) -> builtins.list[HistoryEntry]:
        """The session's whole history, oldest first (allowed on ended sessions too)."""
        sid = _validate_session_id(session_id)
        response = self._client.request("GET", _contract.messages_path(sid))
        return parse_entries(
            decode_body(response.content, what="history"), session_id=sid, what="history"
        )

    def send(self, session_id: str, content: str) -> builtins.list[HistoryEntry]:
        """Send a message; returns the entries it appended (the message, the reply, ...)."""
        sid = _validate_session_id(session_id)
        if not isinstance(content, str):
            raise InvalidInputError(f"content must be a string, got {type(content).__name__}")
        if not content:
            raise InvalidInputError("content must not be empty")
        response = self._client.request(
            "POST", _contract.messages_path(sid), json={"content": content}, idempotent=False
        )
        return parse_entries(
            decode_body(response.content, what="send"), session_id=sid, what="sent entries"
        )

    def attach(
        self,
        session_id: str,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None = None,
        url: str | None = None,
        filename: str | None = None,
        content_type: str = "application/pdf",
    ) -> builtins.list[HistoryEntry]:
        """Attach a document by upload (``file``: a path, bytes or a binary file) or by ``url``."""
        sid = _validate_session_id(session_id)
        if (file is None) == (url is None):
            raise InvalidInputError("attach needs exactly one of file= or url=")
        path = _contract.documents_path(sid)
        if url is not None:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise InvalidInputError("url must be an http(s) URL")
            response = self._client.request("POST", path, json={"url": url}, idempotent=False)
        else:
            data, name = _read_upload(file, filename)
            response = self._client.request(
                "POST",
                path,
                files={"file": (name, data, content_type)},
                idempotent=False,
            )
        return parse_entries(
            decode_body(response.content, what="attach"), session_id=sid, what="attached entries"
        )


def _read_upload(
    file: str | os.PathLike[str] | bytes | IO[bytes] | None, filename: str | None
) -> tuple[bytes, str]:
    """The bytes and name of an upload, read once so every retry sends the same payload."""
    if isinstance(file, bytes):
        return file, filename or "document.pdf"
    if isinstance(file, (str, os.PathLike)):
        p = Path(file)
        try:
            return p.read_bytes(), filename or p.name
        except OSError as exc:
            raise InvalidInputError(f"cannot read {str(p)!r}: {exc.strerror}") from exc
    if file is not None and hasattr(file, "read"):
        data = file.read()
        if not isinstance(data, bytes):
            raise InvalidInputError("file must be opened in binary mode")
        name = filename or Path(str(getattr(file, "name", "document.pdf"))).name
        return data, name
    raise InvalidInputError("file must be a path, bytes or a binary file object")
