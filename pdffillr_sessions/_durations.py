"""Durations and moments as people type them: ``7d``, ``1h30m``, ``2026-01-31``, ``0``.

Each has a range: a duration up to ``MAX_DURATION`` (100 years), a moment with a UTC time
(``0001-01-01T00:00:00+01:00`` has none) and one that a duration back from now can reach.
Beyond it is a ``ValueError`` (a usage error on the command line), never an ``OverflowError``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["parse_duration", "parse_since"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
#: The longest duration accepted: older than any cache, and ``now - it`` is a valid date.
MAX_DURATION = timedelta(days=36525)


def parse_duration(value: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w``, combinations (``1h30m``), or ``0``."""
    text = value.strip()
    if re.fullmatch(r"0+(\.0+)?", text):
        return timedelta(0)
    pos, total, matched = 0, 0.0, False
    for m in _DURATION_PART.finditer(text):
        if text[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        pos, matched = m.end(), True
    if not matched or text[pos:].strip():
        raise ValueError(f"{value!r} is not a duration like 7d, 12h, 30m, 45s or 1h30m")
    if not total <= MAX_DURATION.total_seconds():  # also NaN and inf
        raise ValueError(f"{value!r} is longer than {MAX_DURATION.days // 365} years")
    return timedelta(seconds=total)


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """A duration back from now (``7d``) or an ISO 8601 date or time (naive is taken as UTC)."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO date/time (2026-01-31, 2026-01-31T12:00Z) nor a "
            "duration (7d, 12h)"
        ) from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range (no UTC time exists for it)") from None
    return moment
