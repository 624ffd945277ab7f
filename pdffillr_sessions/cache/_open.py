"""What a ``cache=`` argument means, in one place for ``Session``, ``sync``, ``reap`` and ``end``.

``None`` (or ``True``) is the default location (``PDFFILLR_SESSIONS_DB`` or the user data
directory), ``False`` turns mirroring off, a path opens that file, a ``postgresql://`` URL that
database (``_location``), and a ``HistoryCache`` is used as given, through a view restricted to
the client's key (and server).
"""

from __future__ import annotations

import os
from typing import TypeAlias

from .._exceptions import ConfigurationError
from ._location import Location, resolve
from ._store import HistoryCache

__all__ = ["CacheArg", "open_cache"]

CacheArg: TypeAlias = "HistoryCache | str | os.PathLike[str] | bool | None"


def open_cache(
    cache: CacheArg, scope: str, *, server: str | None = None, readonly: bool = False
) -> tuple[HistoryCache | None, bool]:
    """The cache to use for ``scope`` on ``server`` and whether the caller owns it (must close
    it). A client passes its ``key_scope`` and ``server``.

    ``readonly`` applies to a cache opened here; a ``HistoryCache`` passed in keeps its mode.
    """
    if cache is False:
        return None, False
    if isinstance(cache, HistoryCache):
        if cache.scope not in (None, scope):
            raise ConfigurationError(
                "this HistoryCache is scoped to another API key than the client's"
            )
        if cache.server not in (None, server):
            raise ConfigurationError("this HistoryCache is opened for another server")
        return cache.for_scope(scope, server=server), False
    path = None if cache is None or cache is True else cache
    return HistoryCache(path, scope=scope, server=server, readonly=readonly), True


def cache_path(cache: CacheArg) -> Location | None:
    """The file or database a ``cache=`` argument names (None: mirroring is off)."""
    if cache is False:
        return None
    if isinstance(cache, HistoryCache):
        return cache.path
    return resolve(None if cache is None or cache is True else cache)
