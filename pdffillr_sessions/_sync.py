"""``sync``: mirror the server's sessions and their histories into the cache.

Incremental, and convergent. Which sessions are new, changed and stale (their history must be
fetched) is decided by ``plan_sync`` (pure) from the cache's rows and the server's list; a
history is fetched when the cache has not mirrored it since the server's description of the
session last changed, when the cached entries disagree with the server's ``message_count``, or
when their order is provisional (appended by a send, not yet confirmed by a full mirror). Not
the count alone: a count that lies (0 for a session with entries) must not freeze a session.

What is written, what counts as a failure and what is reported is decided by ``SyncRun``.
``sync`` only lists, fetches (up to ``concurrency`` at once, over the client's one connection
pool) and writes (in the calling thread, one transaction per session, as each history arrives:
parsing and writing overlap the fetches still in flight). A session that cannot be listed,
fetched or stored is reported in ``SyncReport.failures`` and skipped; every other session is
still mirrored. Only a cache that cannot be used at all (``CacheError``) stops it.
``async_sync`` (``_async_sync``) shares ``plan_sync`` and ``SyncRun``, and differs only in how
it fetches (tasks) and where it writes (a worker thread, off the event loop).

Less work per entry: a fetched history stays the server's parsed JSON (no ``HistoryEntry`` is
built) and the cache builds its rows from it, only for the entries it does not hold yet
(``HistoryCache.mirror_history_json``). A 429 (or a ``Retry-After``) pauses every fetch of the
pool at once, for as long as the retry policy waits (``_pause``): the pool backs off together
instead of each fetch in flight finding the limit for itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from . import _calls
from ._exceptions import (
    CacheError,
    ConfigurationError,
    NotFoundError,
    PdffillrError,
    one_line,
)
from ._models import SessionInfo
from ._pause import SharedPause

if TYPE_CHECKING:
    from ._client import PdffillrClient
    from .cache import CacheArg, CachedSession, HistoryCache

__all__ = [
    "SyncFailure",
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
#: mirrored or has failed (``done`` counts from 1 to ``total``).
SyncProgress = Callable[[int, int, str], None]

#: ``list``: the server's list holds it but it could not be read. ``fetch``: its history could
#: not be fetched. ``store``: what the server sent cannot be stored: an item that is not a valid
#: entry, a value the cache cannot hold, or an entry id listed twice.
SyncStage = Literal["list", "fetch", "store"]


@attrs.frozen(kw_only=True)
class SyncFailure:
    """One session ``sync`` could not mirror, and why (one line, the key redacted)."""

    session_id: str | None
    stage: SyncStage
    error_type: str
    message: str

    @classmethod
    def of(cls, session_id: str | None, stage: SyncStage, exc: BaseException) -> SyncFailure:
        return cls(
            session_id=session_id,
            stage=stage,
            error_type=type(exc).__name__,
            message=one_line(exc),
        )


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
    #: Sessions that could not be mirrored (the others were).
    failures: tuple[SyncFailure, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every session was mirrored (the CLI exits 1 otherwise)."""
        return not self.failures


@attrs.frozen(kw_only=True)
class SyncPlan:
    """What a sync must do, decided from the cache's rows and the server's list alone."""

    new: tuple[SessionInfo, ...]
    changed: tuple[SessionInfo, ...]
    #: Sessions whose history must be fetched (see ``plan_sync``).
    stale: tuple[SessionInfo, ...]


def _described_differently(cached: CachedSession, info: SessionInfo) -> bool:
    """Whether the server's object differs from the one the cache holds (text first: cheap)."""
    from .cache._speedups import json_text

    if json_text(cached.raw) == json_text(info.raw):
        return False
    return dict(cached.raw) != dict(info.raw)


