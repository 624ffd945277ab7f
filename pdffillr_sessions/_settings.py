"""The part of a client that is not I/O: its settings, resolved once, and the view onto them.

``PdffillrClient`` and ``AsyncPdffillrClient`` both derive from ``ConfiguredClient``: arguments
are resolved into a ``ClientConfig`` in one ``__init__``, and the read-only properties, the
``repr``, ``closed``, ``with_options``, each call's settings (``_options``) and the choice of
the one httpx client exist once, so the two clients can differ only in their I/O loop.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar

import httpx

from . import _deadline, _options
from ._config import BearerAuth, ClientConfig, Timeout, evolve_config, resolve_config
from ._exceptions import ConfigurationError
from ._options import CallSettings, HeaderSet
from ._pause import SharedPause
from ._retry import RetryPolicy
from ._secret import Secret

__all__ = ["ConfiguredClient"]

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)


class ConfiguredClient(Generic[HttpT]):
    """The settings both clients share, over the one httpx client (sync or async) each holds.

    A subclass calls ``super().__init__`` with its configuration arguments, then sets
    ``self._http = self._open_http(http_client, transport, <its httpx client class>)`` and
    calls ``self._bind_resources()``.
    """

    _config: ClientConfig
    _http: HttpT
    #: Whether closing this client closes ``_http``: only when it made it (not a caller's
    #: ``http_client``, and not a ``with_options`` copy, which shares its original's pool).
    _owns_http: bool
    _closed: bool
    #: The settings of a call given no per-call option (built once: most calls take them).
    _defaults: CallSettings
    #: Writes the ``Authorization`` header on each request, whoever made the httpx client.
    _auth: BearerAuth
    #: How many connection pools bound every network wait by the call's deadline (``_deadline``).
    _deadline_pools: int
    #: Paces every attempt of this client's calls (``_paced``: ``sync``'s pool); None: none.
    _pause: SharedPause | None = None

    def __init__(
        self,
        api_key: Secret | None,
        *,
        base_url: str | None,
        timeout: float | Timeout | None,
        max_retries: int,
        retry_policy: RetryPolicy | None,
        max_response_bytes: int,
        default_headers: HeaderSet | None = None,
    ) -> None:
        self._closed = False
        self._owns_http = False
        self._config = resolve_config(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
            max_response_bytes=max_response_bytes,
            default_headers=default_headers,
        )
        self._auth = self._config.auth
        self._defaults = _options.call_settings(self._config)

    def _open_http(self, http_client: object, transport: object, kind: type[HttpT]) -> HttpT:
        """The httpx client to send through: the caller's ``http_client`` (its proxies,
        ``verify``, certificates, limits, event hooks), else one of our own.

        Requests are built with the full URL, the client's headers, its ``Timeout`` and the
        key's auth, redirects not followed, whoever made the httpx client: a caller's client's
        ``base_url``, ``auth``, ``timeout`` and ``follow_redirects`` are not used (its other
        default headers, cookies and params are sent). The network backends of its connection
        pools are wrapped so that ``Timeout(total=...)`` bounds every wait (``_deadline``: the
        wrapper does nothing outside this library's calls); a pool it was given as its own
        ``transport=`` is not reachable, and the deadline then holds between body chunks only.
        Its bodies are read raw and decoded by ``_body`` as ours are; but a response event hook
        that reads the body (``response.read()``) reads it whole, with httpx's own decoders,
        before the cap can stop it.
        """
        if http_client is None:
            self._owns_http = True
            http = kind(
                transport=transport,  # type: ignore[arg-type]
                timeout=self._config.timeout.for_attempt(None),
                follow_redirects=False,
            )
        else:
            if transport is not None:
                raise ConfigurationError("pass transport= or http_client=, not both")
            if not isinstance(http_client, kind):
                raise ConfigurationError(
                    f"http_client must be an httpx.{kind.__name__} for {type(self).__name__}, "
                    f"got {type(http_client).__name__}"
                )
            http = http_client
        self._deadline_pools = _deadline.install(http)
        return http

    def _bind_resources(self) -> None:
        """Make the resources (``self.sessions``) for this client: each subclass has its own."""
        raise NotImplementedError

    def with_options(
        self,
        *,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int | None = None,
    ) -> Self:
        """This client with other settings, sharing its connection pool (openai-python's
        ``client.with_options(...)``): ``client.with_options(timeout=5).sessions.list()``.

        None leaves a setting as it is; ``default_headers`` are added to the client's (see
        ``_options`` for the headers no option can set). The copy needs no closing: closing it
        closes nothing but the copy, and closing the original closes the pool under both. The
        key and the server cannot change here: a client for another key or server is another
        client (its cached rows are another scope, or another server's).
        """
        headers = (
            None if default_headers is None else HeaderSet.of(default_headers, "default_headers")
        )
        del default_headers  # a value may be a credential: no frame below holds the mapping
        config = evolve_config(
            self._config,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
            max_response_bytes=max_response_bytes,
            default_headers=headers,
        )
        clone = copy.copy(self)
        clone._config = config
        clone._owns_http = False
        clone._closed = self._closed
        clone._defaults = _options.call_settings(config)
        clone._bind_resources()
        return clone

    def _paced(self, pause: SharedPause) -> Self:
        """This client with every attempt of every call waiting for ``pause`` (and a 429 or a
        ``Retry-After`` holding it), sharing its connection pool like a ``with_options`` copy:
        how ``sync``'s concurrent fetches back off together (``_pause``)."""
        clone = copy.copy(self)
        clone._owns_http = False
        clone._pause = pause
        clone._bind_resources()
        return clone

    def _call_settings(
        self, extra_headers: Any, extra_query: Any, timeout: Any, max_retries: Any
    ) -> CallSettings:
        """The settings of one call: the client's, with the call's own options on top."""
        if (
            extra_headers is None
            and extra_query is None
            and timeout is None
            and max_retries is None
        ):
            return self._defaults
        return _options.call_settings(
            self._config,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            max_retries=max_retries,
            base=self._defaults,
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
        """Closed by ``close()``, or its httpx client was closed (by its owner)."""
        return self._closed or self._http.is_closed

    def __repr__(self) -> str:
        config = getattr(self, "_config", None)  # None while __init__ has not resolved it
        if config is None:
            return f"{type(self).__name__}(<not configured>)"
        return (
            f"{type(self).__name__}(base_url={config.base_url!r}, key_scope={config.key_scope!r})"
        )
