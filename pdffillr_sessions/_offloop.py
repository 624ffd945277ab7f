"""Blocking work for asyncio code (SQLite, lock files), run off the event loop and in order.

A cache write can wait for SQLite's busy timeout (30 s) while another process writes the file;
on the event loop that would stall every task of the program. ``SerialThread`` runs such work
in one thread of its own, one operation after another in the order they were asked for: the
cache gets a session's entries in the server's order, and an ``AsyncSession`` (or one
``async_sync``) never waits behind another's queue.

An operation is never abandoned halfway: a caller that is cancelled while its operation runs (or
waits its turn) waits for it to finish, then the cancellation propagates. So a cancelled
``await s.send(...)`` returns control with its entries on disk, a lock taken or an intent
written is never lost to a cancellation, and when the event loop ends, no operation of a
finished caller is still running behind its back. The wait is bounded by the operation itself
(an SQLite write by the busy timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["SerialThread", "finish_through_cancellation"]

T = TypeVar("T")


class SerialThread:
    """One worker thread, started on first use; ``shutdown`` lets it end once its queue is done
    (a later ``run`` starts a new one)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, op: Callable[[], T]) -> T:
        """``op()`` in the worker thread, waited for even through a cancellation (see above)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        future = asyncio.wrap_future(self._executor.submit(op))
        cancelled = await finish_through_cancellation(future)
        if cancelled is not None:
            future.exception()  # seen: the operation reports its own failures
            raise cancelled
        return future.result()

    def shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


async def finish_through_cancellation(future: asyncio.Future[Any]) -> asyncio.CancelledError | None:
    """Wait until ``future`` is done, whatever cancels the caller meanwhile (a cancelled wait
    leaves ``future`` running); return the first cancellation that arrived, for the caller to
    raise when it is ready. The caller's ``cancelling()`` count is left as the cancellers set
    it. Bounded by ``future`` itself."""
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    return cancelled
