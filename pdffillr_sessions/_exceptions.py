"""The one exception hierarchy of the library.

``PdffillrError`` is the base of everything we raise on purpose. Transport failures keep the
httpx exception in ``__cause__``; status errors carry what the server said (type, message,
request id, body) and never the API key.
"""

from __future__ import annotations

import re
import signal
from typing import Any


class PdffillrError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigurationError(PdffillrError):
    """The client or cache was set up wrongly (no API key, bad option)."""


class ProtocolError(PdffillrError):
    """The server answered with a body that is not what the contract says."""


class InvalidInputError(PdffillrError, ValueError):
    """An argument was refused before any request (an empty session id, a non-string title)."""


class ClientClosedError(PdffillrError, RuntimeError):
    """A closed client was used: nothing was sent."""


class SessionStateError(PdffillrError, RuntimeError):
    """A ``Session`` was used out of order (entered twice, used before its block)."""


class CacheError(PdffillrError):
    """The local history cache cannot be used (corrupt, foreign, or a newer schema)."""


class CacheConnectionError(CacheError):
    """The cache's PostgreSQL server cannot be reached (refused, no such host or socket, timed
    out), or the connection to it was lost."""


class CacheAuthenticationError(CacheError):
    """The cache's PostgreSQL server refused the user or its password (which is never shown)."""


class CacheNotFoundError(CacheError):
    """The cache does not exist: no such PostgreSQL database (or no such file, read-only)."""


class OwnerLockLostError(CacheError):
    """A with-block's owner lock (its PostgreSQL lock connection) is gone: another machine's
    ``reap`` may end the session at any moment, so the block sends nothing more."""


class APIConnectionError(PdffillrError):
    """The request never got a complete answer: refused, reset, or cut short.

    ``request_sent`` is False only when no attempt of the call can have reached the server:
    every attempt failed to open a connection (refused, DNS failure, connect or pool timeout).
    True means the server may have acted (or that it cannot be known).
    """

    def __init__(
        self,
        message: str = "Connection error.",
        *,
        method: str = "",
        url: str = "",
        request_sent: bool = True,
    ):
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """The request, or the whole call with its retries, ran out of time."""

    def __init__(
        self,
        message: str = "Request timed out.",
        *,
        method: str = "",
        url: str = "",
        request_sent: bool = True,
    ):
        super().__init__(message, method=method, url=url, request_sent=request_sent)


class APIStatusError(PdffillrError):
    """The server answered with a non-2xx status.

    ``may_have_acted`` is False only when the server surely did not act on any attempt of the
    call: this answer is a refusal (4xx) and no earlier attempt may have been acted on (none
    timed out or was cut short after it was sent, none got a 5xx). A create retried after a lost
    reply and then refused with 429 may well have made its session.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_type: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.message = message
        self.status_code = status_code
        self.may_have_acted = status_code >= 500  # the retry loop adds earlier attempts
        self.error_type = error_type
        self.request_id = request_id
        self.body = body
        self.method = method
        self.url = url

    def __str__(self) -> str:
        parts = [f"{self.status_code}"]
        if self.error_type:
            parts.append(self.error_type)
        text = f"[{' '.join(parts)}] {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


class BadRequestError(APIStatusError):
    """400 or 422: the request was malformed (empty content, bad field)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such session under this key (another key's sessions are never visible)."""


class SessionEndedError(APIStatusError):
    """409: the session has ended and is read-only.

    Also raised locally, without a request, when a ``Session`` is used after its block.
    """


class RateLimitError(APIStatusError):
    """429: too many requests."""


class InternalServerError(APIStatusError):
    """>= 500: the server failed."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: SessionEndedError,
    422: BadRequestError,
    429: RateLimitError,
}


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived while a ``Session`` block ran: raised in the block, it unwinds
    it like ``KeyboardInterrupt`` (so the session is ended), and once the last block has exited
    the process dies of that signal (see ``_signals``).

    A ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(
            f"received {signal.Signals(signum).name}: the session is ended, then the process exits"
        )


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for a non-2xx status (pure: shared by sync and async clients)."""
    if status_code >= 500:
        return InternalServerError
    return _BY_STATUS.get(status_code, APIStatusError)


def one_line(message: object) -> str:
    """An error message as one line (a server's message may hold newlines), control
    characters shown as ``\\xNN``."""
    return escape_controls(" ".join(str(message).split())) or "unknown error"


#: C0 controls but tab and newline, DEL, C1 controls (U+0080-U+009F: U+009B is a CSI on some
#: terminals), the bidirectional overrides that reorder what a terminal shows, and lone
#: surrogates (a JSON ``\\ud800`` escape: no terminal, file or database can take one).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character (but tab and newline) as ``\\xNN``/``\\uNNNN``:
    server text in an error message, a log line or a terminal can never move the cursor,
    retitle the window or hide what follows."""
    return _CONTROLS.sub(_escaped, text)
