"""Where the history cache lives by default (no heavy imports: the offline CLI uses it)."""

from __future__ import annotations

import os
from pathlib import Path

from . import _contract

APP_NAME = "pdffillr-sessions"
DB_FILENAME = "history.db"


def default_cache_location() -> Path | str:
    """``$PDFFILLR_SESSIONS_DB`` if set (a path, or a ``postgresql://`` URL kept as given), else
    ``history.db`` in the user's data directory."""
    env = os.environ.get(_contract.ENV_CACHE_PATH)
    if env:
        from .cache._location import is_postgres_url

        return env.strip() if is_postgres_url(env) else Path(env).expanduser()
    import click  # imported here: only this fallback needs it

    return Path(click.get_app_dir(APP_NAME)) / DB_FILENAME


def default_cache_path() -> Path:
    """The default cache FILE (``serve`` and other file-only callers): a URL in
    ``$PDFFILLR_SESSIONS_DB`` is not a file, and is refused by those callers before this."""
    location = default_cache_location()
    return location if isinstance(location, Path) else Path(location)
