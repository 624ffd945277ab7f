"""A client's settings as one frozen value, resolved once from arguments, environment, defaults.

Both clients take the same arguments and must refuse the same bad ones with the same words, so
turning them into a ``ClientConfig`` happens here, once, before any connection pool exists.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import TYPE_CHECKING

import attrs
import httpx

from . import _contract
from ._body import DEFAULT_MAX_RESPONSE_BYTES
from ._exceptions import ConfigurationError
from ._retry import RetryPolicy
from ._scope import key_scope, server_id
from ._secret import Secret, redact_in_logs
from ._version import __version__

if TYPE_CHECKING:
    from ._options import HeaderSet

__all__ = [
    "BearerAuth",
    "ClientConfig",
    "Timeout",
    "as_timeout",
    "check_max_retries",
    "resolve_config",
]


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
    #: The caller's ``default_headers`` (checked by ``_options.HeaderSet``), sent on every
    #: request after the client's own. Never in a repr: a value may be a credential.
    default_headers: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=False)

    @property
    def key_scope(self) -> str:
        return key_scope(self.api_key)

    @property
    def server(self) -> str:
        """The base URL in the one spelling the cache records (see ``_scope.server_id``)."""
        return server_id(self.base_url)

    @property
    def own_headers(self) -> tuple[tuple[str, str], ...]:
        """The client's own headers, sent on every request (the caller's ``default_headers``
        and ``extra_headers`` go after them). No ``Authorization``: ``auth`` writes it on each
        request.

        ``Accept-Encoding`` names only what ``_body`` decodes with a bounded output (a server
        honouring it never sends brotli or zstd, which the body reader refuses).
        """
        return _OWN_HEADERS

    @property
    def auth(self) -> BearerAuth:
        return BearerAuth(self.api_key)


_OWN_HEADERS = (
    ("User-Agent", f"pdffillr-sessions/{__version__} httpx/{httpx.__version__}"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate"),
)


def as_timeout(timeout: object) -> Timeout:
    """A ``timeout=`` argument as a ``Timeout``, wherever it is given (the constructor,
    ``with_options``, one call): None is the default, a number is ``Timeout(number)``."""
    if isinstance(timeout, Timeout):
        return timeout
    try:
        return Timeout() if timeout is None else Timeout(float(timeout))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"timeout must be a positive number of seconds ({exc})") from None


def check_max_retries(max_retries: object) -> int:
    """A ``max_retries=`` argument, wherever it is given: an integer >= 0."""
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError("max_retries must be an integer >= 0")
    return max_retries


def check_max_response_bytes(max_response_bytes: object) -> int:
    """A ``max_response_bytes=`` argument, wherever it is given: an integer >= 1."""
    if (
        isinstance(max_response_bytes, bool)
        or not isinstance(max_response_bytes, int)
        or max_response_bytes < 1
    ):
        raise ConfigurationError("max_response_bytes must be an integer >= 1")
    return max_response_bytes


def resolve_config(
    api_key: str | Secret | None,
    *,
    base_url: str | None,
    timeout: float | Timeout | None,
    max_retries: int,
    retry_policy: RetryPolicy | None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    default_headers: HeaderSet | None = None,
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
    check_max_response_bytes(max_response_bytes)
    url = base_url or os.environ.get(_contract.ENV_BASE_URL) or _contract.DEFAULT_BASE_URL
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
    if parsed.query or parsed.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment, got {url!r}")
    if default_headers is not None and default_headers.problem is not None:
        raise ConfigurationError(default_headers.problem)
    return ClientConfig(
        api_key=secret,
        base_url=str(parsed).rstrip("/"),
        timeout=as_timeout(timeout),
        max_retries=check_max_retries(max_retries),
        retry_policy=retry_policy or RetryPolicy(),
        max_response_bytes=max_response_bytes,
        default_headers=() if default_headers is None else default_headers.pairs,
    )


def evolve_config(
    config: ClientConfig,
    *,
    timeout: float | Timeout | None,
    max_retries: int | None,
    retry_policy: RetryPolicy | None,
    max_response_bytes: int | None,
    default_headers: HeaderSet | None,
) -> ClientConfig:
    """``config`` with what ``with_options`` was given (None: unchanged). Default headers are
    added to the ones the client already has (a name given again replaces its value), as
    openai-python's ``with_options(default_headers=...)`` does."""
    if default_headers is not None and default_headers.problem is not None:
        raise ConfigurationError(default_headers.problem)
    changes: dict[str, object] = {}
    if timeout is not None:
        changes["timeout"] = as_timeout(timeout)
    if max_retries is not None:
        changes["max_retries"] = check_max_retries(max_retries)
    if retry_policy is not None:
        changes["retry_policy"] = retry_policy
    if max_response_bytes is not None:
        changes["max_response_bytes"] = check_max_response_bytes(max_response_bytes)
    if default_headers:
        kept = {name.lower() for name, _ in default_headers.pairs}
        changes["default_headers"] = tuple(
            (n, v) for n, v in config.default_headers if n.lower() not in kept
        ) + tuple(default_headers.pairs)
    return attrs.evolve(config, **changes)  # type: ignore[arg-type]
