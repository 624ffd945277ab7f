"""The pure retry decisions: what is retried, how long we wait, when we give up."""

from __future__ import annotations

import email.utils

import pytest

from pdffillr_sessions import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    SessionEndedError,
)
from pdffillr_sessions._exceptions import APIStatusError, status_error_class
from pdffillr_sessions._retry import (
    RetryPolicy,
    backoff_delay,
    is_retryable,
    parse_retry_after,
    run_with_retries,
    wait_before_retry,
)

POLICY = RetryPolicy()


def status_error(code: int, retry_after: float | None = None) -> APIStatusError:
    return status_error_class(code)("x", status_code=code, retry_after=retry_after)


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(code: int) -> None:
    assert is_retryable(status_error(code), POLICY)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422, 501])
def test_final_statuses_are_not_retried(code: int) -> None:
    assert not is_retryable(status_error(code), POLICY)


def test_connection_errors_and_timeouts_are_retried() -> None:
    assert is_retryable(APIConnectionError("reset"), POLICY)
    assert is_retryable(APITimeoutError("slow"), POLICY)
    assert not is_retryable(ValueError("bug"), POLICY)


def test_retry_after_beyond_the_cap_is_not_retried() -> None:
    policy = RetryPolicy(max_retry_after=10)
    assert is_retryable(status_error(429, retry_after=10), policy)
    assert not is_retryable(status_error(429, retry_after=10.5), policy)


def test_backoff_doubles_from_half_a_second_to_eight() -> None:
    no_jitter = [backoff_delay(n, POLICY, 0.0) for n in range(1, 8)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_reduces_by_at_most_a_quarter() -> None:
    assert backoff_delay(1, POLICY, 0.999) == pytest.approx(0.5 * (1 - 0.25 * 0.999))
    assert backoff_delay(3, POLICY, 0.5) == pytest.approx(2.0 * 0.875)


def test_server_retry_after_wins_over_backoff() -> None:
    assert wait_before_retry(1, status_error(503, retry_after=3.0), POLICY, 0.0) == 3.0
    assert wait_before_retry(2, status_error(503), POLICY, 0.0) == 1.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0


def test_run_with_retries_sleeps_the_schedule_and_reraises_the_last_error() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def call(n: int) -> str:
        calls.append(n)
        raise InternalServerError("boom", status_code=500)

    with pytest.raises(InternalServerError):
        run_with_retries(
            call, policy=POLICY, max_retries=3, describe="t", sleep=sleeps.append, rand=lambda: 0
        )
    assert calls == [1, 2, 3, 4]
    assert sleeps == [0.5, 1.0, 2.0]


def test_run_with_retries_does_not_retry_a_final_error() -> None:
    calls: list[int] = []

    def call(n: int) -> str:
        calls.append(n)
        raise SessionEndedError("ended", status_code=409)

    with pytest.raises(SessionEndedError):
        run_with_retries(call, policy=POLICY, max_retries=5, describe="t", sleep=lambda s: None)
    assert calls == [1]


def test_run_with_retries_returns_after_a_transient_failure() -> None:
    def call(n: int) -> int:
        if n < 3:
            raise RateLimitError("slow down", status_code=429, retry_after=0.1)
        return n

    sleeps: list[float] = []
    assert (
        run_with_retries(call, policy=POLICY, max_retries=2, describe="t", sleep=sleeps.append) == 3
    )
    assert sleeps == [0.1, 0.1]


def test_deadline_stops_retries_whose_wait_would_overrun() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    def call(n: int) -> int:
        raise APIConnectionError("reset")

    with pytest.raises(APIConnectionError):
        run_with_retries(
            call,
            policy=POLICY,
            max_retries=10,
            describe="t",
            sleep=sleep,
            deadline=102.0,
            clock=lambda: now[0],
            rand=lambda: 0,
        )
    # 0.5 + 1.0 fit in 2 s; the next wait (2.0) would end past the deadline.
    assert sleeps == [0.5, 1.0]


def test_bad_request_is_not_a_connection_error() -> None:
    assert not is_retryable(BadRequestError("no", status_code=400), POLICY)
