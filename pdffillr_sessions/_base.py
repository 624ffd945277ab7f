"""What the sync and async clients share: configuration, and every call as a plain value.

A ``Call`` says what to send (method, path, body, whether it needs an Idempotency-Key) and how to
read the answer. Building one is pure (no I/O but reading an upload once); the clients only run
it through their retry loop. Adding an endpoint is one function here, used by both clients.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import attrs
import httpx

from . import _contract
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    ConfigurationError,
    InvalidInputError,
    SessionEndedError,
)
from ._models import HistoryEntry, SessionInfo, parse_entries, parse_session, parse_sessions
from ._responses import decode_body, error_from_response
from ._retry import RetryPolicy
from ._scope import key_scope
from ._version import __version__

T = TypeVar("T")

FileInput = str | os.PathLike[str] | bytes | IO[bytes]


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


@attrs.frozen(kw_only=True)
class ClientConfig:
    """A client's resolved settings. The key is kept out of ``repr`` and equality output."""

    api_key: str = attrs.field(repr=False)
    base_url: str
    timeout: Timeout
    max_retries: int
    retry_policy: RetryPolicy

    @property
    def key_scope(self) -> str:
        return key_scope(self.api_key)

    @property
    def headers(self) -> dict[str, str]:
        return {
            _contract.AUTH_HEADER: f"{_contract.AUTH_SCHEME} {self.api_key}",
            "User-Agent": f"pdffillr-sessions/{__version__} httpx/{httpx.__version__}",
            "Accept": "application/json",
        }


def resolve_config(
    api_key: str | None,
    *,
    base_url: str | None,
    timeout: float | Timeout | None,
    max_retries: int,
    retry_policy: RetryPolicy | None,
) -> ClientConfig:
    """Arguments first, then ``PDFFILLR_API_KEY`` / ``PDFFILLR_BASE_URL``, then the defaults."""
    key = api_key if api_key is not None else os.environ.get(_contract.ENV_API_KEY)
    if not key:
        raise ConfigurationError(
            f"No API key: pass api_key=... or set the {_contract.ENV_API_KEY} environment variable."
        )
    if not isinstance(key, str) or not key.isascii() or not key.isprintable() or " " in key:
        # A header value must be printable ASCII; the key is never echoed, not even in part.
        raise ConfigurationError(
            "The API key is malformed (it must be printable ASCII with no whitespace); "
            "its value is not shown."
        )
    url = base_url or os.environ.get(_contract.ENV_BASE_URL) or _contract.DEFAULT_BASE_URL
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
    if parsed.query or parsed.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment, got {url!r}")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError("max_retries must be an integer >= 0")
    if not isinstance(timeout, Timeout):
        try:
            timeout = Timeout() if timeout is None else Timeout(float(timeout))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds ({exc})"
            ) from None
    return ClientConfig(
        api_key=key,
        base_url=str(parsed).rstrip("/"),
        timeout=timeout,
        max_retries=max_retries,
        retry_policy=retry_policy or RetryPolicy(),
    )


class ConfiguredClient:
    """The read-only view of a client's settings, shared by the sync and async clients."""

    _config: ClientConfig

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def timeout(self) -> Timeout:
        return self._config.timeout

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._config.retry_policy

    @property
    def key_scope(self) -> str:
        """The one-way fingerprint of the key that scopes cached rows (never the key)."""
        return self._config.key_scope

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, key_scope={self.key_scope!r})"

    def _http_options(self) -> dict[str, Any]:
        """The options of the one httpx client (sync or async) a client holds."""
        return {
            "base_url": self._config.base_url,
            "headers": self._config.headers,
            "timeout": self._config.timeout.for_attempt(None),
            "follow_redirects": False,
        }


def ensure_open(is_closed: bool, name: str) -> None:
    if is_closed:
        raise ClientClosedError(f"this {name} has been closed: make a new one (nothing was sent)")


def idempotency_headers(idempotent: bool, idempotency_key: str | None) -> dict[str, str]:
    """The headers of a logical call, made once before its retry loop."""
    if idempotent and idempotency_key is None:
        return {}
    return {_contract.IDEMPOTENCY_HEADER: idempotency_key or new_idempotency_key()}


def deadline_of(timeout: Timeout, now: float) -> float | None:
    return None if timeout.total is None else now + timeout.total


def attempt_timeout(
    timeout: Timeout, deadline: float | None, now: float, method: str, path: str
) -> httpx.Timeout:
    """One attempt's httpx timeout, or ``APITimeoutError`` if the total already ran out."""
    remaining = None if deadline is None else deadline - now
    if remaining is not None and remaining <= 0:
        raise APITimeoutError(
            f"{method} {path}: the total timeout of {timeout.total} s ran out",
            method=method,
            url=path,
        )
    return timeout.for_attempt(remaining)


# -- mapping one exchange to a value or an error ---------------------------------------------


