"""What a session handle does and decides, written once for ``Session`` and ``AsyncSession``.

A with-block's promises (the session always ended; the cache told about each step before the
next one, so that ``reap`` can finish what a dead process left; the block's own exception
unchanged) hang on the order of a dozen steps and on what is decided when one of them fails.
That order and those decisions live here and nowhere else:

* the pure decisions are plain functions (``definitely_not_created``, ``exit_error``,
  ``end_pending_reason``, ``exit_timeout``), tested on their own;
* the order of the steps is ``Lifecycle``, whose methods are coroutines written against a port
  (``SessionIO``) that does the I/O: send a request, run a cache or lock operation, serialise
  the calls of one handle.

The two classes differ only in their port:

* ``Session``'s port blocks (the sync client, the cache in the caller's thread, a
  ``threading.RLock``). Its coroutines therefore never suspend, and ``run_now`` runs each step
  to its end at once, in the caller's thread, with no event loop: the lines that run, and where
  an interrupt can land, are those of plain blocking code.
* ``AsyncSession``'s port awaits the async client and runs every cache and lock operation in
  the handle's own worker thread (one thread, so in the order the steps asked for them), never
  on the event loop.

Cache-side work that must happen together (open the cache, take the owner lock, record the
intent; forget the intent, let the lock go, close the cache) is one synchronous function run by
one ``SessionIO.local`` call, and the state it produces is set inside it: a sequence is never
left half done, and an asyncio caller cancelled meanwhile still finds the state it produced.
"""

from __future__ import annotations

import builtins
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import IO, TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

import attrs

from ._calls import new_idempotency_key
from ._config import Timeout
from ._contract import STATUS_ENDED
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    NotFoundError,
    PdffillrError,
    ProtocolError,
    SessionEndedError,
    SessionStateError,
)
from ._models import HistoryEntry, SessionInfo
from ._validation import validate_session_id, validate_title

if TYPE_CHECKING:
    from .cache import CacheArg, HistoryCache
    from .cache._backend import OwnerLock

__all__ = [
    "END_DEADLINE",
    "FINAL_MIRROR_DEADLINE",
    "Lifecycle",
    "SessionIO",
    "SessionProperties",
    "definitely_not_created",
    "end_pending_reason",
    "exit_error",
    "exit_timeout",
    "run_now",
]

logger = logging.getLogger("pdffillr_sessions")

T = TypeVar("T")
P = ParamSpec("P")

NEW, OPEN, CLOSED = "new", "open", "closed"

#: Seconds a block's exit gives the final history fetch (best effort), whatever the client's
#: ``Timeout`` says (its ``total`` still applies when shorter): a server that hangs or trickles
#: cannot keep the end from being sent. A history it cuts short is caught up by ``sync``.
FINAL_MIRROR_DEADLINE = 5.0
#: Seconds a block's exit gives the end, retries included (or the client's shorter ``total``).
#: An end that does not make it is recorded end-pending, for ``reap``. With the final mirror,
#: a block's exit takes at most about 20 s more than its body, which is also how long a
#: SIGTERM (``Session``) or a cancellation (``AsyncSession``) arriving during the exit waits.
END_DEADLINE = 15.0


# -- the pure decisions ----------------------------------------------------------------------------


def definitely_not_created(exc: BaseException) -> bool:
    """True when a failed create surely made nothing upstream: no attempt of it can have been
    acted on. That is a connection no attempt ever opened (refused, DNS failure:
    ``request_sent`` False), a refusal (4xx) after attempts that were all refused or never
    connected (``APIStatusError.may_have_acted`` False), or a refusal before any request (a
    bad title, a closed client).

    After a timeout, a reset, a 5xx or an unreadable 2xx (``ProtocolError``) on ANY attempt, or
    an interrupt or a cancellation, the server may have acted: the intent stays, so ``reap``
    can replay the create with the same key and end what it finds.
    """
    if isinstance(exc, APIConnectionError):
        return not exc.request_sent
    if isinstance(exc, APIStatusError):
        return not exc.may_have_acted
    return isinstance(exc, PdffillrError) and not isinstance(exc, ProtocolError)


