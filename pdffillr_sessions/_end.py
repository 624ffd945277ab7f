"""``end_sessions``: end sessions upstream by id and record the outcome in the cache.

Any session of the key can be ended, not only those a with-block opened (a session made by
another tool, or one found with ``sessions``). ``reap`` ends through ``end_one`` too, so that
"ended", "gone" and "failed" mean the same thing, and are recorded the same way, everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import attrs

from ._exceptions import CacheError, NotFoundError, PdffillrError, one_line
from ._validation import validate_session_id

if TYPE_CHECKING:
    from ._client import PdffillrClient
    from .cache import CacheArg, HistoryCache

__all__ = ["EndOutcome", "EndReport", "end_one", "end_sessions"]

#: ``ended``: the server confirmed the end (ending an ended session counts). ``not_found``: the
#: server has no such session under this key. ``failed``: the end request failed (kept
#: end-pending in the cache, so that ``reap`` retries it).
EndAction = Literal["ended", "not_found", "failed"]


@attrs.frozen(kw_only=True)
class EndOutcome:
    """What happened to one session id."""

    session_id: str
    action: EndAction
    #: One line: why it failed, or what the server said.
    detail: str | None = None
    #: ``not_found`` only: the cache recorded it ended (its row is of this very server). A row
    #: that does not say which server it is on is left as it is: the 404 may be the wrong
    #: server's.
    recorded: bool = False

    @property
    def ok(self) -> bool:
        return self.action == "ended"


@attrs.frozen(kw_only=True)
class EndReport:
    """The outcome of ``end_sessions``, one per distinct id, in the order given."""

    outcomes: tuple[EndOutcome, ...]

    @property
    def ok(self) -> bool:
        """True when every session was ended."""
        return all(o.ok for o in self.outcomes)

    @property
    def ended(self) -> tuple[str, ...]:
        return tuple(o.session_id for o in self.outcomes if o.ok)

    @property
    def problems(self) -> tuple[EndOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)


def end_one(client: PdffillrClient, cache: HistoryCache | None, session_id: str) -> EndOutcome:
    """End one session upstream and record the outcome in ``cache`` (when given).

    A 404 means the server no longer has it: recorded ended (nothing is left to end) when the
    row is this server's (``HistoryCache.mark_gone``). A failure is recorded end-pending, with
    the reason, for the next ``reap``. ``cache`` must be opened for the client's server.
    """
    try:
        client.sessions.end(session_id)
    except NotFoundError as exc:
        recorded = cache is not None and cache.mark_gone(session_id)
        return EndOutcome(
            session_id=session_id, action="not_found", detail=one_line(exc), recorded=recorded
        )
    except PdffillrError as exc:
        detail = one_line(exc)
        if cache is not None:
            cache.mark_end_pending(session_id, f"{type(exc).__name__}: {detail}")
        return EndOutcome(session_id=session_id, action="failed", detail=detail)
    if cache is not None:
        cache.mark_ended(session_id)
    return EndOutcome(session_id=session_id, action="ended")


def end_sessions(
    client: PdffillrClient, session_ids: Iterable[str], cache: CacheArg = None
) -> EndReport:
    """End these sessions upstream and record them ended in the cache.

    Every id is tried, whatever happened to the others; the report says what happened to each
    (an unknown id is ``not_found``). ``cache`` is what ``Session`` takes (None: the default
    file; False: record nothing). A session the cache did not hold is added to it from the
    server's list, so that the cache shows it ended.
    """
    ids = [validate_session_id(sid) for sid in dict.fromkeys(session_ids)]
    from .cache import open_cache

    opened, owned = open_cache(cache, client.key_scope, server=client.server)
    try:
        outcomes = tuple(end_one(client, opened, sid) for sid in ids)
        if opened is not None:
            _add_uncached(client, opened, [o.session_id for o in outcomes if o.ok])
    finally:
        if owned and opened is not None:
            opened.close()
    return EndReport(outcomes=outcomes)


def _add_uncached(client: PdffillrClient, cache: HistoryCache, ended: list[str]) -> None:
    """Mirror the rows of ended sessions the cache did not know (one list request, if any)."""
    unknown = {sid for sid in ended if cache.session(sid) is None}
    if not unknown:
        return
    try:
        listed = [info for info in client.sessions.list() if info.session_id in unknown]
        cache.upsert_sessions(listed)
    except CacheError:
        raise
    except PdffillrError:
        return  # the ends happened; the rows will come with the next sync
    for info in listed:
        cache.mark_ended(info.session_id)
