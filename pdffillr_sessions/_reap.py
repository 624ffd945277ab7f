"""``reap``: end the sessions this machine opened and never saw ended (crashed or killed scripts).

Two kinds of leftovers, in the client key's scope only:

- sessions a with-block opened and never ended (``open``), or failed to end (``end_pending``);
- creates whose reply was lost (create intents): the create is replayed with the same
  Idempotency-Key (the server answers with the session it made, or makes it now), then that
  session is ended.

Whether a record's with-block still runs is asked of its owner lock first
(``HistoryCache.probe_owner``; on PostgreSQL a session-level advisory lock, exact across
machines): free means its owner is gone, and the record is dealt with at once, whatever its age,
with the lock held meanwhile so that no other reaper works on it (two reapers never both replay
an intent, nor both end a session); held means a block runs (or another reaper is at work), and
the record is left alone. A record with no lock to ask falls back to its opener's pid on this
host and its age (``older_than``).

What to do with each record is decided by pure functions (``decide_session``,
``decide_intent``) from the record, the cutoff and what the lock or pid said; the loop in
``reap`` only does the I/O they ask for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import attrs

from ._contract import LOCAL_END_PENDING, LocalState
from ._end import EndOutcome, end_one
from ._exceptions import BadRequestError, PdffillrError, one_line
from ._liveness import opener_alive

if TYPE_CHECKING:
    from ._client import PdffillrClient
    from .cache import CacheArg, CachedSession, CreateIntent, HistoryCache
    from .cache._backend import Liveness

__all__ = [
    "REAP_DEFAULT_OLDER_THAN",
    "ReapAction",
    "ReapOutcome",
    "ReapReport",
    "decide_intent",
    "decide_session",
    "reap",
]

#: Records younger than this are left alone by default: for sessions opened on another host (or
#: before the opener was recorded) the cache cannot tell a killed script from a running one.
REAP_DEFAULT_OLDER_THAN = timedelta(hours=1)

#: ``ended``: ended now. ``gone``: the server no longer has it (recorded ended). ``failed``: the
#: end (or the create's replay) failed: kept for the next reap. ``skipped``: left alone (see
#: ``detail``). ``would_end`` / ``would_replay_and_end``: what a dry run would do. ``dropped``:
#: the server refused the replayed create, so it never made a session from it (intent forgotten).
ReapAction = Literal[
    "ended", "gone", "failed", "skipped", "would_end", "would_replay_and_end", "dropped"
]


@attrs.frozen(kw_only=True)
class ReapOutcome:
    """What ``reap`` did with one cached session (``kind="session"``) or create intent."""

    kind: Literal["session", "create_intent"]
    action: ReapAction
    #: The session's id; for an intent, the id of the session its replay found (or None).
    session_id: str | None
    title: str | None
    detail: str | None = None
    #: Its with-block still runs (its owner lock is held, or its process runs on this host).
    live: bool = False
    #: What its owner lock said: ``alive``, ``dead`` (its block has exited: acted on at once),
    #: or ``unknown`` (no lock to ask: the pid and ``older_than`` decide).
    owner: Liveness = "unknown"
    opened_pid: int | None = None
    #: Sessions only.
    local_state: LocalState | None = None
    opened_at: datetime | None = None
    #: Create intents only.
    idempotency_key: str | None = None
    recorded_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@attrs.frozen(kw_only=True)
class ReapReport:
    """Every outcome of one ``reap``, sessions first, then create intents, oldest first."""

    dry_run: bool
    outcomes: tuple[ReapOutcome, ...] = ()
    #: Why there was nothing to look at (e.g. no cache file yet), else None.
    note: str | None = None

    @property
    def ok(self) -> bool:
        """False when some session could not be ended (the CLI then exits 1)."""
        return not any(o.failed for o in self.outcomes)

    def count(self, action: ReapAction) -> int:
        return sum(1 for o in self.outcomes if o.action == action)


# -- the decisions (pure) ---------------------------------------------------------------------


def _skip_reason(
    *,
    live: bool,
    owner: Liveness,
    include_live: bool,
    pid: int | None,
    moment: datetime | None,
    cutoff: datetime,
) -> str | None:
    """Why a record must be left alone now, or None to act on it."""
    if owner == "alive" and not include_live:
        return (
            "live: a running with-block holds its owner lock (or another reap is ending it); "
            "include_live=True ends it anyway"
        )
    if live and not include_live:
        return f"live: its process {pid} still runs on this host (include_live=True ends it)"
    if owner == "dead":
        return None  # its owner lock is free: the block's process has exited
    if moment is not None and moment > cutoff:
        return "too recent (see older_than)"
    return None


def decide_session(
    s: CachedSession,
    *,
    cutoff: datetime,
    include_live: bool,
    live: bool,
    owner: Liveness = "unknown",
) -> ReapOutcome:
    """``would_end`` (which ``reap`` carries out unless ``dry_run``) or ``skipped``.

    An end-pending session is always ended: its with-block has already exited. Otherwise a
    free owner lock (``owner="dead"``) means now, a held one never (unless ``include_live``),
    and no lock means by the pid (``live``) and age (``cutoff``).
    """
    base = ReapOutcome(
        kind="session",
        action="would_end",
        session_id=s.session_id,
        title=s.title,
        local_state=s.local_state,
        opened_at=s.opened_at,
        opened_pid=s.opened_pid,
        live=live or owner == "alive",
        owner=owner,
    )
    if s.local_state == LOCAL_END_PENDING:
        return base
    reason = _skip_reason(
        live=live,
        owner=owner,
        include_live=include_live,
        pid=s.opened_pid,
        moment=s.opened_at or s.created_at,
        cutoff=cutoff,
    )
    return base if reason is None else attrs.evolve(base, action="skipped", detail=reason)


def decide_intent(
    intent: CreateIntent,
    *,
    cutoff: datetime,
    include_live: bool,
    live: bool,
    owner: Liveness = "unknown",
) -> ReapOutcome:
    """``would_replay_and_end`` or ``skipped``, for a create intent.

    A running script may be inside its create (retrying): replaying and ending it would end the
    session its block is about to use.
    """
    base = ReapOutcome(
        kind="create_intent",
        action="would_replay_and_end",
        session_id=None,
        title=intent.title,
        idempotency_key=intent.idempotency_key,
        recorded_at=intent.recorded_at,
        opened_pid=intent.opened_pid,
        live=live or owner == "alive",
        owner=owner,
    )
    reason = _skip_reason(
        live=live,
        owner=owner,
        include_live=include_live,
        pid=intent.opened_pid,
        moment=intent.recorded_at,
        cutoff=cutoff,
    )
    return base if reason is None else attrs.evolve(base, action="skipped", detail=reason)


# -- the I/O ---------------------------------------------------------------------------------


def reap(
    client: PdffillrClient,
    cache: CacheArg = None,
    *,
    dry_run: bool = False,
    older_than: timedelta | None = None,
    include_live: bool = False,
    is_alive: Callable[[int | None, str | None], bool] = opener_alive,
) -> ReapReport:
    """End what this machine (or, on a shared PostgreSQL cache, any machine) opened and never
    saw ended; return one outcome per record.

    A record whose owner lock is free is dealt with at once; one whose lock is held (its block
    runs, anywhere) is left alone unless ``include_live``. For records with no lock to ask,
    ``older_than`` (default ``REAP_DEFAULT_OLDER_THAN``, 1 h; ``timedelta(0)`` for all) leaves
    younger records alone, and one whose opening process still runs on this host is skipped as
    live unless ``include_live``. ``dry_run`` sends nothing and writes nothing. ``cache`` is
    what ``Session`` takes; a missing cache file means nothing to reap (it is not created).
    """
    from .cache import cache_path, open_cache
    from .cache._location import display, exists

    path = cache_path(cache)
    if path is None:
        return ReapReport(dry_run=dry_run, note="mirroring is off (cache=False)")
    if not exists(path):
        return ReapReport(dry_run=dry_run, note=f"no history cache at {display(path)}")
    cutoff = datetime.now(UTC) - (REAP_DEFAULT_OLDER_THAN if older_than is None else older_than)
    opened, owned = open_cache(cache, client.key_scope, readonly=dry_run)
    if opened is None:  # pragma: no cover - cache_path said it is not False
        return ReapReport(dry_run=dry_run)
    try:
        outcomes = [
            _reap_session(client, opened, s, cutoff, dry_run, include_live, is_alive)
            for s in opened.pending_ends()
        ]
        outcomes += [
            _reap_intent(client, opened, i, cutoff, dry_run, include_live, is_alive)
            for i in opened.create_intents()
        ]
    finally:
        if owned:
            opened.close()
    return ReapReport(dry_run=dry_run, outcomes=tuple(outcomes))


def _reap_session(
    client: PdffillrClient,
    cache: HistoryCache,
    s: CachedSession,
    cutoff: datetime,
    dry_run: bool,
    include_live: bool,
    is_alive: Callable[[int | None, str | None], bool],
) -> ReapOutcome:
    with cache.probe_owner(s.owner_lock) as probe:
        owner = probe.liveness
        live = owner == "unknown" and is_alive(s.opened_pid, s.opened_host)
        decided = decide_session(
            s, cutoff=cutoff, include_live=include_live, live=live, owner=owner
        )
        if decided.action != "would_end" or dry_run:
            return decided
        if owner == "dead":  # read again under the lock: another reaper may have just ended it
            now = cache.session(s.session_id)
            if now is None or not now.end_pending:
                return attrs.evolve(decided, action="skipped", detail=_RESOLVED_MEANWHILE)
        return _with_end(decided, end_one(client, cache, s.session_id))


_RESOLVED_MEANWHILE = "resolved meanwhile (by its with-block or another reap)"


def _with_end(outcome: ReapOutcome, ended: EndOutcome) -> ReapOutcome:
    """A ``would_end`` outcome completed with what ending the session did."""
    if ended.action == "ended":
        return attrs.evolve(outcome, action="ended", detail=None)
    if ended.action == "not_found":
        return attrs.evolve(
            outcome, action="gone", detail="the server no longer has it: marked ended"
        )
    return attrs.evolve(outcome, action="failed", detail=ended.detail)


def _reap_intent(
    client: PdffillrClient,
    cache: HistoryCache,
    intent: CreateIntent,
    cutoff: datetime,
    dry_run: bool,
    include_live: bool,
    is_alive: Callable[[int | None, str | None], bool],
) -> ReapOutcome:
    with cache.probe_owner(intent.owner_lock) as probe:
        owner = probe.liveness
        live = owner == "unknown" and is_alive(intent.opened_pid, intent.opened_host)
        decided = decide_intent(
            intent, cutoff=cutoff, include_live=include_live, live=live, owner=owner
        )
        if decided.action != "would_replay_and_end" or dry_run:
            return decided
        key = intent.idempotency_key
        if owner == "dead" and all(i.idempotency_key != key for i in cache.create_intents()):
            # Read again under the lock: another reaper replayed it between our list and now.
            return attrs.evolve(decided, action="skipped", detail=_RESOLVED_MEANWHILE)
        try:
            info = client.sessions.create(intent.title, idempotency_key=key)
        except BadRequestError as exc:
            # The server refuses this create outright: it never made a session from it.
            cache.forget_create_intent(key)
            detail = f"the server refused the create: {one_line(exc)}"
            return attrs.evolve(decided, action="dropped", detail=detail)
        except PdffillrError as exc:
            detail = f"replaying the create failed: {one_line(exc)}"
            return attrs.evolve(decided, action="failed", detail=detail)
        # Recorded as opened (with the dead owner's lock) before the end: if the end fails, or
        # this reap dies, the next reap finds a session it can end at once.
        cache.record_opened(info, idempotency_key=key, owner_lock=intent.owner_lock)
        done = _with_end(
            attrs.evolve(decided, session_id=info.session_id),
            end_one(client, cache, info.session_id),
        )
        if done.action == "ended":
            return attrs.evolve(done, detail="recovered from a create whose reply was lost")
        return done
