"""pdffillr-sessions: a Python client for the Pdffillr chat-sessions API.

``with Session(client, title=...) as s:`` (or ``async with AsyncSession(...)``) opens a session
and always ends it; retries never duplicate a create or a send; every history is mirrored into a
local SQLite cache readable offline.

Errors and models import eagerly (they are light). The client, the session wrapper, the cache
and the operations (``sync``, ``reap``, ``end_sessions``) are imported on first use, so that the
offline command line never pays for httpx or tenacity. The package logger stays silent unless
the application configures logging or sets ``PDFFILLR_LOG=info|debug`` (``_logging``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CacheAuthenticationError,
    CacheConnectionError,
    CacheError,
    CacheNotFoundError,
    ClientClosedError,
    ConfigurationError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    OwnerLockLostError,
    PdffillrError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    SessionEndedError,
    SessionStateError,
    Terminated,
)
from ._logging import setup_logging
from ._models import HistoryEntry, SessionInfo
from ._version import __version__

setup_logging()  # a NullHandler on our logger; PDFFILLR_LOG=info|debug turns it on (stderr)

if TYPE_CHECKING:
    from ._async_client import AsyncPdffillrClient
    from ._async_session import AsyncSession
    from ._async_sync import async_sync
    from ._client import PdffillrClient
    from ._config import Timeout
    from ._end import EndOutcome, EndReport, end_sessions
    from ._reap import ReapOutcome, ReapReport, reap
    from ._retry import RetryPolicy
    from ._secret import Secret
    from ._session import Session
    from ._sync import SyncFailure, SyncReport, sync
    from .cache import CachedSession, CacheStats, CreateIntent, HistoryCache, SearchHit

_LAZY = {
    "AsyncPdffillrClient": "._async_client",
    "AsyncSession": "._async_session",
    "async_sync": "._async_sync",
    "PdffillrClient": "._client",
    "RetryPolicy": "._retry",
    "Secret": "._secret",
    "Timeout": "._config",
    "Session": "._session",
    "HistoryCache": ".cache",
    "CachedSession": ".cache",
    "CacheStats": ".cache",
    "CreateIntent": ".cache",
    "SearchHit": ".cache",
    "sync": "._sync",
    "SyncReport": "._sync",
    "SyncFailure": "._sync",
    "reap": "._reap",
    "ReapReport": "._reap",
    "ReapOutcome": "._reap",
    "end_sessions": "._end",
    "EndReport": "._end",
    "EndOutcome": "._end",
}

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncPdffillrClient",
    "AsyncSession",
    "AuthenticationError",
    "BadRequestError",
    "CacheAuthenticationError",
    "CacheConnectionError",
    "CacheError",
    "CacheNotFoundError",
    "CacheStats",
    "CachedSession",
    "ClientClosedError",
    "ConfigurationError",
    "CreateIntent",
    "EndOutcome",
    "EndReport",
    "HistoryCache",
    "HistoryEntry",
    "InternalServerError",
    "InvalidInputError",
    "NotFoundError",
    "OwnerLockLostError",
    "PdffillrClient",
    "PdffillrError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "ReapOutcome",
    "ReapReport",
    "RetryPolicy",
    "SearchHit",
    "Secret",
    "Session",
    "SessionEndedError",
    "SessionInfo",
    "SessionStateError",
    "SyncFailure",
    "SyncReport",
    "Terminated",
    "Timeout",
    "__version__",
    "async_sync",
    "end_sessions",
    "reap",
    "sync",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pdffillr_sessions' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
