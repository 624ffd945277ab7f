"""The package logger: silent unless asked, like openai-python's and anthropic-sdk-python's.

A library must not print on its users' stderr: the ``pdffillr_sessions`` logger gets a
``NullHandler`` (so Python's last-resort handler never prints our records when the application
set no logging up), scheduled retries are logged at INFO (not WARNING: a retry that succeeds is
not a problem), and ``PDFFILLR_LOG=info|debug`` (openai-python's ``OPENAI_LOG``) turns our
records on for a script that configures no logging.

Where this differs from ``OPENAI_LOG``: it adds a stderr handler to *our* logger instead of
calling ``logging.basicConfig()`` on the root logger, so an application's own later logging
setup is not turned into a no-op. (If the application also sends the root logger somewhere,
our records show there too: leave ``PDFFILLR_LOG`` unset then.) httpx's and httpcore's loggers
are left alone, as openai-python now leaves them: they show full URLs and headers.

No record of ours carries a header, a query string or a body: the key, a caller's
``extra_headers`` or ``default_headers`` values and ``extra_query`` values cannot reach a log
line through this package (``_secret`` redacts an echoed key from httpx's and httpcore's too).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["ENV_LOG", "LOGGER_NAME", "StderrHandler", "env_level", "setup_logging"]

LOGGER_NAME = "pdffillr_sessions"
ENV_LOG = "PDFFILLR_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
#: openai-python's format: ``[2026-01-31 12:00:00 - pdffillr_sessions._retry:160 - INFO] ...``.
_FORMAT = "[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s] %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as Python's last-resort
    handler does), so that a redirected stderr (a test runner, click's ``CliRunner``) gets it."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__()
        self.setLevel(level)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ sets it
        pass


class _EnvHandler(StderrHandler):
    """The handler ``PDFFILLR_LOG`` adds (a class of its own: found again, never added twice)."""


def env_level(environ: Mapping[str, str] = os.environ) -> int | None:
    """The level ``PDFFILLR_LOG`` asks for (``info`` or ``debug``, any case), else None. Other
    values are ignored, as ``OPENAI_LOG`` ignores them."""
    return _LEVELS.get(environ.get(ENV_LOG, "").strip().lower())


def setup_logging(environ: Mapping[str, str] = os.environ) -> logging.Logger:
    """Give the package logger its ``NullHandler``, and the stderr handler ``PDFFILLR_LOG``
    asks for. Idempotent: run when the package is imported."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(type(h) is logging.NullHandler for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    level = env_level(environ)
    if level is not None:
        logger.setLevel(level)
        if not any(isinstance(h, _EnvHandler) for h in logger.handlers):
            handler = _EnvHandler()
            handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
            logger.addHandler(handler)
    return logger
