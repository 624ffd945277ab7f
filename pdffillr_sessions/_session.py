"""``with Session(client, title=...) as s:``: a session that is always ended, and mirrored.

The API has no automatic timeout: a session left active holds AI pipeline resources until
someone ends it. ``Session`` creates one on entry and ends it on every exit (success, exception,
``KeyboardInterrupt``), and mirrors what it said and heard into the local ``HistoryCache``.

The cache is told about a create *before* it is sent (the intent and its Idempotency-Key), and
about the session before the block runs, so that a process killed at any point leaves enough on
disk for ``pdffillr-sessions reap`` to end what it opened. From before the intent is written
until the end is recorded, the block holds an owner lock (``HistoryCache.acquire_owner``: a
``flock``ed file, ``_owner``, or on PostgreSQL an advisory lock, ``cache._pg_locks``) that the
kernel or the database drops when the process dies: ``reap`` ends a dead block's session at once
and never a running one's. The block asks its lock before each send and attach: a PostgreSQL
lock whose connection was cut makes it stop (``OwnerLockLostError``; its exit ends the session),
since a reaper elsewhere may then end the session at any moment.

SIGTERM and SIGHUP unwind the block like Ctrl-C (``_signals``); ``__exit__`` bounds its final
mirror and its end with deadlines of their own (``FINAL_MIRROR_DEADLINE``, ``END_DEADLINE``),
so that a hung history fetch cannot keep the end from being sent.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal

import attrs

from . import _signals
from ._calls import new_idempotency_key
from ._client import PdffillrClient
from ._exceptions import (
    APIConnectionError,
    InternalServerError,
    NotFoundError,
    PdffillrError,
    SessionEndedError,
    SessionStateError,
)
from ._models import HistoryEntry, SessionInfo
from ._validation import validate_session_id, validate_title

if TYPE_CHECKING:
    from .cache import CacheArg, HistoryCache
    from .cache._backend import OwnerLock

__all__ = ["Session"]

logger = logging.getLogger("pdffillr_sessions")

_NEW, _OPEN, _CLOSED = "new", "open", "closed"

#: Seconds ``__exit__`` gives the final history fetch (best effort), whatever the client's
#: ``Timeout`` says (its ``total`` still applies when shorter): a server that hangs or trickles
#: cannot keep the end from being sent. A history it cuts short is caught up by ``sync``.
FINAL_MIRROR_DEADLINE = 5.0
#: Seconds ``__exit__`` gives the end, retries included (or the client's shorter ``total``).
#: An end that does not make it is recorded end-pending, for ``reap``. With the final mirror,
#: a block's exit takes at most about 20 s more than its body, which is also how long a
#: SIGTERM arriving during the exit waits.
END_DEADLINE = 15.0


class Session:
    """One Pdffillr session, created on ``__enter__`` and always ended on ``__exit__``.

    >>> with Session(client, title="Q4 Contract Review") as s:   # doctest: +SKIP
    ...     s.send("Summarise the side letter")

    ``cache`` is where the history is mirrored: ``None`` for the default file
    (``PDFFILLR_SESSIONS_DB`` or the user data directory), a path, a ``HistoryCache``, or
    ``False`` for no mirroring. To continue an existing session without creating or ending it,
    use ``Session.resume(client, session_id)``.

    A Session may be shared by threads: its calls run one at a time, so the cache holds the
    entries in the order the server appended them.

    While the block runs in the main thread, SIGTERM and SIGHUP raise ``Terminated`` in it
    (unwinding it like Ctrl-C, so the session is ended) and the process then dies of the signal
    as it would have; ``handle_signals=False`` leaves signals alone (see ``_signals``).
    """

    def __init__(
        self,
        client: PdffillrClient,
        title: str | None = None,
        *,
        cache: CacheArg = None,
        handle_signals: bool = True,
    ) -> None:
        self._client = client
        self._title = validate_title(title)
        self._cache_arg = cache
        self._handle_signals = bool(handle_signals)
        self._cache: HistoryCache | None = None
        self._owns_cache = False
        self._info: SessionInfo | None = None
        self._state = _NEW
        self._ends_on_exit = True
        self._ended_upstream = False  # a send was refused with 409: ended by someone else
        self._pid = os.getpid()  # the opener: a forked child never ends its parent's session
        self._owner: OwnerLock | None = None  # held from the create intent to the recorded end
        self._resolved = False  # the cache says the session is ended: nothing left for reap
        # One call at a time: a Session shared by threads sends in turn, so the cache holds the
        # entries in the order the server appended them.
        self._lock = threading.RLock()

    # -- construction for existing sessions ---------------------------------------------------

    @classmethod
    def resume(
        cls,
        client: PdffillrClient,
        session_id: str,
        *,
        cache: CacheArg = None,
    ) -> Session:
        """A handle on an existing session: it is neither created nor ended by this object.

        Use it directly or in a ``with`` block (which then only closes the cache). Raises
        ``NotFoundError`` if the key has no such session. Call ``end()`` to end it explicitly.
        """
        validate_session_id(session_id)
        info = next((s for s in client.sessions.list() if s.session_id == session_id), None)
        if info is None:
            raise NotFoundError(
                f"no session {session_id!r} under this API key",
                status_code=404,
                error_type="not_found",
            )
        self = cls(client, info.title, cache=cache)
        self._info = info
        self._ends_on_exit = False
        self._state = _OPEN if info.active else _CLOSED
        self._cache, self._owns_cache = _open_cache(client, cache)
        self._cache_write("record the resumed session", lambda c: c.upsert_sessions([info]))
        return self

    # -- properties -----------------------------------------------------------------------------

    @property
    def info(self) -> SessionInfo:
        """The latest ``SessionInfo`` the server gave for this session."""
        if self._info is None:
            raise SessionStateError("the session has not been created yet: enter the with-block")
        return self._info

    @property
    def session_id(self) -> str:
        return self.info.session_id

    @property
    def title(self) -> str | None:
        return self._info.title if self._info is not None else self._title

    @property
    def ended(self) -> bool:
        """True once this session is ended (by this object, or found ended upstream)."""
        return self._state == _CLOSED or self._ended_upstream

    @property
    def cache(self) -> HistoryCache | None:
        return self._cache

    def __repr__(self) -> str:
        sid = self._info.session_id if self._info else None
        return f"Session(session_id={sid!r}, title={self.title!r}, state={self._state!r})"

    # -- the with-block -------------------------------------------------------------------------

    def __enter__(self) -> Session:
        if self._ends_on_exit:
            if self._state != _NEW:
                raise SessionStateError("a Session can be entered only once")
            self._pid = os.getpid()
            try:
                if self._handle_signals:
                    _signals.enter(self)
                self._open()
            except BaseException:
                _signals.leave(self, block_failed=True)
                raise
        return self

    def _open(self) -> None:
        self._state = _OPEN  # from here on a second __enter__ is refused
        try:
            self._cache, self._owns_cache = _open_cache(self._client, self._cache_arg)
            cache = self._cache
            key = new_idempotency_key()
            if cache is not None:
                # Locked before the intent is written, held until the end is recorded: reap
                # learns from the kernel (or the PostgreSQL server) whether this block runs.
                self._owner = cache.acquire_owner()
                # Written before the request: a crash between the server's reply and the next
                # write leaves the intent, and its key lets `reap` replay the create and end it.
                cache.record_create_intent(key, self._title, owner_lock=self._owner_name)
        except BaseException as exc:
            self._state = _CLOSED
            # A failed write is rolled back (Exception); an interrupt may land after the
            # intent's commit, so its lock file stays for reap to find unlocked.
            self._release_owner(resolved=isinstance(exc, Exception))
            self._close_cache()
            raise
        try:
            info = self._client.sessions.create(self._title, idempotency_key=key)
        except BaseException as exc:
            self._state = _CLOSED
            # Forgotten only when the server surely made nothing; otherwise kept, and with the
            # lock released reap replays it at once (the block has exited).
            forgotten = (
                cache is not None
                and _definitely_not_created(exc)
                and self._cache_write(
                    "forget the create intent", lambda c: c.forget_create_intent(key)
                )
            )
            self._release_owner(resolved=forgotten)
            self._close_cache()
            raise
        self._info = info
        if cache is not None:
            try:
                cache.record_opened(info, idempotency_key=key, owner_lock=self._owner_name)
            except BaseException:
                # The block must not run with a session the cache does not know about; end it.
                # The intent stays (with the lock file): reap's replay finds it ended.
                self._state = _CLOSED
                self._end_quietly()
                self._release_owner(resolved=False)
                self._close_cache()
                raise

    @_signals.defers_signals
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        try:
            if os.getpid() != self._pid:
                return False  # a forked child: the session, cache and lock are the parent's
            try:
                if self._ends_on_exit and self._state == _OPEN:
                    self._finish(exc)
            finally:
                self._state = _CLOSED if self._ends_on_exit else self._state
                self._release_owner(resolved=self._resolved)
                self._close_cache()
        finally:
            if self._ends_on_exit:
                _signals.leave(self, block_failed=exc is not None)
        return False

    def _finish(self, block_exc: BaseException | None) -> None:
        """Mirror the final history (best effort), end the session, record the outcome."""
        with self._lock:
            self._finish_locked(block_exc)

    def _finish_locked(self, block_exc: BaseException | None) -> None:
        self._state = _CLOSED  # no more sends, whatever happens below
        interrupted: BaseException | None = None
        if self._cache is not None:
            try:
                final = self._within(FINAL_MIRROR_DEADLINE).sessions.messages(self.session_id)
                self._mirror(final)
            except Exception as exc:
                logger.warning(
                    "could not mirror the final history of session %s: %s", self.session_id, exc
                )
            except BaseException as exc:  # a second Ctrl-C: give up the mirror, never the end
                interrupted = exc
        try:
            self._within(END_DEADLINE).sessions.end(self.session_id)
        except BaseException as end_exc:
            reason = f"{type(end_exc).__name__}: {end_exc}"
            self._cache_write(
                "mark the session end-pending",
                lambda c: c.mark_end_pending(self.session_id, reason),
            )
            logger.error(
                "could not end session %s (%s: %s); it is kept as end-pending in the cache: "
                "run `pdffillr-sessions reap` to end it",
                self.session_id,
                type(end_exc).__name__,
                end_exc,
            )
            if block_exc is None:
                raise
            block_exc.add_note(
                f"pdffillr-sessions: ending session {self.session_id} also failed: "
                f"{type(end_exc).__name__}: {end_exc} (kept as end-pending; run "
                "`pdffillr-sessions reap`)"
            )
            return
        self._info = attrs.evolve(self.info, status="ended")
        self._resolved = self._cache_write(
            "mark the session ended", lambda c: c.mark_ended(self.session_id)
        )
        if interrupted is not None and block_exc is None:
            raise interrupted

    def _within(self, deadline: float) -> PdffillrClient:
        """The client, with ``deadline`` seconds for a whole call (retries included)."""
        timeout = self._client.timeout
        total = deadline if timeout.total is None else min(timeout.total, deadline)
        return self._client.with_options(timeout=attrs.evolve(timeout, total=total))

    # -- operations -----------------------------------------------------------------------------

    def send(self, content: str) -> builtins.list[HistoryEntry]:
        """Send a message; returns the appended entries, mirrored into the cache at once."""
        return self._appending("send", lambda sid: self._client.sessions.send(sid, content))

    def attach(
        self,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None = None,
        url: str | None = None,
        filename: str | None = None,
        content_type: str = "application/pdf",
    ) -> builtins.list[HistoryEntry]:
        """Attach a document (upload or URL); returns the appended entries, mirrored at once."""
        return self._appending(
            "attach a document to",
            lambda sid: self._client.sessions.attach(
                sid, file=file, url=url, filename=filename, content_type=content_type
            ),
        )

    def _appending(
        self, verb: str, call: Callable[[str], builtins.list[HistoryEntry]]
    ) -> builtins.list[HistoryEntry]:
        with self._lock:
            self._require_open(verb)
            if self._owner is not None:
                self._owner.check()  # lost: a reaper may end it any moment; send nothing more
            try:
                entries = call(self.session_id)
            except SessionEndedError:
                self._found_ended_upstream()
                raise
            self._append(entries)
            return entries

    def _found_ended_upstream(self) -> None:
        """The server says the session has ended (someone else ended it)."""
        self._ended_upstream = True
        self._info = attrs.evolve(self.info, status="ended")
        if not self._ends_on_exit:  # no __exit__ will record it: do it now
            self._state = _CLOSED
            self._cache_write("mark the session ended", lambda c: c.mark_ended(self.session_id))
        # A with-block's __exit__ still mirrors the final history and records the end.

    def history(self) -> builtins.list[HistoryEntry]:
        """Fetch the full history from the server, mirror it, and return it (oldest first)."""
        with self._lock:
            entries = self._client.sessions.messages(self.session_id)
            self._mirror(entries)
            return entries

    def end(self) -> None:
        """End the session now (also for a resumed session). Ending twice is harmless."""
        if self._state == _NEW:
            raise SessionStateError("the session has not been created yet")
        self._client.sessions.end(self.session_id)
        self._state = _CLOSED
        self._info = attrs.evolve(self.info, status="ended")
        self._resolved = self._cache_write(
            "mark the session ended", lambda c: c.mark_ended(self.session_id)
        )

    # -- helpers ----------------------------------------------------------------------------------

    def _require_open(self, verb: str) -> None:
        if self._state == _NEW:
            raise SessionStateError("the session has not been created yet: enter the with-block")
        if self._state == _CLOSED or self._ended_upstream:
            raise SessionEndedError(
                f"session {self._info.session_id if self._info else '?'} has ended; cannot {verb} "
                "it (no request was sent)",
                status_code=409,
                error_type="session_ended",
            )

    def _append(self, entries: builtins.list[HistoryEntry]) -> None:
        # The server already has these entries: a cache failure must not look like a failed
        # send (a caller retrying it would send twice). It is logged; history() catches up.
        self._cache_write(
            "mirror the appended entries", lambda c: c.append_entries(self.session_id, entries)
        )

    def _mirror(self, entries: builtins.list[HistoryEntry]) -> None:
        self._cache_write(
            "mirror the history", lambda c: c.mirror_history(self.session_id, entries)
        )

    def _cache_write(self, what: str, write: Any) -> bool:
        """Run a cache write; a failure is logged, never raised. Returns whether it was made."""
        if self._cache is None:
            return False
        try:
            write(self._cache)
        except Exception as exc:
            logger.warning("history cache: could not %s: %s", what, exc)
            return False
        return True

    @property
    def _owner_name(self) -> str | None:
        return None if self._owner is None else self._owner.name

    def _release_owner(self, *, resolved: bool) -> None:
        """Let go of the owner lock: the block is done with the session (or never got one).
        ``resolved``: no record of it is left for reap (its lock file is deleted too)."""
        if self._owner is not None:
            self._owner.release(resolved=resolved)

    def _end_quietly(self) -> None:
        try:
            self._within(END_DEADLINE).sessions.end(self.session_id)
        except PdffillrError as exc:
            logger.error("could not end session %s: %s", self.session_id, exc)

    def close(self) -> None:
        """Close the cache this Session opened (a with-block does it on exit). It does NOT end
        the session: for a resumed session used without ``with``, call ``end()`` for that."""
        with self._lock:
            self._close_cache()

    def _close_cache(self) -> None:
        if self._owns_cache and self._cache is not None:
            self._cache.close()
            self._cache = None
            self._owns_cache = False


def _open_cache(client: PdffillrClient, cache: CacheArg) -> tuple[HistoryCache | None, bool]:
    from .cache import open_cache  # lazy: `import pdffillr_sessions` stays light

    return open_cache(cache, client.key_scope, server=client.server)


def _definitely_not_created(exc: BaseException) -> bool:
    """True when a failed create surely made nothing upstream: a 4xx, a local refusal, or a
    connection that no attempt ever opened (refused, DNS failure: ``request_sent`` False).

    After a timeout, a reset, a 5xx or an interrupt the server may have acted: the intent stays,
    so ``reap`` can replay the create with the same key and end what it finds.
    """
    if isinstance(exc, APIConnectionError):
        return not exc.request_sent
    if isinstance(exc, InternalServerError):
        return False
    return isinstance(exc, PdffillrError)
