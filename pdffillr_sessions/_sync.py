"""``sync``: mirror the server's sessions and their histories into the cache.

Incremental: a history is fetched only when the server's ``message_count`` differs from the
entries the cache holds. Which sessions are new, changed or stale is decided by ``plan_sync``
(pure), what is written and reported by ``SyncRun``; ``sync`` only lists, fetches (up to
``concurrency`` at once, over the client's one connection pool) and writes (in the calling
thread, one transaction per session). ``async_sync`` (``_async_sync``) shares all of it and
differs only in how it fetches and where it writes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, TypeVar

import attrs

from ._exceptions import ConfigurationError, NotFoundError
from ._models import HistoryEntry, SessionInfo

if TYPE_CHECKING:
    from ._client import PdffillrClient
    from .cache import CacheArg, CachedSession, HistoryCache

__all__ = [
    "SyncPlan",
    "SyncProgress",
    "SyncReport",
    "SyncRun",
    "check_sync_arguments",
    "plan_sync",
    "sync",
]

T = TypeVar("T")
R = TypeVar("R")

#: ``progress(done, total, session_id)``, called in the calling thread after each history is
#: mirrored (``done`` counts from 1 to ``total``).
SyncProgress = Callable[[int, int, str], None]


@attrs.frozen(kw_only=True)
class SyncReport:
    """What one ``sync`` did. Counts are of the sessions it looked at (all, or ``session_ids``)."""

    sessions: int
    new: int
    changed: int
    unchanged: int
    histories_fetched: int
    entries_added: int
    #: Cached sessions the server no longer lists (kept in the cache); empty with session_ids.
    not_listed_upstream: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SyncPlan:
    """What a sync must do, decided from the cache's rows and the server's list alone."""

    new: tuple[SessionInfo, ...]
    changed: tuple[SessionInfo, ...]
    #: Sessions whose history must be fetched (the server's count differs from the cache's).
    stale: tuple[SessionInfo, ...]


def plan_sync(before: Mapping[str, CachedSession], listed: Sequence[SessionInfo]) -> SyncPlan:
    """Which listed sessions are new, changed (status, count or title) and stale.

    A new session with ``message_count`` 0 has no history to fetch.
    """
    new: list[SessionInfo] = []
    changed: list[SessionInfo] = []
    stale: list[SessionInfo] = []
    for info in listed:
        cached = before.get(info.session_id)
        if cached is None:
            new.append(info)
            if info.message_count > 0:
                stale.append(info)
            continue
        if (
            cached.status != info.status
            or cached.message_count != info.message_count
            or cached.title != info.title
        ):
            changed.append(info)
        if cached.entry_count != info.message_count:
            stale.append(info)
    return SyncPlan(new=tuple(new), changed=tuple(changed), stale=tuple(stale))


def sync(
    client: PdffillrClient,
    cache: CacheArg = None,
    *,
    session_ids: Iterable[str] | None = None,
    concurrency: int = 8,
    progress: SyncProgress | None = None,
) -> SyncReport:
    """Mirror the server's sessions (or only ``session_ids``) and their histories.

    ``cache`` is what ``Session`` takes (None: the default file, a path, a ``HistoryCache``).
    Raises ``NotFoundError`` (before writing anything) if a requested id is not listed under
    the key. The server is asked first: an unreachable server leaves no new cache file behind.
    Rows of another server are never touched: a listed id the cache holds for another server
    is another session, and is left out (ids are the server's own).
    """
    check_sync_arguments(cache, concurrency)
    run = SyncRun(client.sessions.list(), session_ids)
    from .cache import open_cache

    opened, owned = open_cache(cache, client.key_scope, server=client.server)
    assert opened is not None  # cache is not False
    try:
        stale = run.record_listing(opened)
        for info, entries in _fetch_all(
            lambda i: client.sessions.messages(i.session_id), stale, concurrency
        ):
            done = run.store(opened, info, entries)
            if progress is not None:
                progress(done, len(stale), info.session_id)
    finally:
        if owned:
            opened.close()
    return run.report()


def check_sync_arguments(cache: CacheArg, concurrency: object) -> None:
    """The arguments ``sync`` and ``async_sync`` refuse before asking the server anything."""
    if cache is False:
        raise ConfigurationError("sync needs a cache: cache=False turns mirroring off")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError("concurrency must be an integer >= 1")


class SyncRun:
    """One sync's decisions and writes, whatever fetches the histories: what the listing
    records, what each fetched history adds, what the report says. ``sync`` calls it in the
    calling thread, ``async_sync`` in its writer thread (off the event loop); both only list,
    fetch, and hand each history to ``store`` as it arrives.

    Made from the server's list (the cache is opened after the server answered: an unreachable
    server leaves no new file), it raises ``NotFoundError`` at once for unknown ``session_ids``.
    """

    def __init__(self, all_listed: list[SessionInfo], session_ids: Iterable[str] | None) -> None:
        self._all_listed = all_listed
        self._chosen = session_ids is not None
        self._listed = _select(all_listed, session_ids)
        self._before: dict[str, CachedSession] = {}
        self._plan = SyncPlan(new=(), changed=(), stale=())
        self._added = self._fetched = 0

    def record_listing(self, cache: HistoryCache) -> tuple[SessionInfo, ...]:
        """Record the listed sessions (never an id the cache holds for another server: that is
        another session) and return those whose history must be fetched."""
        taken = cache.other_servers_session_ids()
        self._listed = [info for info in self._listed if info.session_id not in taken]
        self._before = {s.session_id: s for s in cache.sessions()}
        self._plan = plan_sync(self._before, self._listed)
        cache.upsert_sessions(self._listed)
        return self._plan.stale

    def store(self, cache: HistoryCache, info: SessionInfo, entries: list[HistoryEntry]) -> int:
        """Mirror one fetched history (one transaction); returns how many are done so far."""
        self._added += cache.mirror_history(info.session_id, entries)
        self._fetched += 1
        return self._fetched

    def report(self) -> SyncReport:
        plan, listed = self._plan, self._listed
        upstream = {i.session_id for i in self._all_listed}
        gone = () if self._chosen else tuple(sorted(set(self._before) - upstream))
        return SyncReport(
            sessions=len(listed),
            new=len(plan.new),
            changed=len(plan.changed),
            unchanged=len(listed) - len(plan.new) - len(plan.changed),
            histories_fetched=self._fetched,
            entries_added=self._added,
            not_listed_upstream=gone,
        )


def _select(listed: list[SessionInfo], session_ids: Iterable[str] | None) -> list[SessionInfo]:
    if session_ids is None:
        return listed
    by_id = {info.session_id: info for info in listed}
    wanted = list(dict.fromkeys(session_ids))
    missing = [sid for sid in wanted if sid not in by_id]
    if missing:
        raise NotFoundError(
            f"no session {missing[0]!r} under this API key"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            status_code=404,
            error_type="not_found",
        )
    return [by_id[sid] for sid in wanted]


def _fetch_all(
    fetch: Callable[[T], R], items: Sequence[T], concurrency: int
) -> Iterator[tuple[T, R]]:
    """``(item, fetch(item))`` as fetches complete, at most ``concurrency`` in flight.

    Results are handed to the caller's thread (which writes them) as they arrive; no more than
    ``2 * concurrency`` wait at once, so memory stays bounded however many sessions there are.
    The first failure stops the rest (queued fetches are cancelled) and propagates.
    """
    if concurrency == 1 or len(items) <= 1:
        for item in items:
            yield item, fetch(item)
        return
    pool = ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix="pdffillr-sync"
    )
    queue = iter(items)
    pending: dict[Future[R], T] = {}

    def submit_more() -> None:
        for item in itertools.islice(queue, 2 * concurrency - len(pending)):
            pending[pool.submit(fetch, item)] = item

    try:
        submit_more()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                yield item, future.result()
            submit_more()
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)