def end_pending_reason(end_exc: BaseException) -> str:
    """What the cache keeps of an end that failed for good (``reap`` shows it)."""
    return f"{type(end_exc).__name__}: {end_exc}"


def exit_error(
    block_exc: BaseException | None,
    end_exc: BaseException | None,
    interrupted: BaseException | None,
    session_id: str,
) -> BaseException | None:
    """What a block's exit raises once the end is settled; None: the block's own exception (or
    nothing) propagates.

    * The block's own exception is never replaced: a failed end is only noted on it (a program
      that catches it must see its own error, not ours).
    * Otherwise an interruption that arrived during the exit (a second Ctrl-C during the final
      mirror, a cancellation of an ``AsyncSession``'s task) propagates, with a failed end noted
      on it: the program asked to stop, and structured concurrency (``asyncio.timeout``,
      ``TaskGroup``) counts on seeing its ``CancelledError``.
    * Otherwise a failed end is raised: a block that succeeded must not look as if its session
      had been ended (it is kept end-pending, for ``reap``).
    """
    carrier = block_exc if block_exc is not None else interrupted
    if carrier is None:
        return end_exc
    if end_exc is not None and end_exc is not carrier:
        carrier.add_note(
            f"pdffillr-sessions: ending session {session_id} also failed: "
            f"{end_pending_reason(end_exc)} (kept as end-pending; run `pdffillr-sessions reap`)"
        )
    return None if carrier is block_exc else carrier


def exit_timeout(timeout: Timeout, deadline: float) -> Timeout:
    """The client's ``Timeout`` with ``deadline`` seconds for a whole call, retries included
    (the client's own ``total`` wins when it is shorter)."""
    total = deadline if timeout.total is None else min(timeout.total, deadline)
    return attrs.evolve(timeout, total=total)


