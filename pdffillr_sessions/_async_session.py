"""``async with AsyncSession(client, title=...) as s:``: ``Session`` for asyncio programs.

The steps, their order and every decision are ``_lifecycle.Lifecycle``'s, shared with
``Session``: the intent recorded before the create, the owner lock held until the end is
recorded, the session always ended on exit, the block's exception unchanged, end-pending on a
failed end, one Idempotency-Key per logical call, every appended entry mirrored at once. This
module is only the asyncio I/O they run on (``_AsyncIO``):

* requests go through the ``AsyncPdffillrClient``;
* every cache and owner-lock operation runs in the session's own worker thread
  (``_offloop.SerialThread``), never on the event loop: a cache file that another process is
  writing can hold a write for SQLite's busy timeout (30 s), and the loop must keep serving
  everything else meanwhile. One thread per session keeps its operations in the order the
  session asked for them (so the cache holds the server's order), and many sessions in one loop
  each keep their own order without waiting for one another's queue. An operation is never
  abandoned halfway: a cancelled caller waits for it, then the cancellation propagates;
* calls on one handle are serialised by an ``asyncio.Lock``.

Cancellation is an exit like any other (``task.cancel()``, ``asyncio.timeout()`` around the
block, a failing ``TaskGroup`` sibling, Ctrl-C under ``asyncio.run``): the ``CancelledError``
unwinds the block, and ``__aexit__`` ends the session. The exit runs in a task of its own that
nothing cancels: a cancellation that arrives while it runs waits for it (bounded by the exit's
deadlines, as a signal waits for ``Session.__exit__``) and then propagates, unless the block's
own exception is propagating (``exit_error`` decides, as for ``Session``). The task's
``cancelling()`` count is left as the cancellers set it, so ``asyncio.timeout`` and ``TaskGroup``
still recognise their own cancellation.

SIGTERM and SIGHUP follow ``_signals``'s policy: they cancel the block's task, the exit ends
the session, and when the last block has left the process dies of the signal.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from . import _signals
from ._async_client import AsyncPdffillrClient
from ._lifecycle import Lifecycle, SessionProperties, exit_error, exit_timeout
from ._models import HistoryEntry, SessionInfo
from ._offloop import SerialThread, finish_through_cancellation

if TYPE_CHECKING:
    from .cache import CacheArg

__all__ = ["AsyncSession"]

T = TypeVar("T")


class AsyncSession(SessionProperties):
    """One Pdffillr session, created on ``__aenter__`` and always ended on ``__aexit__``.

    >>> async with AsyncSession(client, title="Q4 Contract Review") as s:   # doctest: +SKIP
    ...     await s.send("Summarise the side letter")

    The same arguments, properties, errors and guarantees as ``Session`` (see the module
    docstring for what differs: where the cache work runs, and cancellation). To continue an
    existing session without creating or ending it: ``await AsyncSession.resume(client, id)``.
    """

    def __init__(
        self,
        client: AsyncPdffillrClient,
        title: str | None = None,
        *,
        cache: CacheArg = None,
        handle_signals: bool = True,
    ) -> None:
        self._io = _AsyncIO(client)
        self._life = Lifecycle(self._io, title, cache)
        self._handle_signals = bool(handle_signals)

    @classmethod
    async def resume(
        cls,
        client: AsyncPdffillrClient,
        session_id: str,
        *,
        cache: CacheArg = None,
    ) -> AsyncSession:
        """A handle on an existing session: it is neither created nor ended by this object.

        Use it directly or in an ``async with`` block (which then only closes the cache).
        Raises ``NotFoundError`` if the key has no such session. ``await s.end()`` ends it.
        """
        self = cls(client, cache=cache)
        await self._life.resume(session_id)
        return self

    # -- the with-block -------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncSession:
        if self._life.begin_block():
            try:
                if self._handle_signals:
                    _signals.enter(self, task=asyncio.current_task())
                await self._life.open()
            except BaseException:
                _signals.leave(self, block_failed=True)
                self._io.shutdown()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        _signals.exiting(self)
        try:
            await self._exit_through_cancellation(self._life.exit(exc), exc)
        finally:
            if self._life.ends_on_exit:
                _signals.leave(self, block_failed=exc is not None)
            self._io.shutdown()
        return False

    async def _exit_through_cancellation(
        self, exit_step: Coroutine[Any, Any, None], block_exc: BaseException | None
    ) -> None:
        """Run the exit in a task of its own, to its end, whatever cancels this one meanwhile;
        then raise what ``exit_error`` decides with the cancellation that waited, if any."""
        step = asyncio.ensure_future(exit_step)
        waited = await finish_through_cancellation(step)  # not uncancel()ed: re-raised below
        # The exit task itself is cancelled only by a loop shutting down (asyncio.run cancels
        # every task left): its own handling has then recorded the end as pending.
        raised = asyncio.CancelledError() if step.cancelled() else step.exception()
        if waited is None:
            if raised is not None:
                raise raised
            return
        info = self._life.info
        error = exit_error(block_exc, raised, waited, info.session_id if info else "?")
        if error is not None:
            raise error

    # -- operations -----------------------------------------------------------------------------

    async def send(self, content: str) -> builtins.list[HistoryEntry]:
        """Send a message; returns the appended entries, mirrored into the cache at once."""
        io = self._io
        return await self._life.appending("send", lambda sid: io.send(sid, content))

    async def attach(
        self,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None = None,
        url: str | None = None,
        filename: str | None = None,
        content_type: str = "application/pdf",
    ) -> builtins.list[HistoryEntry]:
        """Attach a document (upload or URL); returns the appended entries, mirrored at once."""
        io = self._io
        return await self._life.appending(
            "attach a document to",
            lambda sid: io.attach(
                sid, file=file, url=url, filename=filename, content_type=content_type
            ),
        )

    async def history(self) -> builtins.list[HistoryEntry]:
        """Fetch the full history from the server, mirror it, and return it (oldest first)."""
        return await self._life.history()

    async def end(self) -> None:
        """End the session now (also for a resumed session). Ending twice is harmless."""
        await self._life.end()

    async def aclose(self) -> None:
        """Close the cache this AsyncSession opened (a block does it on exit). It does NOT end
        the session: for a resumed session used without ``async with``, ``await end()``."""
        try:
            await self._life.close()
        finally:
            self._io.shutdown()


class _AsyncIO:
    """``AsyncSession``'s port (``_lifecycle.SessionIO``): the async client, the cache in the
    session's own worker thread, an ``asyncio.Lock``."""

    def __init__(self, client: AsyncPdffillrClient) -> None:
        self._client = client
        self._serial = asyncio.Lock()
        self._thread = SerialThread("pdffillr-session-cache")

    @property
    def key_scope(self) -> str:
        return self._client.key_scope

    @property
    def server(self) -> str:
        return self._client.server

    def _within(self, deadline: float | None) -> AsyncPdffillrClient:
        if deadline is None:
            return self._client
        return self._client.with_options(timeout=exit_timeout(self._client.timeout, deadline))

    async def create(self, title: str | None, idempotency_key: str) -> SessionInfo:
        return await self._client.sessions.create(title, idempotency_key=idempotency_key)

    async def list(self) -> builtins.list[SessionInfo]:
        return await self._client.sessions.list()

    async def send(self, session_id: str, content: str) -> builtins.list[HistoryEntry]:
        return await self._client.sessions.send(session_id, content)

    async def attach(
        self,
        session_id: str,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None,
        url: str | None,
        filename: str | None,
        content_type: str,
    ) -> builtins.list[HistoryEntry]:
        return await self._client.sessions.attach(
            session_id, file=file, url=url, filename=filename, content_type=content_type
        )

    async def messages(
        self, session_id: str, *, deadline: float | None = None
    ) -> builtins.list[HistoryEntry]:
        return await self._within(deadline).sessions.messages(session_id)

    async def end(self, session_id: str, *, deadline: float | None = None) -> None:
        await self._within(deadline).sessions.end(session_id)

    async def local(self, op: Callable[[], T]) -> T:
        return await self._thread.run(op)

    def serial(self) -> asyncio.Lock:
        return self._serial

    def shutdown(self) -> None:
        """No more operations for now: the worker thread ends once its queue is done."""
        self._thread.shutdown()
