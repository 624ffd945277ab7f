"""``reap``: end the sessions this machine opened and never saw ended (crashed or killed scripts).

Two kinds of leftovers, in the client key's scope and on the client's server only:

- sessions a with-block opened and never ended (``open``), or failed to end (``end_pending``);
- creates whose reply was lost (create intents): the create is replayed with the same
  Idempotency-Key (the server answers with the session it made, or makes it now), then that
  session is ended.

Whether a record's with-block still runs is asked of its owner lock
(``HistoryCache.probe_owner``: the kernel's ``flock`` for an SQLite file, ``_owner``; a
PostgreSQL session-level advisory lock for a shared database, exact across machines,
``cache._pg_locks``): reap tries to take it. Taken (the owner died, the kernel or the database
let go): the record is dealt with at once, whatever its age, with the lock held meanwhile so no
other reap works on it (two reapers never both replay an intent). Held by someone: left alone.
Records with no lock (written by older versions) fall back to their age (``older_than``).
What to do with each record is decided by pure functions (``decide_session``,
``decide_intent``) from the record, the cutoff and what the lock said; the loop in ``reap``
only does the I/O they ask for.

A 404 marks a session gone only when the row was recorded for this very server; a row written
before servers were recorded, ended by nobody here, is left as it is (another server may hold
it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import attrs

from ._contract import LOCAL_END_PENDING, LocalState
from ._end import EndOutcome, end_one
from ._exceptions import BadRequestError, CacheError, PdffillrError, one_line
from ._owner import Liveness

if TYPE_CHECKING:
    from ._client import PdffillrClient
    from .cache import CacheArg, CachedSession, CreateIntent, HistoryCache

__all__ = [
    "REAP_DEFAULT_OLDER_THAN",
    "ReapAction",
    "ReapOutcome",
    "ReapReport",
    "decide_intent",
    "decide_session",
    "reap",
]

#: Records with no owner lock (written by versions before ``m004_server_and_owner_lock``, or on
#: a platform without ``fcntl``) younger than this are left alone by default: for them the
#: cache cannot tell a killed script from a running one.
REAP_DEFAULT_OLDER_THAN = timedelta(hours=1)

#: ``ended``: ended now. ``gone``: the server no longer has it (recorded ended). ``failed``: the
#: end (or the create's replay) failed: kept for the next reap. ``skipped``: left alone (see
#: ``detail``). ``would_end`` / ``would_replay_and_end``: what a dry run would do. ``dropped``:
#: the server refused the replayed create, so it never made a session from it (intent forgotten).
ReapAction = Literal[
    "ended", "gone", "failed", "skipped", "would_end", "would_replay_and_end", "dropped"
]

#: Outcomes after which nothing of the record is left: its lock file is deleted too.
_RESOLVED: frozenset[str] = frozenset({"ended", "gone", "dropped"})


@attrs.frozen(kw_only=True)
class ReapOutcome:
    """What ``reap`` did with one cached session (``kind="session"``) or create intent."""

    kind: Literal["session", "create_intent"]
    action: ReapAction
    #: The session's id; for an intent, the id of the session its replay found (or None).
    session_id: str | None
    title: str | None
    detail: str | None = None
    #: What its owner lock said: ``alive`` (a with-block runs), ``dead``, or ``unknown`` (none).
    owner: Liveness = "unknown"
    opened_pid: int | None = None
    #: Sessions only.
    local_state: LocalState | None = None
    opened_at: datetime | None = None
    #: Create intents only.
    idempotency_key: str | None = None
    recorded_at: datetime | None = None

    @property
    def live(self) -> bool:
        """A running with-block owns it."""
        return self.owner == "alive"

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
    *, owner: Liveness, include_live: bool, moment: datetime | None, cutoff: datetime
) -> str | None:
    """Why a record must be left alone now, or None to act on it."""
    if owner == "alive":
        if include_live:
            return None
        return (
            "live: a running with-block holds its lock (or another reap is ending it); "
            "include_live=True ends it anyway"
        )
    if owner == "dead":
        return None  # the kernel released its owner's lock: its process has exited
    if moment is not None and moment > cutoff:
        return "too recent, and no owner lock to ask (recorded by an older version): see older_than"
    return None


def decide_session(
    s: CachedSession, *, owner: Liveness, cutoff: datetime, include_live: bool
) -> ReapOutcome:
    """``would_end`` (which ``reap`` carries out unless ``dry_run``) or ``skipped``.

    An end-pending session is always ended: its with-block has already exited. Otherwise a dead
    owner means now, a live one means never (unless ``include_live``), and no lock at all means
    by age (``cutoff``).
    """
    base = ReapOutcome(
        kind="session",
        action="would_end",
        session_id=s.session_id,
        title=s.title,
        local_state=s.local_state,
        opened_at=s.opened_at,
        opened_pid=s.opened_pid,
        owner=owner,
    )
    if s.local_state == LOCAL_END_PENDING:
        return base
    reason = _skip_reason(
        owner=owner, include_live=include_live, moment=s.opened_at or s.created_at, cutoff=cutoff
    )
    return base if reason is None else attrs.evolve(base, action="skipped", detail=reason)


def decide_intent(
    intent: CreateIntent, *, owner: Liveness, cutoff: datetime, include_live: bool
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
        owner=owner,
    )
    reason = _skip_reason(
        owner=owner, include_live=include_live, moment=intent.recorded_at, cutoff=cutoff
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
) -> ReapReport:
    """End what this machine opened on the client's server and never saw ended; return one
    outcome per record.

    A record whose with-block has exited (its owner lock is free) is dealt with at once; one
    whose block still runs is left alone unless ``include_live``. ``older_than`` (default
    ``REAP_DEFAULT_OLDER_THAN``, 1 h; ``timedelta(0)`` for all) applies only to records with no
    owner lock (older versions). ``dry_run`` sends nothing and writes nothing. ``cache`` is
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
    opened, owned = open_cache(cache, client.key_scope, server=client.server, readonly=dry_run)
    if opened is None:  # pragma: no cover - cache_path said it is not False
        return ReapReport(dry_run=dry_run)
    try:
        outcomes = [
            _reap_session(client, opened, s, cutoff, dry_run, include_live)
            for s in opened.pending_ends()
        ]
        outcomes += [
            _reap_intent(client, opened, i, cutoff, dry_run, include_live)
            for i in opened.create_intents()
        ]
    finally:
        if owned:
            opened.close()
    return ReapReport(dry_run=dry_run, outcomes=tuple(outcomes))


