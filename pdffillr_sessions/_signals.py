"""SIGTERM and SIGHUP end a with-block's session, like Ctrl-C does, and still kill the process.

Python's default for SIGTERM (what ``kill``, ``timeout``, ``docker stop``, systemd and Kubernetes
send) and SIGHUP is to die at once: no ``finally``, no ``__exit__``, and a session that the API
never times out stays active. While a ``Session`` block runs in the main thread, this module
puts a handler on each of them that raises ``Terminated``, which unwinds the block like
``KeyboardInterrupt``, so ``__exit__`` ends the session. When the last such block has exited,
the previous handlers are back and the signal is raised again: the process dies of it, with the
status its parent expects (``-15`` for ``subprocess``, 143 in a shell), only later.

How it combines with the program's own handling:

* Only a signal whose handler is the default (``SIG_DFL``) is taken over. A program that set
  its own handler, or ignores the signal (``nohup`` ignores SIGHUP), keeps it untouched: its
  handler decides; if it raises (``sys.exit()`` does), the block unwinds and ends its session.
* A handler the program installs while a block runs stays installed when the block exits.
* A signal that arrives while a block's ``__exit__`` is running (ending the session) waits
  until it is done: the end has its own deadline, so this is bounded.
* A program that catches ``Terminated`` inside the block and carries on is killed when the
  last block exits: the signal is deferred, never lost.
* Nested blocks count: handlers go in with the first and come out with the last. Blocks in other
  threads change nothing (Python runs handlers in the main thread, and only it may set them);
  a signal kills such a process at once, and ``reap`` ends the sessions at once (their owner
  lock died with the process).
* Opt out with ``Session(..., handle_signals=False)``.
* A child made with ``os.fork()`` gets the previous handlers back: it owns no block.

``AsyncSession`` blocks follow the same policy, with one difference in how the block learns of
the signal. Their event loop runs in this thread, and an exception raised into it at an
arbitrary instruction could stop it anywhere; so while an async block is entered the handler
raises nothing: it cancels the task of every async block still in its body (as
``asyncio.Runner`` does for Ctrl-C), and each block's exit ends its session, then lets the
``CancelledError`` propagate. A block already in its exit is not cancelled (it waits, like a
``Session.__exit__``). When the last block leaves, the signal is raised again as above. A
``Session`` block inside a coroutine that runs an async block is not interrupted: its task is
cancelled at its next ``await``. Async blocks whose loop no longer runs count for nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import Terminated

if TYPE_CHECKING:
    import asyncio

__all__ = ["HANDLED_SIGNALS", "Terminated", "defers_signals", "enter", "exiting", "leave"]

F = TypeVar("F", bound=Callable[..., Any])

#: SIGTERM, and SIGHUP where it exists (not on Windows).
HANDLED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _State:
    """The process-wide state, touched only from the main thread."""

    def __init__(self) -> None:
        #: The main-thread blocks entered and not yet left. Weak: a block abandoned without its
        #: exit (an interrupt on its first line) goes away with its ``Session``, and the next
        #: ``enter``/``leave``, or signal, finds no block and puts the previous handlers back.
        self.blocks: weakref.WeakSet[Any] = weakref.WeakSet()
        #: The async blocks among them, and the loop each runs in.
        self.async_blocks: weakref.WeakKeyDictionary[Any, asyncio.AbstractEventLoop] = (
            weakref.WeakKeyDictionary()
        )
        #: The async blocks still in their body, and the task a signal cancels for each.
        self.tasks: weakref.WeakKeyDictionary[Any, asyncio.Task[Any]] = weakref.WeakKeyDictionary()
        #: signum -> the handler ours replaced, for the signals we took over.
        self.previous: dict[int, Any] = {}
        #: The first signal received and not yet re-raised.
        self.pending: int | None = None


_state = _State()
#: Code objects during which a signal waits (``Session.__exit__``): see ``defers_signals``.
_deferring: set[Any] = set()


def defers_signals(func: F) -> F:
    """Mark ``func`` (unchanged, no wrapper): a signal arriving while it runs waits for it.

    The handler looks for its code on the interrupted stack, so even a signal that lands on its
    very first instruction waits, which no ``try`` inside it could promise.
    """
    _deferring.add(func.__code__)
    return func


def _in_deferring_code(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code in _deferring:
            return True
        frame = frame.f_back
    return False


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.pending is None:
        _state.pending = signum
    running = {loop for loop in _state.async_blocks.values() if loop.is_running()}
    if running:  # never raise into an event loop: cancel the async blocks' tasks
        _cancel_async_blocks(signum, running)
        return
    if not any(block not in _state.async_blocks for block in _state.blocks):
        # Every block was abandoned (or waits on a loop that no longer runs): behave as if we
        # had never been here.
        _restore_and_redeliver()
    elif not _in_deferring_code(frame):
        raise Terminated(signum)


def _cancel_async_blocks(signum: int, loops: set[asyncio.AbstractEventLoop]) -> None:
    """What ``asyncio.Runner`` does for Ctrl-C: cancel the tasks, then wake their loops."""
    message = (
        f"{signal.Signals(signum).name} received: the session is ended, then the process exits"
    )
    for task in set(_state.tasks.values()):  # nested blocks share a task: cancelled once
        if not task.done() and task.get_loop() in loops:
            task.cancel(message)
    for loop in loops:
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(_nothing)


def _nothing() -> None:
    """Scheduled only to wake a loop blocked in ``select``."""


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def enter(token: object, *, task: asyncio.Task[Any] | None = None) -> None:
    """A block starts (in the main thread: take over the default handlers, if not yet done).
    ``task``: an ``AsyncSession`` block's, which a signal cancels while the body runs."""
    if not _is_main_thread():
        return
    try:
        if not _state.blocks and _state.previous:  # left over by an abandoned block
            _restore_and_redeliver()
        _state.blocks.add(token)
        if task is not None:
            _state.async_blocks[token] = task.get_loop()
            _state.tasks[token] = task
        for signum in HANDLED_SIGNALS:
            if signum not in _state.previous and signal.getsignal(signum) is signal.SIG_DFL:
                _state.previous[signum] = signal.SIG_DFL
                signal.signal(signum, _handler)
    except BaseException:
        leave(token, block_failed=True)
        raise


