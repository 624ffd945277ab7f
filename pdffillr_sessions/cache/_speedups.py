"""Every speed-up trick of the cache, in one place (``benchmarks/NOTES.md`` has the measurements).

They trade plain code for speed on the paths that run per history entry (mirroring and reading
100,000-entry histories). Nothing here decides what is stored; ``_rows`` and ``_store`` call
these helpers and would work the same (slower) with their plain equivalents.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from .._models import HistoryEntry
from ._records import CachedSession

__all__ = [
    "LazyEntryRaw",
    "LazyJSON",
    "build_entries",
    "build_sessions",
    "entry_raw",
    "gc_paused",
    "iter_entries",
    "json_text",
]

ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _default(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# The C encoder behind ENCODER, built once: JSONEncoder.encode builds a new one on every call
# (about a third of the cost of encoding a history entry). check_circular=False (markers None):
# raw comes from parsed JSON; a cycle still ends in RecursionError, not a hang.
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    None
    if _c_encoder is None
    else _c_encoder(
        None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
)
_fromiso = datetime.fromisoformat


class _Lazy(Mapping[str, Any]):
    """A read-only mapping decoded on first access (``_load``): reads of a long history rarely
    look at ``raw``, so it costs nothing until asked. ``dict(entry.raw)`` gives a plain dict."""

    __slots__ = ("_data",)

    _data: dict[str, Any] | None

    def _decode(self) -> dict[str, Any]:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def _load(self) -> dict[str, Any]:
        data = self._data
        if data is None:
            data = self._data = self._decode()
        return data

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyJSON) and isinstance(self, LazyJSON):
            return self._text == other._text or self._load() == other._load()
        if isinstance(other, Mapping):
            return self._load() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._load())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._load(),))


class LazyJSON(_Lazy):
    """A JSON object's text, decoded on first access (a session's ``raw``, and an entry's in
    a file written before ``m005_lean_history``)."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text
        self._data = None

    def _decode(self) -> dict[str, Any]:
        loaded = json.loads(self._text)
        return loaded if isinstance(loaded, dict) else {}


class LazyEntryRaw(_Lazy):
    """An entry's server object, rebuilt on first access from its lean row (``_lean``): the
    row ``(id, type, role, content, created_at, raw)`` as read."""

    __slots__ = ("_row",)

    def __init__(self, row: tuple[str, str, str | None, str | None, str, str]) -> None:
        self._row = row
        self._data = None

    def _decode(self) -> dict[str, Any]:
        from ._lean import decode

        return decode(*self._row)


def json_text(raw: Mapping[str, Any]) -> str:
    """Compact JSON of a ``raw`` mapping; the stored text itself when it came from the cache."""
    if type(raw) is LazyJSON:
        return raw._text
    obj = raw if type(raw) is dict else dict(raw)
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(obj, 0))
    return ENCODER.encode(obj)  # pragma: no cover - CPython always has the C encoder


def _builder(cls: type[Any]) -> type[Any]:
    """A subclass of the frozen attrs class ``cls`` that adds no slot and lets attribute stores
    through: an instance is filled with plain stores (which CPython specialises for slots: four
    times faster than calling each slot's setter, and attrs' ``__init__`` is slower still),
    then turned into a ``cls`` by ``__class__`` assignment. CPython allows that assignment only
    between classes of the same memory layout and raises ``TypeError`` otherwise, so a change
    in attrs cannot make this build a broken object silently."""
    return type(
        f"_Building{cls.__name__}",
        (cls,),
        {
            "__slots__": (),
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
            "__module__": __name__,
        },
    )


_BUILDING_ENTRY = _builder(HistoryEntry)
_BUILDING_SESSION = _builder(CachedSession)

Row = tuple[str, str, str | None, str | None, str, str]


def iter_entries(session_id: str, rows: Iterable[Row], *, lean: bool) -> Iterator[HistoryEntry]:
    """``HistoryEntry`` values from ``(id, type, role, content, created_at, raw)`` rows, one at
    a time (``build_entries`` row by row). ``lean``: ``raw`` is a lean row's (``_lean``), else
    the whole object's JSON."""
    for row in rows:
        yield from build_entries(session_id, (row,), lean=lean)


def entry_raw(row: Row, *, lean: bool) -> _Lazy:
    """The lazy ``raw`` of one ``(id, type, role, content, created_at, raw)`` row."""
    return LazyEntryRaw(row) if lean else LazyJSON(row[5])


def build_entries(session_id: str, rows: Iterable[Row], *, lean: bool) -> list[HistoryEntry]:
    """``HistoryEntry`` values from ``(id, type, role, content, created_at, raw)`` rows, built
    with ``_builder`` (no attrs ``__init__``; with ``gc_paused``, figure 4 of
    ``benchmarks/NOTES.md``), in one loop that builds the list."""
    new = object.__new__
    building, cls = _BUILDING_ENTRY, HistoryEntry
    fromiso = _fromiso
    out: list[HistoryEntry] = []
    append = out.append
    if lean:
        for row in rows:
            e = new(building)
            e.id, e.type, e.role, e.content = row[0], row[1], row[2], row[3]
            e.session_id = session_id
            e.created_at = fromiso(row[4])
            r = new(LazyEntryRaw)
            r._row = row
            r._data = None
            e.raw = r
            e.__class__ = cls
            append(e)
    else:
        for row in rows:
            e = new(building)
            e.id, e.type, e.role, e.content = row[0], row[1], row[2], row[3]
            e.session_id = session_id
            e.created_at = fromiso(row[4])
            j = new(LazyJSON)
            j._text = row[5]
            j._data = None
            e.raw = j
            e.__class__ = cls
            append(e)
    return out


def build_sessions(rows: Iterable[Sequence[Any]]) -> list[CachedSession]:
    """``CachedSession`` values from rows of ``_sql.SESSION_SELECT``, built with ``_builder``
    (a listing of 10,000 sessions spent most of its time in attrs' ``__init__``; figure 14).

    ``message_count`` is at least the entries cached (the contract makes it their number, and
    history only grows); ``provisional_order`` says the rows are not dense (``_mirror``)."""
    new = object.__new__
    building, cls = _BUILDING_SESSION, CachedSession
    fromiso = _fromiso
    out: list[CachedSession] = []
    append = out.append
    for row in rows:
        s = new(building)
        (
            s.session_id,
            s.scope,
            s.title,
            s.status,
            count,
            created,
            ended,
            entries,
            s.local_state,
            s.local_error,
            opened,
            synced,
            raw,
            s.opened_pid,
            s.opened_host,
            s.server,
            s.owner_lock,
            last_seq,
        ) = row
        s.message_count = count if count >= entries else entries
        s.created_at = fromiso(created)
        s.ended_at = None if ended is None else fromiso(ended)
        s.entry_count = entries
        s.opened_at = None if opened is None else fromiso(opened)
        s.synced_at = None if synced is None else fromiso(synced)
        j = new(LazyJSON)
        j._text = raw
        j._data = None
        s.raw = j
        s.provisional_order = last_seq is not None and last_seq + 1 != entries
        s.__class__ = cls
        append(s)
    return out


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many acyclic objects (a history read).

    Every ~700 new container objects start a collection, and the older generations' passes walk
    the caller's whole heap: for 100,000 entries that is most of the read's time in a big
    process, and there are no cycles to find. Re-enabled at once afterwards (if it was on).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
