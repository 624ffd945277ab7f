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
from .._models import HistoryEntry, parse_entry, well_formed_entry
from ._lean import encode
from ._speedups import LazyEntryRaw

__all__ = [
    "canonical_time",
    "dt",
    "entry_rows",
    "json_entry_rows",
    "lean_raw",
    "now",
    "server_ended_at",
    "ts",
]

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


def entry_rows(
    scope: str, session_id: str, entries: Iterable[HistoryEntry], start: int
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``_sql.INSERT_HISTORY``, ``seq`` numbered from ``start``, ``raw`` lean."""
    for seq, e in enumerate(entries, start):
        if e.session_id != session_id:
            raise ConfigurationError(
                f"entry {e.id!r} belongs to session {e.session_id!r}, not {session_id!r}"
            )
        col = ts(e.created_at)
        yield (
            scope,
            session_id,
            e.id,
            seq,
            e.type,
            e.role,
            e.content,
            col,
            lean_raw(e, col),
        )


def lean_raw(e: HistoryEntry, col: str) -> str:
    """The lean ``raw`` of an entry; an entry read back from the cache already has it."""
    raw = e.raw
    if type(raw) is LazyEntryRaw:
        row = raw._row
        if row[:5] == (e.id, e.type, e.role, e.content, col):
            return row[5]
    return encode(raw, e.id, e.type, e.role, e.content, col)


def canonical_time(text: str) -> str | None:
    """``ts`` of an ISO 8601 timestamp, or None if it is not one (or has no UTC time).

    The common spellings (``Z`` with 0, 3 or 6 fraction digits) are padded as text: parsing and
    formatting a datetime per entry was a tenth of a large mirror's cost.
    """
    try:
        parsed = _fromiso(text)
    except ValueError:
        return None
    if (
        parsed.tzinfo is UTC
        and text[-1] == "Z"
        and text[4:5] == "-"
        and text[7:8] == "-"
        and text[10:11] == "T"
        and text[13:14] == ":"
        and text[16:17] == ":"
    ):
        n = len(text)
        if n == 27 and text[19] == ".":
            return text
        if n == 24 and text[19] == ".":
            return text[:23] + "000Z"
        if n == 20:
            return text[:19] + ".000000Z"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return ts(parsed)
    except OverflowError:  # no UTC time exists for it (year 1 with a positive offset)
        return None


def json_entry_rows(
    scope: str, session_id: str, items: Sequence[Any], positions: Iterable[int]
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``_sql.INSERT_HISTORY`` built straight from the server's parsed JSON objects
    ``items[i]`` for each ``i`` in ``positions`` (``seq`` = ``i``), with no ``HistoryEntry`` in
    between. Accepts and refuses exactly what ``parse_entry`` does (a well-formed object is
    checked with a few ``type()`` tests; anything else goes through ``parse_entry``, whose
    ``ProtocolError`` names the position and the field)."""
    for i in positions:
        obj = items[i]
        fields = well_formed_entry(obj)
        if fields is not None:
            entry_id, type_, created, role, content = fields
            col = canonical_time(created)
            if col is not None:
                yield (
                    scope,
                    session_id,
                    entry_id,
                    i,
                    type_,
                    role,
                    content,
                    col,
                    encode(obj, entry_id, type_, role, content, col),
                )
                continue
        e = parse_entry(obj, session_id=session_id, what=f"history[{i}]")
        col = ts(e.created_at)
        yield (scope, session_id, e.id, i, e.type, e.role, e.content, col, lean_raw(e, col))
