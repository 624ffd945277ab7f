"""Where a cache lives: an SQLite file (a path) or a PostgreSQL database (a ``postgresql://`` URL).

Everything that takes a cache location (``HistoryCache``, ``Session(cache=...)``, ``sync``,
``reap``, ``end_sessions``, the CLI's ``--db``, ``PDFFILLR_SESSIONS_DB``) decides here which of
the two it names, so the rule exists once. A URL is kept as the string it is (``pathlib`` would
fold its ``//``); anything else is a path.

A URL may carry a password: ``display`` is the only form ever shown (reprs, messages, ``stats``),
with the password replaced by ``***``. Pure functions, no imports beyond the standard library.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["POSTGRES_SCHEMES", "Location", "display", "exists", "is_postgres_url", "resolve"]

#: What libpq accepts as a URI prefix.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

#: A resolved location: a file path, or a PostgreSQL URL as given.
Location = Path | str

_PASSWORD_PARAM = re.compile(r"(?i)(^|[?&])(password=)[^&]*")


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` is a PostgreSQL connection URL (a string starting with a scheme)."""
    return isinstance(value, str) and value.strip().lower().startswith(POSTGRES_SCHEMES)


def resolve(value: str | os.PathLike[str] | None) -> Location:
    """The location ``value`` names: None is the default (``PDFFILLR_SESSIONS_DB``, else
    ``history.db`` in the user data directory); a URL stays a string; anything else is a path."""
    if value is None:
        from .._paths import default_cache_location

        return default_cache_location()
    if is_postgres_url(value):
        return str(value).strip()
    return Path(value).expanduser()


def exists(location: Location) -> bool:
    """Whether there is something to read: the file exists. A database is asked when opened."""
    return isinstance(location, str) or location.exists()


def display(location: Location) -> str:
    """The location as it may be shown: a URL's password (in the authority or a ``password=``
    parameter) is replaced by ``***``; a path is itself."""
    if isinstance(location, Path):
        return str(location)
    parts = urlsplit(location)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = _PASSWORD_PARAM.sub(r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
