"""What one logical request needs around its HTTP exchanges, minus the I/O itself.

The sync and async ``request()`` loops differ only in ``await``: refusing a closed client, the
Idempotency-Key made once before the retries, the total deadline, each attempt's timeout, the
body reader (``_body``) and turning an exchange into a 2xx response or a typed error are all
plain functions here, so both loops make the very same decisions.

Everything that leaves an attempt is made safe here: the key is redacted from server text
(bodies, headers, transport error messages), and an httpx error kept as ``__cause__`` keeps its
stack but not the local variables of its frames (``scrub``): an httpx or h11 frame may hold the
request's headers, and error trackers and ``pytest --showlocals`` print every frame's locals.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING

import httpx

from . import _contract
from ._body import BodyReader
from ._calls import new_idempotency_key
from ._config import Timeout
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ClientClosedError,
    escape_controls,
)
from ._responses import error_from_response
from ._secret import Secret

if TYPE_CHECKING:
    from ._options import CallSettings

__all__ = [
    "HeaderPairs",
    "QueryPairs",
    "answer",
    "as_response",
    "attempt_timeout",
    "body_reader",
    "deadline_of",
    "ensure_open",
    "idempotency_headers",
    "request_headers",
    "scrub",
    "transport_error",
]

logger = logging.getLogger("pdffillr_sessions")

#: A request's headers, in order (later ones win, names compared case-insensitively).
HeaderPairs = tuple[tuple[str, str], ...]
#: A request's query parameters.
QueryPairs = tuple[tuple[str, str | int | float], ...]

#: Headers that describe the bytes on the wire, not the decoded body ``answer`` hands back.
_WIRE_HEADERS_BYTES = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


def ensure_open(is_closed: bool, name: str) -> None:
    """Refuse a call on a closed client before anything is sent."""
    if is_closed:
        raise ClientClosedError(f"this {name} has been closed: make a new one (nothing was sent)")


def idempotency_headers(idempotent: bool, idempotency_key: str | None) -> dict[str, str]:
    """The headers of a logical call, made once before its retry loop."""
    if idempotent and idempotency_key is None:
        return {}
    return {_contract.IDEMPOTENCY_HEADER: idempotency_key or new_idempotency_key()}


def request_headers(
    settings: CallSettings, idempotent: bool, idempotency_key: str | None
) -> HeaderPairs:
    """Every header of a logical call but ``Authorization`` (the auth writes it): the client's,
    the caller's, and the Idempotency-Key made once before the retry loop (no option can set
    one: ``_options.RESERVED_HEADERS``)."""
    extra = idempotency_headers(idempotent, idempotency_key)
    if not extra:
        return settings.headers
    return settings.headers + tuple(extra.items())


def deadline_of(timeout: Timeout, now: float) -> float | None:
    """The monotonic time by which the whole call must be done, if ``timeout.total`` is set."""
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


def body_reader(
    response: httpx.Response,
    *,
    max_response_bytes: int,
    deadline: float | None,
    method: str,
    path: str,
) -> BodyReader:
    """The reader of this response's body. A response the transport built from bytes (a mock)
    is already read and decoded; a streamed one is decoded by the reader itself."""
    return BodyReader(
        status_code=response.status_code,
        headers=response.headers,
        max_response_bytes=max_response_bytes,
        deadline=deadline,
        method=method,
        path=path,
        decoded=response.is_stream_consumed,
    )


def answer(
    response: httpx.Response, reader: BodyReader, secret: Secret, method: str, path: str
) -> bytes:
    """The decoded, bounded, redacted body of a 2xx response; else the typed error.

    The body reader's error (over the cap, undecodable, out of time) wins over the status.
    Logged at DEBUG: the method, the path (never the query) and the status, nothing else.
    """
    logger.debug("%s %s: HTTP %d", method, path, response.status_code)
    body = secret.redact_bytes(reader.finish())
    if reader.error is not None:
        raise reader.error
    if not response.is_success:
        raise error_from_response(
            response.status_code,
            response.headers,
            body,
            method=method,
            url=path,
            secret=secret,
            note=None if reader.stopped is None else f"body not read to its end: {reader.stopped}",
        )
    return body


def as_response(response: httpx.Response, body: bytes, secret: Secret) -> httpx.Response:
    """What ``request()`` hands back: the 2xx response with its decoded body, the headers that
    describe wire bytes dropped and the key redacted from the others."""
    raw = response.headers.raw
    if any(secret.redact_bytes(v) is not v for _, v in raw):  # rare: a header echoes the key
        raw = [(k, secret.redact_bytes(v)) for k, v in raw]
    headers = [(k, v) for k, v in raw if k.lower() not in _WIRE_HEADERS_BYTES]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions={
            k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")
        },
    )


#: Failures before a connection exists: no byte of the request can have left the machine.
_BEFORE_CONNECTING = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def transport_error(
    exc: httpx.TransportError, method: str, path: str, secret: Secret
) -> APIConnectionError:
    """Our error for an httpx transport failure (the caller chains it as ``__cause__``).

    Its message may quote what the server sent (an illegal header line): the key is redacted
    and control characters escaped, here and in the httpx error itself (``scrub``).
    """
    scrub(exc, secret)
    sent = not isinstance(exc, _BEFORE_CONNECTING)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{method} {path}: timed out ({type(exc).__name__})",
            method=method,
            url=path,
            request_sent=sent,
        )
    detail = escape_controls(secret.redact(str(exc)))[:500]
    return APIConnectionError(
        f"{method} {path}: connection failed ({type(exc).__name__}: {detail})",
        method=method,
        url=path,
        request_sent=sent,
    )


def scrub(exc: BaseException, secret: Secret) -> None:
    """Make an exception (and its causes and contexts) safe to show or to send to a tracker.

    Every frame its traceback passed through that has finished (httpx, httpcore, h11: whatever
    ran below the attempt) loses its local variables, which may hold the request's headers;
    the stack itself (files, lines) stays. The key is redacted from every string argument.
    Frames still running (the attempt's own, its callers) are left alone.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if any(isinstance(a, str) for a in current.args):
            current.args = tuple(
                secret.redact(a) if isinstance(a, str) else a for a in current.args
            )
        tb = current.__traceback__
        while tb is not None:
            with suppress(RuntimeError):  # RuntimeError: still executing (ours, our callers')
                tb.tb_frame.clear()
            tb = tb.tb_next
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
