"""``async_sync``: ``sync`` for asyncio programs, with the same decisions and the same report.

What to fetch (``plan_sync``), what to write and what to report (``SyncRun``) are ``sync``'s own;
only the I/O differs: the list and the histories come from the ``AsyncPdffillrClient``, up to
``concurrency`` fetches at once as tasks of the caller's loop, and every cache operation (open,
the listing, each history's one transaction, close) runs in one worker thread of its own
(``_offloop.SerialThread``), never on the event loop, in the order the histories arrive.

A fetch that fails stops the sync, as in ``sync``: the other fetches are cancelled and the error
propagates (what was written until then stays: each history is one transaction). Cancelling
``async_sync`` does the same; the write in progress, if any, still completes, and the cache is
closed after it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ._models import HistoryEntry, SessionInfo
from ._offloop import SerialThread
from ._sync import SyncProgress, SyncReport, SyncRun, check_sync_arguments

if TYPE_CHECKING:
    from ._async_client import AsyncPdffillrClient
    from .cache import CacheArg

__all__ = ["async_sync"]

T = TypeVar("T")
R = TypeVar("R")


async def async_sync(
    client: AsyncPdffillrClient,
    cache: CacheArg = None,
    *,
    session_ids: Iterable[str] | None = None,
    concurrency: int = 8,
    progress: SyncProgress | None = None,
) -> SyncReport:
    """Mirror the server's sessions (or only ``session_ids``) and their histories: ``sync``'s
    twin (same arguments, errors and report). ``progress`` is called on the event loop."""
    check_sync_arguments(cache, concurrency)
    run = SyncRun(await client.sessions.list(), session_ids)
    from .cache import open_cache

    writer = SerialThread("pdffillr-sync-cache")
    try:
        opened, owned = await writer.run(
            lambda: open_cache(cache, client.key_scope, server=client.server)
        )
        assert opened is not None  # cache is not False
        try:
            stale = await writer.run(lambda: run.record_listing(opened))

            async def store(info: SessionInfo, entries: list[HistoryEntry]) -> None:
                done = await writer.run(lambda: run.store(opened, info, entries))
                if progress is not None:
                    progress(done, len(stale), info.session_id)

            await _fetch_each(
                lambda i: client.sessions.messages(i.session_id), stale, concurrency, store
            )
        finally:
            if owned:
                await writer.run(opened.close)
    finally:
        writer.shutdown()
    return run.report()


async def _fetch_each(
    fetch: Callable[[T], Awaitable[R]],
    items: Sequence[T],
    concurrency: int,
    handle: Callable[[T, R], Awaitable[None]],
) -> None:
    """``handle(item, await fetch(item))`` for each item, as fetches complete, with at most
    ``concurrency`` in flight: ``_sync._fetch_all``'s twin. Replacements start before a batch is
    handled, so fetching goes on while the results are written. The first failure cancels the
    fetches in flight and propagates (so does a cancellation of the caller)."""
    queue = iter(items)
    pending: dict[asyncio.Future[R], T] = {}

    def start_more() -> None:
        for item in itertools.islice(queue, concurrency - len(pending)):
            pending[asyncio.ensure_future(fetch(item))] = item

    try:
        start_more()
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = [(pending.pop(future), future) for future in done]
            start_more()
            for item, future in finished:
                await handle(item, future.result())
    finally:
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.wait(pending)
