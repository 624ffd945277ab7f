"""The part of a client that is not I/O: its settings, resolved once, and the view onto them.

``PdffillrClient`` and ``AsyncPdffillrClient`` both derive from ``ConfiguredClient``: arguments
are resolved into a ``ClientConfig`` in one ``__init__``, and the read-only properties, the
``repr``, ``closed`` and the options of the one httpx client exist once, so the two clients can
differ only in their I/O loop.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import httpx

from ._config import ClientConfig, Timeout, resolve_config
from ._retry import RetryPolicy
from ._secret import Secret

__all__ = ["ConfiguredClient"]

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)


class ConfiguredClient(Generic[HttpT]):
    """The settings both clients share, over the one httpx client (sync or async) each holds.

    A subclass calls ``super().__init__`` with its configuration arguments, then opens
    ``self._http`` with ``self._http_options()``.
    """

    _config: ClientConfig
    _http: HttpT

    def __init__(
        self,
        api_key: Secret | None,
        *,
        base_url: str | None,
        timeout: float | Timeout | None,
        max_retries: int,
        retry_policy: RetryPolicy | None,
        max_response_bytes: int,
    ) -> None:
        self._config = resolve_config(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
            max_response_bytes=max_response_bytes,
        )

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def timeout(self) -> Timeout:
        return self._config.timeout

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    @property
    def max_response_bytes(self) -> int:
        """The largest decoded response body this client accepts."""
        return self._config.max_response_bytes

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._config.retry_policy

    @property
    def key_scope(self) -> str:
        """The one-way fingerprint of the key that scopes cached rows (never the key)."""
        return self._config.key_scope

    @property
    def server(self) -> str:
        """Which server cached rows are recorded for: the normalised ``base_url``."""
        return self._config.server

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def __repr__(self) -> str:
        config = getattr(self, "_config", None)  # None while __init__ has not resolved it
        if config is None:
            return f"{type(self).__name__}(<not configured>)"
        return (
            f"{type(self).__name__}(base_url={config.base_url!r}, key_scope={config.key_scope!r})"
        )

    def _http_options(self) -> dict[str, Any]:
        """The options of the one httpx client (sync or async) a client holds."""
        return {
            "base_url": self._config.base_url,
            "headers": self._config.headers,
            "auth": self._config.auth,
            "timeout": self._config.timeout.for_attempt(None),
            "follow_redirects": False,
        }
