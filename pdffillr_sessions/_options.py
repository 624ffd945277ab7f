"""The options users of openai-python and anthropic-sdk-python carry in their fingers: checked once.

Every resource method of both clients takes ``timeout=``, ``max_retries=``, ``extra_headers=``
and ``extra_query=`` for one call; ``with_options(...)`` and the constructors take
``default_headers=`` for every call. Both clients turn them into one ``CallSettings`` here, so
they cannot disagree about what is allowed or what a value means.

What is refused, and why (the README's "Conventions" table says the same):

* ``Authorization``, ``Idempotency-Key`` and ``Accept-Encoding`` cannot be set by any of them
  (``RESERVED_HEADERS``): the key is written from the client's ``Secret`` on each request, the
  Idempotency-Key is what keeps a retried create or send from being done twice (and what
  ``Session`` records before a create, for ``reap``), and the body reader decodes only what the
  client asks for. Overriding one silently would break a promise without a word; a client for
  another key is another client.
* A header name that is not an HTTP token, a value that is not printable ASCII (CR, LF and NUL
  would split or cut the header), a query value that is not text or a number.

A header's value is never part of a message, a repr or a log line: it may be a credential (a
proxy's token). Building a ``HeaderSet`` never raises (like ``Secret``): what is wrong is kept as
``problem`` and raised by the caller once it no longer holds the plain mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from ._config import ClientConfig, Timeout, as_timeout, check_max_retries
from ._exceptions import ConfigurationError

__all__ = [
    "RESERVED_HEADERS",
    "CallSettings",
    "HeaderSet",
    "QuerySet",
    "call_settings",
]

#: Headers the client owns, lowercased, and why.
RESERVED_HEADERS: Mapping[str, str] = {
    "authorization": "the client writes it from its own key on every request (a client for "
    "another key is another client: its cached rows are another scope)",
    "idempotency-key": "the client makes one per logical call and sends it on every retry "
    "(pass idempotency_key= to create for your own)",
    "accept-encoding": "the client decodes gzip and deflate itself, in bounded memory, and asks "
    "for nothing else",
}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*\Z")
_SHOWN_NAME = 60


def _name(name: str) -> str:
    """A header or parameter name as a message may show it (names are not secrets; values
    may be)."""
    return repr(name[:_SHOWN_NAME] + ("…" if len(name) > _SHOWN_NAME else ""))


class HeaderSet:
    """Headers given by a caller, checked; their values never shown (``repr`` names them only).

    ``problem`` says what is wrong, in words that never include a value; ``pairs`` is empty
    then.
    """

    __slots__ = ("pairs", "problem")

    pairs: tuple[tuple[str, str], ...]
    problem: str | None

    def __init__(self, pairs: tuple[tuple[str, str], ...] = (), problem: str | None = None):
        self.pairs, self.problem = pairs, problem

    @classmethod
    def of(cls, headers: object, what: str) -> HeaderSet:
        """Check ``headers`` (a mapping of str to str, or None). Never raises."""
        if headers is None:
            return cls()
        if isinstance(headers, HeaderSet):
            return headers
        if not isinstance(headers, Mapping):
            return cls(problem=f"{what} must be a mapping of header names to values")
        pairs: list[tuple[str, str]] = []
        for name, value in headers.items():
            if not isinstance(name, str) or not _TOKEN.match(name):
                shown = _name(name) if isinstance(name, str) else type(name).__name__
                return cls(problem=f"{what}: {shown} is not a valid header name")
            reserved = RESERVED_HEADERS.get(name.lower())
            if reserved is not None:
                return cls(problem=f"{what} cannot set {name}: {reserved}")
            if not isinstance(value, str) or not _HEADER_VALUE.match(value):
                return cls(
                    problem=f"{what}: the value of {_name(name)} must be printable ASCII text "
                    "(no line breaks or control characters; the value is not shown)"
                )
            pairs.append((name, value))
        return cls(tuple(pairs))

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.pairs)
        return f"HeaderSet({names}{': values not shown' if names else ''})"

    __str__ = __repr__


class QuerySet:
    """Query parameters given by a caller, checked; values never shown (see ``HeaderSet``)."""

    __slots__ = ("pairs", "problem")

    pairs: tuple[tuple[str, str | int | float], ...]
    problem: str | None

    def __init__(
        self, pairs: tuple[tuple[str, str | int | float], ...] = (), problem: str | None = None
    ):
        self.pairs, self.problem = pairs, problem

    @classmethod
    def of(cls, query: object, what: str) -> QuerySet:
        """Check ``query`` (a mapping of str to str, int or float, or None). Never raises."""
        if query is None:
            return cls()
        if not isinstance(query, Mapping):
            return cls(problem=f"{what} must be a mapping of parameter names to values")
        pairs: list[tuple[str, str | int | float]] = []
        for name, value in query.items():
            if not isinstance(name, str) or not _encodable(name):
                return cls(problem=f"{what}: every parameter name must be text")
            if isinstance(value, bool):
                value = "true" if value else "false"  # httpx's spelling, said once here
            if not isinstance(value, str | int | float) or (
                isinstance(value, str) and not _encodable(value)
            ):
                return cls(
                    problem=f"{what}: the value of {_name(name)} must be text or a number "
                    "(the value is not shown)"
                )
            pairs.append((name, value))
        return cls(tuple(pairs))

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.pairs)
        return f"QuerySet({names}{': values not shown' if names else ''})"

    __str__ = __repr__


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@attrs.frozen(repr=False)
class CallSettings:
    """How one call is sent: its time limits, retries, headers (the client's, the caller's
    default headers, then the call's extra headers) and query parameters (None: none)."""

    timeout: Timeout
    max_retries: int
    headers: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, str | int | float], ...] | None

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.headers)
        return (
            f"CallSettings(timeout={self.timeout!r}, max_retries={self.max_retries}, "
            f"headers=[{names}]: values not shown)"
        )


def merged_headers(*layers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Later layers win, header names compared case-insensitively (as HTTP compares them)."""
    merged = httpx.Headers(list(layers[0]))
    for layer in layers[1:]:
        if layer:
            merged.update(httpx.Headers(list(layer)))
    return tuple(merged.multi_items())


def call_settings(
    config: ClientConfig,
    *,
    extra_headers: Any = None,
    extra_query: Any = None,
    timeout: Any = None,
    max_retries: Any = None,
    base: CallSettings | None = None,
) -> CallSettings:
    """The settings of one call: the client's (``base``, when already built), with the call's
    own options on top. None leaves the client's value; a number as ``timeout`` means what it
    means to the constructor (``Timeout(number)``). Raises ``ConfigurationError``.
    """
    headers = HeaderSet.of(extra_headers, "extra_headers")
    query = QuerySet.of(extra_query, "extra_query")
    del extra_headers, extra_query
    for problem in (headers.problem, query.problem):
        if problem is not None:
            raise ConfigurationError(problem)
    if base is None:
        base = CallSettings(
            timeout=config.timeout,
            max_retries=config.max_retries,
            headers=merged_headers(config.own_headers, config.default_headers),
            params=None,
        )
    return CallSettings(
        timeout=base.timeout if timeout is None else as_timeout(timeout),
        max_retries=base.max_retries if max_retries is None else check_max_retries(max_retries),
        headers=merged_headers(base.headers, headers.pairs) if headers else base.headers,
        params=query.pairs or base.params,
    )
