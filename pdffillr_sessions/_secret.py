"""The API key as a value that never shows itself: ``Secret``.

Error trackers and ``pytest --showlocals`` print the local variables of every frame of a
traceback, and a server or proxy may echo the token back in a body or a header. So the key is
wrapped on the very first line that receives it (``Secret.of``), and from then on every frame
holds a ``Secret``, whose ``repr`` and ``str`` are ``Secret('***')``. Only three methods read
the value, each in a single expression (no local variable ever holds the plain key):

* ``bearer`` builds the ``Authorization`` header, called by the one function that writes it
  (``_BearerAuth.auth_flow``, on each request);
* ``fingerprint`` hashes it into the cache's one-way key scope;
* ``redact`` / ``redact_bytes`` replace it, in any server text, by ``REDACTED``.

Building a ``Secret`` never raises, whatever it is given: what is wrong with a key (missing,
not a string, not printable ASCII) is recorded as ``problem`` and reported later by whoever
needs a valid key, in words that never include it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import threading
import weakref
from typing import Any, NoReturn
from urllib.parse import quote

__all__ = ["REDACTED", "Secret", "redact_in_logs"]

#: What replaces the key in server text (no quote or backslash: a JSON string stays valid).
REDACTED = "<redacted>"
#: Keys shorter than this are not searched for in server text: replacing a 3-character key
#: everywhere would mangle ordinary text, and so short a key is refused anyway by any real
#: server. The key is still never shown by this library itself.
MIN_REDACTED_LENGTH = 8


class Secret:
    """A value (the API key) that is never shown: ``repr``/``str`` give ``Secret('***')``.

    Not picklable, and compared by identity only (an ``==`` by value could leak it through a
    failed assertion's diff). ``problem`` says what is wrong with it (``None`` when it can be
    sent as a header).
    """

    __slots__ = ("__weakref__", "_encoded", "_pattern", "_problem", "_value")

    _value: str
    _problem: str | None
    _pattern: re.Pattern[str] | None
    _encoded: tuple[bytes, ...] | None

    def __init__(self, value: object) -> None:
        # Never raises: this frame is the only one (besides the caller's first line) that ever
        # holds the plain value, and an exception here would put it in a traceback.
        self._pattern, self._encoded = None, None
        if isinstance(value, Secret):
            self._value, self._problem = value._value, value._problem
            return
        if value is None or (isinstance(value, str) and not value):
            self._value, self._problem = "", "missing"
            return
        if not isinstance(value, str):
            self._value, self._problem = "", "not a string"
            return
        self._value = value
        self._problem = (
            None
            if value.isascii() and value.isprintable() and " " not in value
            else "malformed (it must be printable ASCII with no whitespace)"
        )

    @classmethod
    def of(cls, value: object) -> Secret:
        """Wrap ``value`` (a ``Secret`` is returned as it is)."""
        return value if isinstance(value, Secret) else cls(value)

    @classmethod
    def from_env(cls, name: str) -> Secret:
        """The key in the environment variable ``name`` (missing when unset or empty)."""
        return cls(os.environ.get(name))

    @property
    def problem(self) -> str | None:
        """What is wrong with the key, in words that never include it; None when usable."""
        return self._problem

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return NotImplemented  # identity only: never compared by value

    __hash__ = object.__hash__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __copy__(self) -> Secret:
        return self

    # -- the only readers of the value ---------------------------------------------------------

    def bearer(self, scheme: str) -> str:
        """The ``Authorization`` header value. Call it only where the header is written."""
        return f"{scheme} {self._value}"

    def fingerprint(self, domain: bytes) -> str:
        """Sixteen hex digits of a domain-separated SHA-256 of the key: one-way."""
        return hashlib.sha256(domain + self._value.encode("utf-8")).hexdigest()[:16]

    def redact(self, text: str) -> str:
        """``text`` with every spelling of the key (as is, JSON-escaped, percent-encoded)
        replaced by ``REDACTED``."""
        if len(self._value) < MIN_REDACTED_LENGTH:
            return text
        return self._needles().sub(REDACTED, text)

    def redact_bytes(self, data: bytes) -> bytes:
        """``redact`` for raw bytes (a body before it is decoded). Returns ``data`` itself
        when the key is not in it (the usual case: a few substring searches, no copy)."""
        if len(self._value) < MIN_REDACTED_LENGTH or not any(
            spelling in data for spelling in self._spellings_bytes()
        ):
            return data
        return re.compile(self._needles().pattern.encode("utf-8", "surrogatepass")).sub(
            REDACTED.encode(), data
        )

    # -- helpers: the spellings of the key -------------------------------------------------------

    def _spellings(self) -> tuple[str, str, str]:
        """The key as it is, JSON-escaped, and percent-encoded (a temporary of the caller's
        expression, never a named local)."""
        return (self._value, json.dumps(self._value)[1:-1], quote(self._value, safe=""))

    def _needles(self) -> re.Pattern[str]:
        if self._pattern is None:
            self._pattern = re.compile(
                "|".join(map(re.escape, sorted(set(self._spellings()), key=len, reverse=True)))
            )
        return self._pattern

    def _spellings_bytes(self) -> tuple[bytes, ...]:
        if self._encoded is None:
            self._encoded = tuple(
                map(functools.partial(str.encode, errors="surrogatepass"), self._spellings())
            )
        return self._encoded


# -- log lines written by others -------------------------------------------------------------------

#: httpcore logs every response's headers at DEBUG: a header echoing the token would put the
#: key in the log. A filter on those loggers redacts every key a live client holds.
_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_LIVE: weakref.WeakSet[Secret] = weakref.WeakSet()
_INSTALL_LOCK = threading.Lock()


class _RedactingFilter(logging.Filter):
    """Rewrites a record whose text holds a live client's key (only runs for records that are
    actually logged: DEBUG records of a disabled logger are never built)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        redacted = text
        for secret in list(_LIVE):
            redacted = secret.redact(redacted)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


_FILTER = _RedactingFilter()


def redact_in_logs(secret: Secret) -> None:
    """From now on (while ``secret`` lives), no httpx or httpcore log line shows it."""
    with _INSTALL_LOCK:
        _LIVE.add(secret)
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
