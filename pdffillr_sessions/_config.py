"""A client's settings as one frozen value, resolved once from arguments, environment, defaults.

Both clients take the same arguments and must refuse the same bad ones with the same words, so
turning them into a ``ClientConfig`` happens here, once, before any connection pool exists.
"""

from __future__ import annotations

import os

import attrs
import httpx

from . import _contract
from ._exceptions import ConfigurationError
from ._retry import RetryPolicy
from ._scope import key_scope, server_id
from ._version import __version__

__all__ = ["ClientConfig", "Timeout", "resolve_config"]


@attrs.frozen
class Timeout:
    """Time limits for one call.

    ``request`` bounds each attempt (read, write, pool), ``connect`` bounds opening a connection,
    and ``total``, when set, bounds the whole call across every retry and backoff wait: the
    answer to per-attempt timeouts that multiply with retries.
    """

    request: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    connect: float = attrs.field(default=5.0, kw_only=True, validator=attrs.validators.gt(0))
    total: float | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(attrs.validators.gt(0)),
    )

    def for_attempt(self, remaining: float | None) -> httpx.Timeout:
        """The httpx timeout of one attempt, clipped to what remains of the total."""
        request = self.request if remaining is None else min(self.request, remaining)
        return httpx.Timeout(request, connect=min(self.connect, request))


@attrs.frozen(kw_only=True)
class ClientConfig:
    """A client's resolved settings. The key is kept out of ``repr`` and equality output."""

    api_key: str = attrs.field(repr=False)
    base_url: str
    timeout: Timeout
    max_retries: int
    retry_policy: RetryPolicy

    @property
    def key_scope(self) -> str:
        return key_scope(self.api_key)

    @property
    def server(self) -> str:
        """The base URL in the one spelling the cache records (see ``_scope.server_id``)."""
        return server_id(self.base_url)

    @property
    def headers(self) -> dict[str, str]:
        return {
            _contract.AUTH_HEADER: f"{_contract.AUTH_SCHEME} {self.api_key}",
            "User-Agent": f"pdffillr-sessions/{__version__} httpx/{httpx.__version__}",
            "Accept": "application/json",
        }


def resolve_config(
    api_key: str | None,
    *,
    base_url: str | None,
    timeout: float | Timeout | None,
    max_retries: int,
    retry_policy: RetryPolicy | None,
) -> ClientConfig:
    """Arguments first, then ``PDFFILLR_API_KEY`` / ``PDFFILLR_BASE_URL``, then the defaults."""
    key = api_key if api_key is not None else os.environ.get(_contract.ENV_API_KEY)
    if not key:
        raise ConfigurationError(
            f"No API key: pass api_key=... or set the {_contract.ENV_API_KEY} environment variable."
        )
    if not isinstance(key, str) or not key.isascii() or not key.isprintable() or " " in key:
        # A header value must be printable ASCII; the key is never echoed, not even in part.
        raise ConfigurationError(
            "The API key is malformed (it must be printable ASCII with no whitespace); "
            "its value is not shown."
        )
    url = base_url or os.environ.get(_contract.ENV_BASE_URL) or _contract.DEFAULT_BASE_URL
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
    if parsed.query or parsed.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment, got {url!r}")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError("max_retries must be an integer >= 0")
    if not isinstance(timeout, Timeout):
        try:
            timeout = Timeout() if timeout is None else Timeout(float(timeout))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds ({exc})"
            ) from None
    return ClientConfig(
        api_key=key,
        base_url=str(parsed).rstrip("/"),
        timeout=timeout,
        max_retries=max_retries,
        retry_policy=retry_policy or RetryPolicy(),
    )
