"""The read-only view of a client's settings, shared by the sync and async clients.

Both clients expose the same properties and ``repr`` and open their one httpx client with the
same options: that code lives here once, over the ``ClientConfig`` each client resolves.
"""

from __future__ import annotations

from typing import Any

from ._config import ClientConfig, Timeout
from ._retry import RetryPolicy

__all__ = ["ConfiguredClient"]


class ConfiguredClient:
    """The read-only view of a client's settings, shared by the sync and async clients."""

    _config: ClientConfig

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
    def retry_policy(self) -> RetryPolicy:
        return self._config.retry_policy

    @property
    def key_scope(self) -> str:
        """The one-way fingerprint of the key that scopes cached rows (never the key)."""
        return self._config.key_scope

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, key_scope={self.key_scope!r})"

    def _http_options(self) -> dict[str, Any]:
        """The options of the one httpx client (sync or async) a client holds."""
        return {
            "base_url": self._config.base_url,
            "headers": self._config.headers,
            "timeout": self._config.timeout.for_attempt(None),
            "follow_redirects": False,
        }
