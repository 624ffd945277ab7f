"""One pause shared by every request of a pool: a server that says "too many requests" is
answered by the whole pool backing off together, not by each request in flight finding out
for itself.

``sync`` fetches up to ``concurrency`` histories at once. When one of them gets a 429 (or any
retryable answer carrying ``Retry-After``), the others are about to send more requests into the
same limit: each would get its own 429, spend one of its retries and sleep on its own. Instead
the first answer *holds* the pause for as long as the retry policy would wait, and every attempt
of every request of the pool (the retry itself included) first *waits* until the pause is over.
A request already in flight is not recalled; a later hold extends the pause, never shortens it.

The clock and the sleep are injected (a test client's ``sleep=lambda s: None`` never really
sleeps, and ``wait`` then returns at once instead of spinning).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable

from ._exceptions import APIStatusError
from ._retry import RetryPolicy, is_retryable, wait_before_retry

__all__ = ["SharedPause", "hold_for"]


class SharedPause:
    """A moment before which no request of the pool starts (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0
        self._holds = 0

    @property
    def holds(self) -> int:
        """How many answers held (or extended) the pause."""
        with self._lock:
            return self._holds

    def hold(self, seconds: float) -> None:
        """No request starts for ``seconds`` from now (unless the pause already lasts longer)."""
        until = self._clock() + max(seconds, 0.0)
        with self._lock:
            if until > self._until:
                self._until = until
                self._holds += 1

    def wait(self, sleep: Callable[[float], None]) -> None:
        """Return once the pause is over: sleep what remains of it, again if it was extended
        meanwhile (never more often than it was extended)."""
        while True:
            with self._lock:
                until, holds = self._until, self._holds
            delay = until - self._clock()
            if delay <= 0:
                return
            sleep(delay)
            with self._lock:
                if self._holds == holds:
                    return

    async def wait_async(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        """``wait`` for an asyncio client (its awaited ``sleep``)."""
        while True:
            with self._lock:
                until, holds = self._until, self._holds
            delay = until - self._clock()
            if delay <= 0:
                return
            await sleep(delay)
            with self._lock:
                if self._holds == holds:
                    return


def hold_for(pause: SharedPause, exc: BaseException, number: int, policy: RetryPolicy) -> None:
    """After attempt ``number`` failed with ``exc``: a 429, or any retryable answer carrying
    ``Retry-After``, holds the pool's pause for as long as the retry policy waits before the
    retry (its longest backoff when the server says nothing); anything else holds nothing."""
    if not isinstance(exc, APIStatusError) or not is_retryable(exc, policy):
        return
    if exc.status_code == 429 or exc.retry_after is not None:
        pause.hold(wait_before_retry(number, exc, policy, 0.0))
