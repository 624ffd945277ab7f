"""Every failure of the cache file reaches a user as a typed error that names the file and why.

``sqlite3`` raises bare ``OperationalError("database is locked")`` or ``DatabaseError("database
disk image is malformed")``: no file, no advice, and a traceback from ``Session.__enter__``.
``typed_errors`` wraps each public method of ``HistoryCache``: an SQLite error becomes a
``CacheError`` (``cache_error`` says what it means), and a value SQLite cannot hold (a count over
2**63, a lone surrogate, JSON nested too deeply to encode) becomes a ``ProtocolError`` when it
came from the server (writes of server data) or an ``InvalidInputError`` when it came from the
caller (a query argument). Every write is one transaction: a refused value leaves nothing half
written.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .._exceptions import CacheError, InvalidInputError, ProtocolError

__all__ = ["cache_error", "typed_errors"]

F = TypeVar("F", bound=Callable[..., Any])

#: Errors raised while binding a value SQLite cannot hold.
UNSTORABLE = (UnicodeEncodeError, OverflowError, RecursionError)


def cache_error(path: Path, exc: sqlite3.Error, busy_timeout: float) -> CacheError:
    """The ``CacheError`` for an SQLite error on the cache at ``path`` (pure)."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return CacheError(
            f"the cache at {path} is locked by another process: waited the busy timeout "
            f"({busy_timeout:g} s) for it ({text})"
        )
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return CacheError(
            f"the cache at {path} is corrupt ({text}): `pdffillr-sessions check` says more; "
            "move it aside to start a new one"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return CacheError(f"cannot write the cache at {path}: {text}")
    if "disk is full" in lowered or "i/o error" in lowered:
        return CacheError(f"cannot write the cache at {path}: {text}")
    return CacheError(f"the cache at {path} failed: {text}")


def typed_errors(*, server_data: bool) -> Callable[[F], F]:
    """Turn SQLite errors into ``CacheError`` and unstorable values into a typed error.

    ``server_data``: the method stores what a server sent (an unstorable value is the server's
    fault: ``ProtocolError``); otherwise the values are the caller's (``InvalidInputError``).
    """

    def decorate(method: F) -> F:
        if inspect.isgeneratorfunction(method):

            @functools.wraps(method)
            def generator(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return (yield from method(self, *args, **kwargs))
                except (sqlite3.Error, *UNSTORABLE) as exc:
                    raise _typed(self, exc, server_data) from _cause(exc)

            return generator  # type: ignore[return-value]

        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, *UNSTORABLE) as exc:
                raise _typed(self, exc, server_data) from _cause(exc)

        return wrapper  # type: ignore[return-value]

    return decorate


def _typed(cache: Any, exc: BaseException, server_data: bool) -> Exception:
    """The typed error ``typed_errors`` raises for ``exc`` (one place for both wrappers)."""
    if isinstance(exc, sqlite3.Error):
        from ._connect import BUSY_TIMEOUT_S

        return cache_error(cache.path, exc, BUSY_TIMEOUT_S)
    return unstorable(exc, server_data=server_data)


def _cause(exc: BaseException) -> BaseException | None:
    """An SQLite error stays chained; an unstorable value's error is not (its traceback is the
    encoder's recursion, or the value itself)."""
    return exc if isinstance(exc, sqlite3.Error) else None


def unstorable(exc: BaseException, *, server_data: bool) -> Exception:
    """The typed error for a value SQLite cannot hold."""
    if isinstance(exc, UnicodeEncodeError):
        why = "a string is not valid Unicode text (a lone surrogate)"
    elif isinstance(exc, OverflowError):
        why = "an integer is too large for SQLite (over 2**63 - 1)"
    else:
        why = "an object is nested too deeply to be stored as JSON"
    if server_data:
        return ProtocolError(
            f"a value from the server cannot be stored: {why}; nothing was written"
        )
    return InvalidInputError(f"an argument cannot be used: {why}")
