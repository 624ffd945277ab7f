"""Blocking work for asyncio code (SQLite, lock files), run off the event loop and in order.

A cache write can wait for SQLite's busy timeout (30 s) while another process writes the file;
on the event loop that would stall every task of the program. ``SerialThread`` runs such work
in one thread of its own, one operation after another in the order they were asked for: the
cache gets a session's entries in the server's order, and an ``AsyncSession`` (or one
``async_sync``) never waits behind another's queue.

An operation always runs to its end: a caller that is cancelled stops waiting for it, but it
still runs in its turn, and the operations queued after it see what it did (the lifecycle
relies on this: a lock taken, or an intent written, is never lost to a cancellation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["SerialThread"]

T = TypeVar("T")


class SerialThread:
    """One worker thread, started on first use; ``shutdown`` lets it end once its queue is done
    (a later ``run`` starts a new one)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, op: Callable[[], T]) -> T:
        """``op()`` in the worker thread; shielded from the caller's cancellation (see above)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        future = asyncio.wrap_future(self._executor.submit(op))
        future.add_done_callback(_retrieve)
        return await asyncio.shield(future)

    def shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an operation's outcome as seen: a caller cancelled meanwhile never looks (the
    operation reports its own failures), and asyncio would log it as never retrieved."""
    if not future.cancelled():
        future.exception()
