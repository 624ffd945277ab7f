"""pdffillr-sessions: a Python client for the Pdffillr chat-sessions API.

``with Session(client, title=...) as s:`` opens a session and always ends it; retries never
duplicate a create or a send; every history is mirrored into a local SQLite cache readable offline.

Errors and models import eagerly (they are light). The client, the session wrapper and the cache
are imported on first use, so that the offline command line never pays for httpx or tenacity.
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
    CacheError,
    ClientClosedError,
    ConfigurationError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    PdffillrError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    SessionEndedError,
    SessionStateError,
)
from ._models import HistoryEntry, SessionInfo
from ._version import __version__

if TYPE_CHECKING:
    from ._async_client import AsyncPdffillrClient
    from ._cache import HistoryCache
    from ._client import PdffillrClient
    from ._config import Timeout
    from ._retry import RetryPolicy
    from ._session import Session

_LAZY = {
    "AsyncPdffillrClient": "._async_client",
    "PdffillrClient": "._client",
    "RetryPolicy": "._retry",
    "Timeout": "._config",
    "Session": "._session",
    "HistoryCache": "._cache",
}

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncPdffillrClient",
    "AuthenticationError",
    "BadRequestError",
    "CacheError",
    "ClientClosedError",
    "ConfigurationError",
    "HistoryCache",
    "HistoryEntry",
    "InternalServerError",
    "InvalidInputError",
    "NotFoundError",
    "PdffillrClient",
    "PdffillrError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "RetryPolicy",
    "Session",
    "SessionEndedError",
    "SessionInfo",
    "SessionStateError",
    "Timeout",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pdffillr_sessions' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
