"""Retry decisions as pure functions, and the one tenacity loop that applies them.

What to retry, how long to wait and when to give up are plain functions of the failure, the
attempt number and the clock: the sync client runs them in a tenacity ``Retrying`` loop and an
async twin can run the very same functions in ``AsyncRetrying``. Nothing here sends a request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import tenacity

from . import _contract
from ._exceptions import APIConnectionError, APIStatusError

logger = logging.getLogger("pdffillr_sessions")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How the client waits between retries of a transient failure.

    Exponential backoff from ``initial_delay`` doubling up to ``max_delay``, each wait
    reduced by up to ``jitter`` (a fraction) at random. A server's ``Retry-After`` or
    ``retry-after-ms`` wins over the backoff, up to ``max_retry_after`` seconds: a server that
    asks for longer is not retried at all (the error surfaces at once rather than a script
    sleeping for minutes).
    """

    initial_delay: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(
        default=0.25, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    max_retry_after: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Anything unparsable, negative or
    absent gives ``None`` (fall back to backoff).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get(_contract.RETRY_AFTER_MS_HEADER)
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and value == value:  # not NaN
            return value
    ra = lowered.get(_contract.RETRY_AFTER_HEADER)
    if ra is None:
        return None
    ra = ra.strip()
    try:
        seconds = float(ra)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(ra)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def retry_after_of(exc: BaseException) -> float | None:
    if isinstance(exc, APIStatusError):
        return exc.retry_after
    return None


def is_retryable(exc: BaseException, policy: RetryPolicy) -> bool:
    """Whether a failed attempt may be tried again.

    Connection errors and timeouts (``APITimeoutError`` is an ``APIConnectionError``) and the
    statuses 408, 429, 500, 502, 503, 504 are transient; every other status (400, 401, 403, 404,
    409, 422, ...) is final, and so is a server asking to wait longer than the policy allows.
    Protocol errors (a 2xx with a body we cannot read) are not retried: the server acted.
    """
    if isinstance(exc, APIConnectionError):
        return True
    if isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUSES:
        asked = exc.retry_after
        return asked is None or asked <= policy.max_retry_after
    return False


def backoff_delay(retry_number: int, policy: RetryPolicy, rand: float) -> float:
    """The backoff before retry ``retry_number`` (1-based): ``initial * 2^(n-1)``, capped, jittered.

    ``rand`` is a number in [0, 1) supplied by the caller, so the function stays pure.
    """
    base: float = min(policy.initial_delay * 2.0 ** (retry_number - 1), policy.max_delay)
    return base * (1.0 - policy.jitter * rand)


def wait_before_retry(
    retry_number: int, exc: BaseException, policy: RetryPolicy, rand: float
) -> float:
    """How long to sleep before retry ``retry_number``: the server's ask, else backoff."""
    asked = retry_after_of(exc)
    if asked is not None and asked <= policy.max_retry_after:
        return asked
    return backoff_delay(retry_number, policy, rand)


def tenacity_controls(
    *,
    policy: RetryPolicy,
    max_retries: int,
    describe: str,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> dict[str, Any]:
    """The keyword arguments of a tenacity ``Retrying`` / ``AsyncRetrying`` that apply our
    decisions: shared by the sync and async loops, which only differ in how they sleep.

    At most ``max_retries`` retries follow the first attempt. ``deadline`` is an absolute
    ``clock()`` value: no retry is scheduled whose wait would end past it. Every scheduled retry
    is logged on the ``pdffillr_sessions`` logger at INFO, as openai-python logs its retries: a
    retry that then succeeds is not a problem for anyone to be warned about, and a call that
    fails for good raises. The last error is raised as itself (never wrapped in tenacity's
    ``RetryError``).
    """

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        assert exc is not None
        return wait_before_retry(state.attempt_number, exc, policy, rand())

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number > max_retries:
            return True
        if deadline is not None:
            return clock() + (state.upcoming_sleep or 0.0) >= deadline
        return False

    def log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.info(
            "%s failed (%s); retry %d of %d in %.2f s",
            describe,
            _short(exc),
            state.attempt_number,
            max_retries,
            state.upcoming_sleep,
        )

    return {
        "retry": tenacity.retry_if_exception(lambda e: is_retryable(e, policy)),
        "wait": wait,
        "stop": stop,
        "before_sleep": log_retry,
        "reraise": True,
    }


def may_have_reached(exc: BaseException) -> bool:
    """Whether the attempt that failed with ``exc`` may have reached the server. A call's
    error keeps ``request_sent=False`` only if no attempt of the call may have (a create whose
    every attempt was refused surely made nothing; one that timed out once may have)."""
    return not (isinstance(exc, APIConnectionError) and not exc.request_sent)


def may_have_acted(exc: BaseException) -> bool:
    """Whether the server may have acted on the attempt that failed with ``exc``: it was sent
    and got no refusal (a timeout or a reset after sending, a 5xx). A 4xx is a refusal; a
    connection that never opened reached nothing."""
    if isinstance(exc, APIConnectionError):
        return exc.request_sent
    if isinstance(exc, APIStatusError):
        return exc.status_code >= 500
    return False


@attrs.define
class AttemptLog:
    """What the failed attempts of one call may have done upstream, told to its final error:
    ``APIConnectionError.request_sent`` (some attempt may have reached the server) and
    ``APIStatusError.may_have_acted`` (some attempt may have been acted on). Both loops keep one.
    """

    reached: bool = False
    acted: bool = False

    def failed(self, exc: BaseException) -> None:
        self.reached = self.reached or may_have_reached(exc)
        self.acted = self.acted or may_have_acted(exc)

    def tell(self, exc: BaseException) -> None:
        if isinstance(exc, APIConnectionError):
            exc.request_sent = exc.request_sent or self.reached
        elif isinstance(exc, APIStatusError):
            exc.may_have_acted = exc.may_have_acted or self.acted


def needs_retry_loop(exc: Exception, controls: dict[str, Any]) -> bool:
    """Whether a failed FIRST attempt may be retried: only then is tenacity set up at all
    (building and running its state machine costs about as much as a loopback request)."""
    return int(controls["max_retries"]) > 0 and is_retryable(exc, controls["policy"])


def run_with_retries(
    call: Callable[[int], T],
    *,
    sleep: Callable[[float], None] = time.sleep,
    **controls: Any,
) -> T:
    """Run ``call(attempt_number)`` until it succeeds or a decision says stop (see
    ``tenacity_controls`` for the keyword arguments)."""
    try:
        return call(1)
    except Exception as exc:
        if not needs_retry_loop(exc, controls):
            raise
        first_error = exc
    attempts = AttemptLog()
    attempts.failed(first_error)
    try:
        for attempt in tenacity.Retrying(sleep=sleep, **tenacity_controls(**controls)):
            with attempt:
                number = attempt.retry_state.attempt_number
                if number == 1:  # tenacity replays the first failure, then retries as usual
                    raise first_error
                try:
                    return call(number)
                except Exception as exc:
                    attempts.failed(exc)
                    raise
    except (APIConnectionError, APIStatusError) as exc:
        attempts.tell(exc)
        raise
    raise AssertionError("unreachable: tenacity ended without an outcome")  # pragma: no cover


async def run_with_retries_async(
    call: Callable[[int], Awaitable[T]],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **controls: Any,
) -> T:
    """The async twin of ``run_with_retries``: the same decisions, an awaited sleep."""
    try:
        return await call(1)
    except Exception as exc:
        if not needs_retry_loop(exc, controls):
            raise
        first_error = exc
    attempts = AttemptLog()
    attempts.failed(first_error)
    try:
        async for attempt in tenacity.AsyncRetrying(sleep=sleep, **tenacity_controls(**controls)):
            with attempt:
                number = attempt.retry_state.attempt_number
                if number == 1:
                    raise first_error
                try:
                    return await call(number)
                except Exception as exc:
                    attempts.failed(exc)
                    raise
    except (APIConnectionError, APIStatusError) as exc:
        attempts.tell(exc)
        raise
    raise AssertionError("unreachable: tenacity ended without an outcome")  # pragma: no cover


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}"
