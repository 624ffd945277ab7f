"""Where the history cache lives by default (no heavy imports: the offline CLI uses it)."""

from __future__ import annotations

import os
from pathlib import Path

from . import _contract

APP_NAME = "pdffillr-sessions"
DB_FILENAME = "history.db"


def default_cache_path() -> Path:
    """``$PDFFILLR_SESSIONS_DB`` if set, else ``history.db`` in the user's data directory."""
    env = os.environ.get(_contract.ENV_CACHE_PATH)
    if env:
        return Path(env).expanduser()
    import click  # imported here: only this fallback needs it

    return Path(click.get_app_dir(APP_NAME)) / DB_FILENAME