_RESOLVED_MEANWHILE = "resolved meanwhile (by its with-block or another reap)"


def _reap_session(
    client: PdffillrClient,
    cache: HistoryCache,
    s: CachedSession,
    cutoff: datetime,
    dry_run: bool,
    include_live: bool,
) -> ReapOutcome:
    with cache.probe_owner(s.owner_lock) as probe:
        decided = decide_session(s, owner=probe.liveness, cutoff=cutoff, include_live=include_live)
        if decided.action != "would_end" or dry_run:
            return decided
        now = cache.session(s.session_id)  # read again, under the lock
        if now is None or not now.end_pending:
            return attrs.evolve(decided, action="skipped", detail=_RESOLVED_MEANWHILE)
        done = _with_end(decided, end_one(client, cache, s.session_id))
        probe.close(resolved=done.action in _RESOLVED)
        return done


def _with_end(outcome: ReapOutcome, ended: EndOutcome) -> ReapOutcome:
    """A ``would_end`` outcome completed with what ending the session did."""
    if ended.action == "ended":
        return attrs.evolve(outcome, action="ended", detail=None)
    if ended.action == "not_found" and ended.recorded:
        return attrs.evolve(
            outcome, action="gone", detail="the server no longer has it: marked ended"
        )
    if ended.action == "not_found":
        return attrs.evolve(
            outcome,
            action="skipped",
            detail=(
                "not found on this server, and its row does not say which server it was "
                "opened on (recorded by an older version): left as it is"
            ),
        )
    return attrs.evolve(outcome, action="failed", detail=ended.detail)


def _reap_intent(
    client: PdffillrClient,
    cache: HistoryCache,
    intent: CreateIntent,
    cutoff: datetime,
    dry_run: bool,
    include_live: bool,
) -> ReapOutcome:
    with cache.probe_owner(intent.owner_lock) as probe:
        decided = decide_intent(
            intent, owner=probe.liveness, cutoff=cutoff, include_live=include_live
        )
        if decided.action != "would_replay_and_end" or dry_run:
            return decided
        key = intent.idempotency_key
        if all(i.idempotency_key != key for i in cache.create_intents()):  # again, locked
            return attrs.evolve(decided, action="skipped", detail=_RESOLVED_MEANWHILE)
        try:
            info = client.sessions.create(intent.title, idempotency_key=key)
        except BadRequestError as exc:
            # The server refuses this create outright: it never made a session from it.
            cache.forget_create_intent(key)
            probe.close(resolved=True)
            detail = f"the server refused the create: {one_line(exc)}"
            return attrs.evolve(decided, action="dropped", detail=detail)
        except PdffillrError as exc:
            detail = f"replaying the create failed: {one_line(exc)}"
            return attrs.evolve(decided, action="failed", detail=detail)
        found = attrs.evolve(decided, session_id=info.session_id)
        try:
            # Recorded as opened (with the dead owner's lock name) before the end: if the end
            # fails, or this reap dies, the next reap finds a session it can end at once.
            cache.record_opened(info, idempotency_key=key, owner_lock=intent.owner_lock)
        except CacheError:
            # Its id is another server's row in this cache, which cannot hold both: end it
            # upstream all the same, and forget the intent once it is ended.
            done = _with_end(found, end_one(client, None, info.session_id))
            if done.action == "ended":
                cache.forget_create_intent(key)
                probe.close(resolved=True)
            return done
        done = _with_end(found, end_one(client, cache, info.session_id))
        probe.close(resolved=done.action in _RESOLVED)
        if done.action == "ended":
            return attrs.evolve(done, detail="recovered from a create whose reply was lost")
        return done