def transport_error(exc: httpx.TransportError, method: str, path: str) -> APIConnectionError:
    """Our error for an httpx transport failure (the caller chains it as ``__cause__``)."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{method} {path}: timed out ({type(exc).__name__})", method=method, url=path
        )
    return APIConnectionError(
        f"{method} {path}: connection failed ({type(exc).__name__}: {exc})",
        method=method,
        url=path,
    )


def check_response(response: httpx.Response, method: str, path: str) -> httpx.Response:
    """The response if it is a 2xx, else its typed ``APIStatusError``."""
    if response.is_success:
        return response
    raise error_from_response(
        response.status_code, response.headers, response.content, method=method, url=path
    )


# -- the calls -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Call(Generic[T]):
    """One logical API call: what to send, and how to read a successful answer.

    ``idempotent=False`` calls get one Idempotency-Key per logical call (``idempotency_key`` or
    a fresh one), reused on every retry. ``done_on`` lists errors that mean the call's goal is
    already reached (ending an ended session): ``parse(b"")`` is returned for them.
    """

    method: str
    path: str
    parse: Callable[[bytes], T]
    json: Any = None
    files: Mapping[str, Any] | None = None
    idempotent: bool = True
    idempotency_key: str | None = None
    done_on: tuple[type[APIStatusError], ...] = ()


def new_idempotency_key() -> str:
    """A fresh key for one logical non-idempotent call."""
    return f"pfs_{uuid.uuid4().hex}"


def validate_session_id(session_id: object) -> str:
    """Refuse ids that cannot be one path segment; everything else is encoded, never parsed."""
    if not isinstance(session_id, str):
        raise InvalidInputError(f"session_id must be a string, got {type(session_id).__name__}")
    if session_id in ("", ".", ".."):
        raise InvalidInputError(f"session_id {session_id!r} is not a valid session id")
    return session_id


def _encodable(text: str, what: str) -> str:
    """Refuse text that cannot be sent as UTF-8 (lone surrogates), before any request."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode text (a lone surrogate at position {exc.start})"
        ) from None
    return text


def validate_title(title: object) -> str | None:
    """A title is a string or None; anything else is refused before any request or write."""
    if title is not None and not isinstance(title, str):
        raise InvalidInputError(f"title must be a string or None, got {type(title).__name__}")
    return None if title is None else _encodable(title, "title")


def create_call(title: str | None, idempotency_key: str | None) -> Call[SessionInfo]:
    body = {} if validate_title(title) is None else {"title": title}
    return Call(
        method="POST",
        path=_contract.SESSIONS_PATH,
        json=body,
        idempotent=False,
        idempotency_key=idempotency_key,
        parse=lambda c: parse_session(decode_body(c, what="create"), what="created session"),
    )


def list_call() -> Call[list[SessionInfo]]:
    return Call(
        method="GET",
        path=_contract.SESSIONS_PATH,
        parse=lambda c: parse_sessions(decode_body(c, what="sessions list")),
    )


def end_call(session_id: str) -> Call[None]:
    return Call(
        method="POST",
        path=_contract.end_path(validate_session_id(session_id)),
        parse=lambda c: None,
        done_on=(SessionEndedError,),
    )


def messages_call(session_id: str) -> Call[list[HistoryEntry]]:
    sid = validate_session_id(session_id)
    return Call(
        method="GET",
        path=_contract.messages_path(sid),
        parse=lambda c: parse_entries(decode_body(c, what="history"), session_id=sid),
    )


def send_call(session_id: str, content: str) -> Call[list[HistoryEntry]]:
    sid = validate_session_id(session_id)
    if not isinstance(content, str):
        raise InvalidInputError(f"content must be a string, got {type(content).__name__}")
    if not content:
        raise InvalidInputError("content must not be empty")
    _encodable(content, "content")
    return Call(
        method="POST",
        path=_contract.messages_path(sid),
        json={"content": content},
        idempotent=False,
        parse=lambda c: parse_entries(
            decode_body(c, what="send"), session_id=sid, what="sent entries"
        ),
    )


def attach_call(
    session_id: str,
    *,
    file: FileInput | None,
    url: str | None,
    filename: str | None,
    content_type: str,
) -> Call[list[HistoryEntry]]:
    sid = validate_session_id(session_id)
    if (file is None) == (url is None):
        raise InvalidInputError("attach needs exactly one of file= or url=")

    def parse(c: bytes) -> list[HistoryEntry]:
        return parse_entries(decode_body(c, what="attach"), session_id=sid, what="attached entries")

    path = _contract.documents_path(sid)
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInputError("url must be an http(s) URL")
        _encodable(url, "url")
        return Call(method="POST", path=path, json={"url": url}, idempotent=False, parse=parse)
    data, name = read_upload(file, filename)
    _encodable(content_type, "content_type")
    return Call(
        method="POST",
        path=path,
        files={"file": (name, data, content_type)},
        idempotent=False,
        parse=parse,
    )


def read_upload(file: FileInput | None, filename: str | None) -> tuple[bytes, str]:
    """The bytes and name of an upload, read once so every retry sends the same payload."""
    if filename is not None:
        _encodable(filename, "filename")
    if isinstance(file, bytes):
        return file, filename or "document.pdf"
    if isinstance(file, (str, os.PathLike)):
        p = Path(file)
        try:
            return p.read_bytes(), filename or _display_name(p.name)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {str(p)!r}: {exc.strerror}") from exc
    if file is not None and hasattr(file, "read"):
        data = file.read()
        if not isinstance(data, bytes):
            raise InvalidInputError("file must be opened in binary mode")
        name = filename or _display_name(Path(str(getattr(file, "name", "document.pdf"))).name)
        return data, name
    raise InvalidInputError("file must be a path, bytes or a binary file object")


def _display_name(name: str) -> str:
    """A file name as UTF-8 text: undecodable bytes of a POSIX name become U+FFFD."""
    return os.fsencode(name).decode("utf-8", errors="replace")
