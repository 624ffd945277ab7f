"""A client's settings as one frozen value, resolved once from arguments, environment, defaults.

Both clients take the same arguments and must refuse the same bad ones with the same words, so
turning them into a ``ClientConfig`` happens here, once, before any connection pool exists.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import attrs
import httpx

from . import _contract
from ._body import DEFAULT_MAX_RESPONSE_BYTES
from ._exceptions import ConfigurationError
from ._retry import RetryPolicy
from ._scope import key_scope, server_id
from ._secret import Secret, redact_in_logs
from ._version import __version__

__all__ = ["BearerAuth", "ClientConfig", "Timeout", "resolve_config"]


@attrs.frozen
class Timeout:
    """Time limits for one call.

    ``request`` bounds each wait of an attempt on the network (each read, write, pool wait),
    ``connect`` bounds opening a connection, and ``total``, when set, bounds the wall-clock time
    of the whole call: every attempt, every retry and backoff wait, and a server that trickles
    its headers or body one byte at a time (each byte would restart a per-read timeout; the
    client clips every read to what remains of ``total``, see ``_deadline``).
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


class BearerAuth(httpx.Auth):
    """Writes the ``Authorization`` header on each request: the one place the key is unwrapped.

    The key is not among the httpx client's default headers, so no ``httpx.Client`` argument,
    attribute or frame local ever holds it; only each request's headers do (and httpx shows
    them as ``[secure]``).
    """

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        redact_in_logs(secret)

    def __repr__(self) -> str:
        return "BearerAuth(Secret('***'))"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[_contract.AUTH_HEADER] = self._secret.bearer(_contract.AUTH_SCHEME)
        yield request


@attrs.frozen(kw_only=True)
class ClientConfig:
    """A client's resolved settings. The key is a ``Secret``: never shown, never compared."""

    api_key: Secret = attrs.field(repr=False, eq=False)
    base_url: str
    timeout: Timeout
    max_retries: int
    retry_policy: RetryPolicy
    #: The largest decoded response body accepted (see ``_body``).
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def key_scope(self) -> str:
        return key_scope(self.api_key)

    @property
    def server(self) -> str:
        """The base URL in the one spelling the cache records (see ``_scope.server_id``)."""
        return server_id(self.base_url)

    @property
    def headers(self) -> dict[str, str]:
        """Default headers. No ``Authorization``: ``auth`` writes it on each request.

        ``Accept-Encoding`` names only what ``_body`` decodes with a bounded output (a server
        honouring it never sends brotli or zstd, which the body reader refuses).
        """
        return {
            "User-Agent": f"pdffillr-sessions/{__version__} httpx/{httpx.__version__}",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }

    @property
    def auth(self) -> BearerAuth:
        return BearerAuth(self.api_key)


def resolve_config(
    api_key: str | Secret | None,
    *,
    base_url: str | None,
    timeout: float | Timeout | None,
    max_retries: int,
    retry_policy: RetryPolicy | None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> ClientConfig:
    """Arguments first, then ``PDFFILLR_API_KEY`` / ``PDFFILLR_BASE_URL``, then the defaults.

    The key is wrapped in a ``Secret`` on the first line, and the plain argument dropped: no
    error raised below can show it among this frame's locals.
    """
    secret = Secret.of(api_key) if api_key is not None else Secret.from_env(_contract.ENV_API_KEY)
    del api_key
    if secret.problem == "missing":
        raise ConfigurationError(
            f"No API key: pass api_key=... or set the {_contract.ENV_API_KEY} environment variable."
        )
    if secret.problem is not None:
        # A header value must be printable ASCII; the key is never echoed, not even in part.
        raise ConfigurationError(f"The API key is {secret.problem}; its value is not shown.")
    if (
        isinstance(max_response_bytes, bool)
        or not isinstance(max_response_bytes, int)
        or max_response_bytes < 1
    ):
        raise ConfigurationError("max_response_bytes must be an integer >= 1")
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
        api_key=secret,
        base_url=str(parsed).rstrip("/"),
        timeout=timeout,
        max_retries=max_retries,
        retry_policy=retry_policy or RetryPolicy(),
        max_response_bytes=max_response_bytes,
    )
