"""How values map to rows and back: timestamps, sessions, history entries. Pure functions.

Timestamps are stored as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, sortable as text); they read
back as aware UTC datetimes equal (same instant) to what was written; ``raw`` keeps the
server's own strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .._exceptions import ConfigurationError
from .._models import HistoryEntry
from ._records import CachedSession
from ._speedups import LazyJSON, json_text

__all__ = ["dt", "entry_rows", "now", "server_ended_at", "session_from_row", "ts"]

_fromiso = datetime.fromisoformat


def ts(value: datetime) -> str:
    """One sortable UTC form: ``2026-01-01T00:00:00.000000Z``."""
    tz = value.tzinfo
    if tz is UTC:  # the common case (parsed "Z"): no conversion needed
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    if tz is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now() -> str:
    return ts(datetime.now(UTC))


def dt(value: str | None) -> datetime | None:
    return None if value is None else _fromiso(value)


def server_ended_at(raw: Mapping[str, Any]) -> str | None:
    """The server's ``ended_at`` (not in the seed's Session object, kept when it is sent)."""
    value = raw.get("ended_at")
    if not isinstance(value, str):
        return None
    try:
        return ts(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # not ISO 8601, or no UTC time exists for it
        return None


def session_from_row(row: Sequence[Any]) -> CachedSession:
    """A ``CachedSession`` from a row of ``_sql.SESSION_SELECT``."""
    return CachedSession(
        session_id=row[0],
        scope=row[1],
        title=row[2],
        status=row[3],
        # The contract makes message_count the number of entries, and history only grows: the
        # entries cached are a lower bound even when the stored count is older than a send.
        message_count=max(row[4], row[7]),
        created_at=_fromiso(row[5]),
        ended_at=dt(row[6]),
        entry_count=row[7],
        local_state=row[8],
        local_error=row[9],
        opened_at=dt(row[10]),
        synced_at=dt(row[11]),
        raw=LazyJSON(row[12]),
        opened_pid=row[13],
        opened_host=row[14],
        server=row[15],
        owner_lock=row[16],
        provisional_order=row[17] is not None and row[17] + 1 != row[7],
    )


def entry_rows(
    scope: str, session_id: str, entries: Iterable[HistoryEntry], start: int
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``_sql.INSERT_HISTORY``, ``seq`` numbered from ``start``."""
    for seq, e in enumerate(entries, start):
        if e.session_id != session_id:
            raise ConfigurationError(
                f"entry {e.id!r} belongs to session {e.session_id!r}, not {session_id!r}"
            )
        yield (
            scope,
            session_id,
            e.id,
            seq,
            e.type,
            e.role,
            e.content,
            ts(e.created_at),
            json_text(e.raw),
        )
