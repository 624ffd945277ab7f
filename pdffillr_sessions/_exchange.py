"""What one logical request needs around its HTTP exchanges, minus the I/O itself.

The sync and async ``request()`` loops differ only in ``await``: refusing a closed client, the
Idempotency-Key made once before the retries, the total deadline, each attempt's timeout, and
turning an exchange into a 2xx response or a typed error are all plain functions here, so both
loops make the very same decisions.
"""

from __future__ import annotations

import httpx

from . import _contract
from ._calls import new_idempotency_key
from ._config import Timeout
from ._exceptions import APIConnectionError, APITimeoutError, ClientClosedError
from ._responses import error_from_response

__all__ = [
    "attempt_timeout",
    "check_response",
    "deadline_of",
    "ensure_open",
    "idempotency_headers",
    "transport_error",
]


def ensure_open(is_closed: bool, name: str) -> None:
    """Refuse a call on a closed client before anything is sent."""
    if is_closed:
        raise ClientClosedError(f"this {name} has been closed: make a new one (nothing was sent)")


def idempotency_headers(idempotent: bool, idempotency_key: str | None) -> dict[str, str]:
    """The headers of a logical call, made once before its retry loop."""
    if idempotent and idempotency_key is None:
        return {}
    return {_contract.IDEMPOTENCY_HEADER: idempotency_key or new_idempotency_key()}


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


#: Failures before a connection exists: no byte of the request can have left the machine.
_BEFORE_CONNECTING = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def transport_error(exc: httpx.TransportError, method: str, path: str) -> APIConnectionError:
    """Our error for an httpx transport failure (the caller chains it as ``__cause__``)."""
    sent = not isinstance(exc, _BEFORE_CONNECTING)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{method} {path}: timed out ({type(exc).__name__})",
            method=method,
            url=path,
            request_sent=sent,
        )
    return APIConnectionError(
        f"{method} {path}: connection failed ({type(exc).__name__}: {exc})",
        method=method,
        url=path,
        request_sent=sent,
    )


def check_response(response: httpx.Response, method: str, path: str) -> httpx.Response:
    """The response if it is a 2xx, else its typed ``APIStatusError``."""
    if response.is_success:
        return response
    raise error_from_response(
        response.status_code, response.headers, response.content, method=method, url=path
    )
