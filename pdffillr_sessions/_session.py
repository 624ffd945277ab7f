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

SIGTERM and SIGHUP unwind the block like Ctrl-C (``_signals``); the block's exit bounds its
final mirror and its end with deadlines of their own (``_lifecycle.FINAL_MIRROR_DEADLINE``,
``END_DEADLINE``), so that a hung history fetch cannot keep the end from being sent.

Those steps, their order and every decision on the way are ``_lifecycle.Lifecycle``'s, shared
with ``AsyncSession``; this module is the blocking I/O they run on (``_BlockingIO``).
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal, TypeVar

from . import _signals
from ._client import PdffillrClient
from ._lifecycle import (
    Lifecycle,
    SessionProperties,
    exit_timeout,
    run_now,
)
from ._models import HistoryEntry, SessionInfo

if TYPE_CHECKING:
    from .cache import CacheArg

__all__ = ["Session"]

T = TypeVar("T")


class Session(SessionProperties):
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
        self._life = Lifecycle(_BlockingIO(client), title, cache)
        self._handle_signals = bool(handle_signals)

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
        self = cls(client, cache=cache)
        run_now(self._life.resume, session_id)
        return self

    # -- the with-block ----------------------------------------------------------------------------

    def __enter__(self) -> Session:
        if self._life.begin_block():
            try:
                if self._handle_signals:
                    _signals.enter(self)
                run_now(self._life.open)
            except BaseException:
                _signals.leave(self, block_failed=True)
                raise
        return self

    @_signals.defers_signals
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        try:
            run_now(self._life.exit, exc)
        finally:
            if self._life.ends_on_exit:
                _signals.leave(self, block_failed=exc is not None)
        return False

    # -- operations --------------------------------------------------------------------------------

    def send(self, content: str) -> builtins.list[HistoryEntry]:
        """Send a message; returns the appended entries, mirrored into the cache at once."""
        io = self._life.io
        return run_now(self._life.appending, "send", lambda sid: io.send(sid, content))

    def attach(
        self,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None = None,
        url: str | None = None,
        filename: str | None = None,
        content_type: str = "application/pdf",
    ) -> builtins.list[HistoryEntry]:
        """Attach a document (upload or URL); returns the appended entries, mirrored at once."""
        io = self._life.io
        return run_now(
            self._life.appending,
            "attach a document to",
            lambda sid: io.attach(
                sid, file=file, url=url, filename=filename, content_type=content_type
            ),
        )

    def history(self) -> builtins.list[HistoryEntry]:
        """Fetch the full history from the server, mirror it, and return it (oldest first)."""
        return run_now(self._life.history)

    def end(self) -> None:
        """End the session now (also for a resumed session). Ending twice is harmless."""
        run_now(self._life.end)

    def close(self) -> None:
        """Close the cache this Session opened (a with-block does it on exit). It does NOT end
        the session: for a resumed session used without ``with``, call ``end()`` for that."""
        run_now(self._life.close)


class _BlockingIO:
    """``Session``'s port (``_lifecycle.SessionIO``): the sync client, the cache in the calling
    thread, a re-entrant lock. Nothing here suspends, so ``run_now`` runs each step at once."""

    def __init__(self, client: PdffillrClient) -> None:
        self._client = client
        self._serial = _ThreadLock()

    @property
    def key_scope(self) -> str:
        return self._client.key_scope

    @property
    def server(self) -> str:
        return self._client.server

    def _within(self, deadline: float | None) -> PdffillrClient:
        if deadline is None:
            return self._client
        return self._client.with_options(timeout=exit_timeout(self._client.timeout, deadline))

    async def create(self, title: str | None, idempotency_key: str) -> SessionInfo:
        return self._client.sessions.create(title, idempotency_key=idempotency_key)

    async def list(self) -> builtins.list[SessionInfo]:
        return self._client.sessions.list()

    async def send(self, session_id: str, content: str) -> builtins.list[HistoryEntry]:
        return self._client.sessions.send(session_id, content)

    async def attach(
        self,
        session_id: str,
        *,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None,
        url: str | None,
        filename: str | None,
        content_type: str,
    ) -> builtins.list[HistoryEntry]:
        return self._client.sessions.attach(
            session_id, file=file, url=url, filename=filename, content_type=content_type
        )

    async def messages(
        self, session_id: str, *, deadline: float | None = None
    ) -> builtins.list[HistoryEntry]:
        return self._within(deadline).sessions.messages(session_id)

    async def end(self, session_id: str, *, deadline: float | None = None) -> None:
        self._within(deadline).sessions.end(session_id)

    async def local(self, op: Callable[[], T]) -> T:
        return op()

    def serial(self) -> _ThreadLock:
        return self._serial


class _ThreadLock:
    """A ``threading.RLock`` as the async context manager ``Lifecycle`` holds (never suspends):
    a Session shared by threads runs its calls one at a time."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    async def __aenter__(self) -> None:
        self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