def run_now(step: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one ``Lifecycle`` step over a port that never suspends (``Session``'s), to its end.

    The coroutine is made and started on one line: no interrupt can land between the two and
    leave a coroutine that never ran.
    """
    try:
        suspended = step(*args, **kwargs).send(None)
    except StopIteration as done:
        return cast(T, done.value)
    raise RuntimeError(f"{step.__qualname__} suspended under a blocking port ({suspended!r})")


# -- the port --------------------------------------------------------------------------------------


class SessionIO(Protocol):
    """What ``Lifecycle`` needs done, and each class does its own way (see the module docstring).

    ``deadline``: seconds for the whole call, retries included (``exit_timeout``).
    """

    @property
    def key_scope(self) -> str: ...

    @property
    def server(self) -> str: ...

    async def create(self, title: str | None, idempotency_key: str) -> SessionInfo: ...

    async def list(self) -> builtins.list[SessionInfo]: ...

    async def send(self, session_id: str, content: str) -> builtins.list[HistoryEntry]: ...

    async def attach(
        self,
        session_id: str,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None,
        url: str | None,
        filename: str | None,
        content_type: str,
    ) -> builtins.list[HistoryEntry]: ...

    async def messages(
        self, session_id: str, *, deadline: float | None = None
    ) -> builtins.list[HistoryEntry]: ...

    async def end(self, session_id: str, *, deadline: float | None = None) -> None: ...

    async def local(self, op: Callable[[], T]) -> T:
        """Run a cache or lock operation; the operations of one handle run one at a time, in
        the order asked, and each runs to its end (a cancelled caller waits for it first)."""
        ...

    def serial(self) -> AbstractAsyncContextManager[None]:
        """Held around a handle's calls: one at a time, so the cache gets the server's order."""
        ...


# -- the lifecycle ---------------------------------------------------------------------------------


class Lifecycle:
    """The state of one session handle, and every step it takes (see the module docstring).

    ``ends_on_exit`` is True when the handle's with-block creates the session and so ends it;
    ``resume`` makes it False (the block then only closes the cache).
    """

    def __init__(self, io: SessionIO, title: str | None, cache: CacheArg) -> None:
        self.io = io
        self.requested_title = validate_title(title)
        self.cache_arg = cache
        self.cache: HistoryCache | None = None
        self.owns_cache = False
        self.info: SessionInfo | None = None
        self.state = NEW
        self.ends_on_exit = True
        self.ended_upstream = False  # a send was refused with 409: ended by someone else
        self.pid = os.getpid()  # the opener: a forked child never ends its parent's session
        self.owner: OwnerLock | None = None  # held from the create intent to the recorded end
        self.resolved = False  # the cache says the session is ended: nothing left for reap

    # -- state, no I/O -----------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        if self.info is None:
            raise SessionStateError("the session has not been created yet: enter the with-block")
        return self.info.session_id

    @property
    def ended(self) -> bool:
        return self.state == CLOSED or self.ended_upstream

    def begin_block(self) -> bool:
        """A with-block is entered: whether it creates (and so ends) the session. A handle is
        entered once (``SessionStateError``); a resumed one's block only closes its cache."""
        if not self.ends_on_exit:
            return False
        if self.state != NEW:
            raise SessionStateError("a session can be entered only once")
        self.pid = os.getpid()
        return True

    def require_open(self, verb: str) -> str:
        """The session id, if a call may be sent now; else the error, before any request."""
        if self.state == NEW:
            raise SessionStateError("the session has not been created yet: enter the with-block")
        if self.state == CLOSED or self.ended_upstream:
            raise SessionEndedError(
                f"session {self.info.session_id if self.info else '?'} has ended; cannot {verb} "
                "it (no request was sent)",
                status_code=409,
                error_type="session_ended",
            )
        return self.session_id

    def _now_ended(self) -> None:
        if self.info is not None:
            self.info = attrs.evolve(self.info, status=STATUS_ENDED)

    # -- entering the block ------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the session, recorded before (the intent) and after (opened here).

        Order, and why: the owner lock is taken before the intent is written and held until the
        end is recorded (``reap`` learns from the kernel, or the PostgreSQL server, whether the
        block still runs); the intent is written before the request (a crash between the
        server's reply and the next write leaves the intent, whose key lets ``reap`` replay the
        create and end the session); the session is recorded before the block runs (never a
        block the cache does not know).
        """
        self.state = OPEN  # from here on a second entry is refused
        key = new_idempotency_key()
        try:
            await self.io.local(lambda: self._prepare_now(key))
        except BaseException as exc:
            self.state = CLOSED
            # A failed write is rolled back (an Exception); an interrupt or a cancellation may
            # come after the intent's commit, so its lock file stays for reap to find unlocked.
            resolved = isinstance(exc, Exception)
            await self.io.local(lambda: self._let_go_now(resolved=resolved))
            raise
        try:
            info = await self.io.create(self.requested_title, key)
        except BaseException as exc:
            self.state = CLOSED
            # Forgotten only when the server surely made nothing; otherwise kept, and with the
            # lock released reap replays it at once (the block has exited).
            await self.io.local(functools.partial(self._after_failed_create_now, exc, key))
            raise
        self.info = info
        try:
            await self.io.local(lambda: self._record_opened_now(info, key))
        except BaseException:
            # The block must not run with a session the cache does not know about: end it. The
            # intent stays (with the lock file): reap's replay finds it ended.
            self.state = CLOSED
            await self._end_quietly()
            await self.io.local(lambda: self._let_go_now(resolved=False))
            raise

    def _prepare_now(self, key: str) -> None:
        from .cache import open_cache  # lazy: `import pdffillr_sessions` stays light

        self.cache, self.owns_cache = open_cache(
            self.cache_arg, self.io.key_scope, server=self.io.server
        )
        if self.cache is not None:
            # A flocked file (SQLite) or an advisory lock (PostgreSQL): see _owner, _pg_locks.
            self.owner = self.cache.acquire_owner()
            self.cache.record_create_intent(key, self.requested_title, owner_lock=self._owner_name)

    def _after_failed_create_now(self, exc: BaseException, key: str) -> None:
        forgotten = definitely_not_created(exc) and self._write_now(
            "forget the create intent", lambda c: c.forget_create_intent(key)
        )
        self._let_go_now(resolved=forgotten)

    def _record_opened_now(self, info: SessionInfo, key: str) -> None:
        if self.cache is not None:
            self.cache.record_opened(info, idempotency_key=key, owner_lock=self._owner_name)

    async def _end_quietly(self) -> None:
        try:
            await self.io.end(self.session_id, deadline=END_DEADLINE)
        except PdffillrError as exc:
            logger.error("could not end session %s: %s", self.session_id, exc)

    # -- leaving the block -------------------------------------------------------------------------

    async def exit(self, block_exc: BaseException | None) -> None:
        """The block is left: end what it opened, record it, let go of the lock and the cache.
        Raises what ``exit_error`` decides (None: the block's own exception propagates)."""
        if os.getpid() != self.pid:
            return  # a forked child: the session, cache and lock are the parent's
        try:
            if self.ends_on_exit and self.state == OPEN:
                await self._finish(block_exc)
        finally:
            if self.ends_on_exit:
                self.state = CLOSED
            await self.io.local(lambda: self._let_go_now(resolved=self.resolved))

    async def _finish(self, block_exc: BaseException | None) -> None:
        """Mirror the final history (best effort), end the session, record the outcome."""
        async with self.io.serial():
            self.state = CLOSED  # no more sends, whatever happens below
            sid = self.session_id
            interrupted: BaseException | None = None
            if self.cache is not None:
                try:
                    final = await self.io.messages(sid, deadline=FINAL_MIRROR_DEADLINE)
                    await self._mirror(final)
                except Exception as exc:
                    logger.warning("could not mirror the final history of session %s: %s", sid, exc)
                except BaseException as exc:  # a second Ctrl-C: give up the mirror, never the end
                    interrupted = exc
            end_exc: BaseException | None = None
            try:
                await self.io.end(sid, deadline=END_DEADLINE)
            except BaseException as exc:
                end_exc = exc
                reason = end_pending_reason(exc)
                await self._write(
                    "mark the session end-pending", lambda c: c.mark_end_pending(sid, reason)
                )
                logger.error(
                    "could not end session %s (%s); it is kept as end-pending in the cache: "
                    "run `pdffillr-sessions reap` to end it",
                    sid,
                    reason,
                )
            else:
                self._now_ended()
                await self.io.local(lambda: self._mark_ended_now(sid))
            error = exit_error(block_exc, end_exc, interrupted, sid)
            if error is not None:
                raise error

    def _mark_ended_now(self, session_id: str) -> None:
        self.resolved = self._write_now(
            "mark the session ended", lambda c: c.mark_ended(session_id)
        )

    # -- calls -------------------------------------------------------------------------------------

    async def appending(
        self, verb: str, call: Callable[[str], Awaitable[builtins.list[HistoryEntry]]]
    ) -> builtins.list[HistoryEntry]:
        """A send or an attach: the entries it appended, mirrored at once.

        The server already has them when the cache is written: a cache failure is logged, never
        raised (a caller retrying the send would send twice); ``history()`` or ``sync`` catch up.
        """
        async with self.io.serial():
            sid = self.require_open(verb)
            if self.owner is not None:
                # Lost: a reaper may end it any moment; send nothing more. (A PostgreSQL lock
                # asks its connection: I/O, so it runs where the port runs cache work.)
                await self.io.local(self.owner.check)
            try:
                entries = await call(sid)
            except SessionEndedError:
                await self._found_ended_upstream(sid)
                raise
            await self._write(
                "mirror the appended entries", lambda c: c.append_entries(sid, entries)
            )
            return entries

    async def _found_ended_upstream(self, session_id: str) -> None:
        """The server says the session has ended (someone else ended it)."""
        self.ended_upstream = True
        self._now_ended()
        if not self.ends_on_exit:  # no block's exit will record it: do it now
            self.state = CLOSED
            await self._write("mark the session ended", lambda c: c.mark_ended(session_id))
        # A with-block's exit still mirrors the final history and records the end.

    async def history(self) -> builtins.list[HistoryEntry]:
        """The full history from the server, mirrored (oldest first)."""
        async with self.io.serial():
            entries = await self.io.messages(self.session_id)
            await self._mirror(entries)
            return entries

    async def end(self) -> None:
        """End the session now (also a resumed one). Ending twice is harmless."""
        if self.state == NEW:
            raise SessionStateError("the session has not been created yet")
        sid = self.session_id
        await self.io.end(sid)
        self.state = CLOSED
        self._now_ended()
        await self.io.local(lambda: self._mark_ended_now(sid))

    async def resume(self, session_id: str) -> None:
        """Become a handle on an existing session of the key, which it neither created nor ends.
        ``NotFoundError`` if the key has no such session."""
        validate_session_id(session_id)
        listed = await self.io.list()
        info = next((s for s in listed if s.session_id == session_id), None)
        if info is None:
            raise NotFoundError(
                f"no session {session_id!r} under this API key",
                status_code=404,
                error_type="not_found",
            )
        self.info = info
        self.ends_on_exit = False
        self.state = OPEN if info.active else CLOSED
        await self.io.local(self._open_resumed_now)

    def _open_resumed_now(self) -> None:
        from .cache import open_cache

        self.cache, self.owns_cache = open_cache(
            self.cache_arg, self.io.key_scope, server=self.io.server
        )
        info = self.info
        if info is not None:
            self._write_now("record the resumed session", lambda c: c.upsert_sessions([info]))

    async def close(self) -> None:
        """Close the cache this handle opened (it does NOT end the session)."""
        async with self.io.serial():
            await self.io.local(self._close_cache_now)

    # -- the cache ---------------------------------------------------------------------------------

    async def _mirror(self, entries: builtins.list[HistoryEntry]) -> None:
        sid = self.session_id
        await self._write("mirror the history", lambda c: c.mirror_history(sid, entries))

    async def _write(self, what: str, write: Callable[[HistoryCache], object]) -> bool:
        if self.cache is None:  # no mirroring: not even a trip to the worker
            return False
        return await self.io.local(lambda: self._write_now(what, write))

    def _write_now(self, what: str, write: Callable[[HistoryCache], object]) -> bool:
        """Run a cache write; a failure is logged, never raised. Returns whether it was made."""
        cache = self.cache
        if cache is None:
            return False
        try:
            write(cache)
        except Exception as exc:
            logger.warning("history cache: could not %s: %s", what, exc)
            return False
        return True

    @property
    def _owner_name(self) -> str | None:
        return None if self.owner is None else self.owner.name

    def _let_go_now(self, *, resolved: bool) -> None:
        """Let go of the owner lock (``resolved``: no record is left for reap, so its file goes
        too), then close the cache: the block is done with the session (or never got one)."""
        try:
            if self.owner is not None:
                self.owner.release(resolved=resolved)
        finally:
            self._close_cache_now()

    def _close_cache_now(self) -> None:
        if self.owns_cache and self.cache is not None:
            self.cache.close()
            self.cache = None
            self.owns_cache = False


class SessionProperties:
    """The read-only view ``Session`` and ``AsyncSession`` share (no I/O, never awaited)."""

    _life: Lifecycle

    @property
    def info(self) -> SessionInfo:
        """The latest ``SessionInfo`` the server gave for this session."""
        if self._life.info is None:
            raise SessionStateError("the session has not been created yet: enter the with-block")
        return self._life.info

    @property
    def session_id(self) -> str:
        return self.info.session_id

    @property
    def title(self) -> str | None:
        info = self._life.info
        return info.title if info is not None else self._life.requested_title

    @property
    def ended(self) -> bool:
        """True once this session is ended (by this object, or found ended upstream)."""
        return self._life.ended

    @property
    def cache(self) -> HistoryCache | None:
        return self._life.cache

    def __repr__(self) -> str:
        info = self._life.info
        sid = info.session_id if info else None
        return (
            f"{type(self).__name__}(session_id={sid!r}, title={self.title!r}, "
            f"state={self._life.state!r})"
        )