def plan_sync(before: Mapping[str, CachedSession], listed: Sequence[SessionInfo]) -> SyncPlan:
    """Which listed sessions are new, changed (status, count or title), and stale.

    Stale (fetch the history) when any of: the session is new to the cache (even with a
    ``message_count`` of 0: a count may lie); the cache has not mirrored its history since its
    row was written or changed (``synced_at`` is None); the server's object differs from the
    cached one (a new status, count, ``updated_at``...); the cached entries are not as many as
    ``message_count`` says; their order is provisional (``provisional_order``). Each test is one
    comparison of values already read: the cost stays that of reading the rows.
    """
    new: list[SessionInfo] = []
    changed: list[SessionInfo] = []
    stale: list[SessionInfo] = []
    for info in listed:
        cached = before.get(info.session_id)
        if cached is None:
            new.append(info)
            stale.append(info)
            continue
        if (
            cached.status != info.status
            or cached.message_count != info.message_count
            or cached.title != info.title
        ):
            changed.append(info)
        if (
            cached.synced_at is None
            or cached.entry_count != info.message_count
            or cached.provisional_order
            or _described_differently(cached, info)
        ):
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
    A session that cannot be listed, fetched or stored is in ``failures``; the others are
    mirrored all the same. Rows of another server are never touched: a listed id the cache
    holds for another server is another session, and is left out (ids are the server's own).
    """
    check_sync_arguments(cache, concurrency)
    run = SyncRun(client.run(_calls.lenient_list_call()), session_ids)
    from .cache import open_cache

    opened, owned = open_cache(cache, client.key_scope, server=client.server)
    assert opened is not None  # cache is not False
    try:
        stale = run.record_listing(opened)
        paced = client._paced(SharedPause())
        for info, outcome in _fetch_all(lambda i: _fetch(paced, i), stale, concurrency):
            done = run.store(opened, info, outcome)
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


#: A history as fetched: the server's parsed JSON items (the cache builds its rows from them,
#: checking those it lacks), or the typed error that kept it from us.
Fetched = list[Any] | PdffillrError


class SyncRun:
    """One sync's decisions and writes, whatever fetches the histories: which listed sessions
    to mirror, what the listing records, what each fetched history adds or fails, what the
    report says. ``sync`` calls it in the calling thread, ``async_sync`` in its writer thread
    (off the event loop); both only list, fetch, and hand each history to ``store`` as it
    arrives.

    Made from the server's lenient list (the cache is opened only after the server answered:
    an unreachable server leaves no new file); ``NotFoundError`` at once for an id asked for
    that the server does not list at all.
    """

    def __init__(
        self,
        listing: tuple[list[SessionInfo], Sequence[tuple[str | None, PdffillrError]]],
        session_ids: Iterable[str] | None,
    ) -> None:
        all_listed, unreadable = listing
        self._wanted = None if session_ids is None else list(dict.fromkeys(session_ids))
        # A session listed twice is mirrored once, as first listed.
        first = {info.session_id: info for info in reversed(all_listed)}
        self._all_listed = list(first.values())[::-1]
        self._unreadable_ids = {sid for sid, _ in unreadable if sid is not None}
        self._listed = _select(self._all_listed, self._wanted, self._unreadable_ids)
        self._failures = [
            SyncFailure.of(sid, "list", exc)
            for sid, exc in unreadable
            if self._wanted is None or sid in self._wanted
        ]
        self._before: dict[str, CachedSession] = {}
        self._plan = SyncPlan(new=(), changed=(), stale=())
        self._added = self._fetched = self._done = 0

    def record_listing(self, cache: HistoryCache) -> list[SessionInfo]:
        """Record the listed sessions (never an id the cache holds for another server: that is
        another session) and return those whose history must be fetched."""
        taken = cache.other_servers_session_ids()
        self._listed = [info for info in self._listed if info.session_id not in taken]
        self._before = {s.session_id: s for s in cache.sessions()}
        self._plan = plan_sync(self._before, self._listed)
        refused = _store_listing(cache, self._listed, self._failures)
        return [info for info in self._plan.stale if info.session_id not in refused]

    def store(self, cache: HistoryCache, info: SessionInfo, fetched: Fetched) -> int:
        """Mirror one fetched history (one transaction), or report why it could not be; only
        an unusable cache (``CacheError``) stops the sync. Returns how many are done so far."""
        self._done += 1
        if isinstance(fetched, PdffillrError):
            self._failures.append(SyncFailure.of(info.session_id, "fetch", fetched))
            return self._done
        try:
            self._added += cache.mirror_history_json(info.session_id, fetched)
            self._fetched += 1
        except CacheError:
            raise
        except PdffillrError as exc:
            self._failures.append(SyncFailure.of(info.session_id, "store", exc))
        return self._done

    def report(self) -> SyncReport:
        plan, listed = self._plan, self._listed
        upstream = {i.session_id for i in self._all_listed} | self._unreadable_ids
        gone = () if self._wanted is not None else tuple(sorted(set(self._before) - upstream))
        return SyncReport(
            sessions=len(listed),
            new=len(plan.new),
            changed=len(plan.changed),
            unchanged=len(listed) - len(plan.new) - len(plan.changed),
            histories_fetched=self._fetched,
            entries_added=self._added,
            not_listed_upstream=gone,
            failures=tuple(self._failures),
        )


def _fetch(client: PdffillrClient, info: SessionInfo) -> Fetched:
    """The history as the server's parsed JSON items, or the typed error that kept it from us
    (an id like ``..`` included)."""
    try:
        return client.run(_calls.messages_json_call(info.session_id))
    except PdffillrError as exc:
        return exc


def _store_listing(
    cache: HistoryCache, listed: Sequence[SessionInfo], failures: list[SyncFailure]
) -> set[str]:
    """Write the listed sessions' rows (one transaction); if the server sent a value the cache
    cannot hold, write them one by one and report the ones refused. Returns their ids."""
    try:
        cache.upsert_sessions(listed)
        return set()
    except CacheError:
        raise
    except PdffillrError:
        pass
    refused: set[str] = set()
    for info in listed:
        try:
            cache.upsert_sessions([info])
        except CacheError:
            raise
        except PdffillrError as exc:
            refused.add(info.session_id)
            failures.append(SyncFailure.of(info.session_id, "store", exc))
    return refused


def _select(
    listed: list[SessionInfo], wanted: list[str] | None, unreadable: set[str]
) -> list[SessionInfo]:
    """The listed sessions asked for; ``NotFoundError`` for an id the server does not list at
    all (one it lists but that cannot be read is reported as a failure instead)."""
    if wanted is None:
        return listed
    by_id = {info.session_id: info for info in listed}
    missing = [sid for sid in wanted if sid not in by_id and sid not in unreadable]
    if missing:
        raise NotFoundError(
            f"no session {missing[0]!r} under this API key"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            status_code=404,
            error_type="not_found",
        )
    return [by_id[sid] for sid in wanted if sid in by_id]


def _fetch_all(
    fetch: Callable[[T], R], items: Sequence[T], concurrency: int
) -> Iterator[tuple[T, R]]:
    """``(item, fetch(item))`` as fetches complete, at most ``concurrency`` in flight.

    Results are handed to the caller's thread (which writes them) as they arrive; no more than
    ``2 * concurrency`` wait at once, so memory stays bounded however many sessions there are.
    ``fetch`` returns expected failures as values; anything it raises (a bug, an interrupt)
    stops the rest (queued fetches are cancelled) and propagates.
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
