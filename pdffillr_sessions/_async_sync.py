"""``async_sync``: ``sync`` for asyncio programs, with the same decisions and the same report.

What to fetch (``plan_sync``), what to write and what to report (``SyncRun``) are ``sync``'s own;
only the I/O differs: the list and the histories come from the ``AsyncPdffillrClient``, up to
``concurrency`` fetches at once as tasks of the caller's loop, and every cache operation (open,
the listing, each history's one transaction, close) runs in one worker thread of its own
(``_offloop.SerialThread``), never on the event loop, in the order the histories arrive.

As in ``sync``, a session that cannot be listed, fetched or stored is reported in
``SyncReport.failures`` and the others are mirrored all the same; only an unusable cache stops
it. Cancelling ``async_sync`` cancels the fetches in flight and propagates; the write in
progress, if any, still completes (each history is one transaction), and the cache is closed
after it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from . import _calls
from ._exceptions import PdffillrError
from ._models import SessionInfo
from ._offloop import SerialThread
from ._pause import SharedPause
from ._sync import Fetched, SyncProgress, SyncReport, SyncRun, check_sync_arguments

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
    listing = await client.run(_calls.lenient_list_call())
    run = SyncRun(listing, session_ids)
    from .cache import open_cache

    writer = SerialThread("pdffillr-async-sync")
    try:
        opened, owned = await writer.run(
            lambda: open_cache(cache, client.key_scope, server=client.server)
        )
        assert opened is not None  # cache is not False
        try:
            stale = await writer.run(lambda: run.record_listing(opened))

            async def store(info: SessionInfo, fetched: Fetched) -> None:
                done = await writer.run(lambda: run.store(opened, info, fetched))
                if progress is not None:
                    progress(done, len(stale), info.session_id)

            paced = client._paced(SharedPause())  # a 429 pauses every fetch at once
            await _fetch_each(lambda i: _fetch(paced, i), stale, concurrency, store)
        finally:
            if owned:
                await writer.run(opened.close)
    finally:
        writer.shutdown()
    return run.report()


async def _fetch(client: AsyncPdffillrClient, info: SessionInfo) -> Fetched:
    """The history as the server's parsed JSON items, or the typed error that kept it from us
    (``_sync._fetch``'s twin)."""
    try:
        return await client.run(_calls.messages_json_call(info.session_id))
    except PdffillrError as exc:
        return exc


async def _fetch_each(
    fetch: Callable[[T], Awaitable[R]],
    items: Sequence[T],
    concurrency: int,
    handle: Callable[[T, R], Awaitable[None]],
) -> None:
    """``handle(item, await fetch(item))`` for each item, as fetches complete, with at most
    ``concurrency`` in flight: ``_sync._fetch_all``'s twin. Replacements start before a batch is
    handled, so fetching goes on while the results are written. ``fetch`` returns expected
    failures as values; anything it raises (a bug, a cancellation) cancels the fetches in
    flight and propagates."""
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