def leave(token: object, *, block_failed: bool) -> None:
    """A block is done (its session ended). The last one puts the previous handlers back and,
    if a signal came, raises it again: the process dies of it here. An inner block whose own
    exit held a signal back raises ``Terminated`` so that the outer blocks unwind too (unless
    the block already failed: its exception propagates unchanged and unwinds them anyway)."""
    if not _is_main_thread():
        return
    try:
        _state.tasks.pop(token, None)
        _state.async_blocks.pop(token, None)
        _state.blocks.discard(token)
    finally:
        if not _state.blocks:
            _restore_and_redeliver()
    if _state.pending is not None and not block_failed:
        raise Terminated(_state.pending)


def exiting(token: object) -> None:
    """An async block's exit starts: a signal no longer cancels its task (its exit ends the
    session, bounded by the exit's deadlines; the signal waits for ``leave``)."""
    if _is_main_thread():
        _state.tasks.pop(token, None)


def _put_back() -> None:
    """The previous handlers, where ours still is (idempotent)."""
    for signum, previous in list(_state.previous.items()):
        if signal.getsignal(signum) is _handler:
            signal.signal(signum, previous)
        del _state.previous[signum]


def _restore_and_redeliver() -> None:
    try:
        try:
            _put_back()
        finally:
            _put_back()  # again, if an interrupt cut the first pass short
    finally:
        pending, _state.pending = _state.pending, None
        if pending is not None:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            signal.raise_signal(pending)  # the previous handler now: the default kills us


def _after_fork_in_child() -> None:
    """A forked child owns none of the parent's blocks: give it the previous handlers back."""
    if _state.previous and _is_main_thread():
        for signum, previous in _state.previous.items():
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(signum) is _handler:
                    signal.signal(signum, previous)
    _state.blocks.clear()
    _state.async_blocks.clear()
    _state.tasks.clear()
    _state.previous.clear()
    _state.pending = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
