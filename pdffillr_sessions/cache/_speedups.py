"""Every speed-up trick of the cache, in one place (``benchmarks/NOTES.md`` has the measurements).

They trade plain code for speed on the paths that run per history entry (mirroring and reading
100,000-entry histories). Nothing here decides what is stored; ``_rows`` and ``_store`` call
these helpers and would work the same (slower) with their plain equivalents.
"""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from .._models import HistoryEntry

__all__ = [
    "LazyEntryRaw",
    "LazyJSON",
    "build_entries",
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


def _setters(cls: type, names: Sequence[str]) -> tuple[Callable[[Any, Any], None], ...]:
    """Direct slot setters for building frozen instances in bulk (``object.__setattr__`` with
    no per-call attribute lookup); a field that is not a slot falls back to that."""
    out: list[Callable[[Any, Any], None]] = []
    for name in names:
        descriptor: Any = next((k.__dict__[name] for k in cls.__mro__ if name in k.__dict__), None)
        if type(descriptor).__name__ == "member_descriptor":
            out.append(descriptor.__set__)
        else:  # pragma: no cover - attrs.frozen makes slotted classes
            out.append(functools.partial(_set_attribute, name))
    return tuple(out)


def _set_attribute(name: str, obj: Any, value: Any) -> None:  # pragma: no cover
    object.__setattr__(obj, name, value)


_ENTRY_SETTERS = _setters(
    HistoryEntry, ("id", "session_id", "type", "role", "content", "created_at", "raw")
)
_LAZY_SETTERS = _setters(LazyJSON, ("_text", "_data"))
_LEAN_SETTERS = _setters(LazyEntryRaw, ("_row", "_data"))

Row = tuple[str, str, str | None, str | None, str, str]


def iter_entries(session_id: str, rows: Iterable[Row], *, lean: bool) -> Iterator[HistoryEntry]:
    """``HistoryEntry`` values from ``(id, type, role, content, created_at, raw)`` rows, one at
    a time. ``lean``: ``raw`` is a lean row's (``_lean``), else the whole object's JSON.

    Sets the slots of each frozen instance directly instead of calling attrs' ``__init__`` (with
    ``gc_paused``, figure 4 of ``benchmarks/NOTES.md`` went from 0.32 to 0.63 of a raw select).
    """
    new = object.__new__
    cls = HistoryEntry
    set_id, set_sid, set_type, set_role, set_content, set_created, set_raw = _ENTRY_SETTERS
    if lean:
        lazy: type = LazyEntryRaw
        set_source, set_data = _LEAN_SETTERS
    else:
        lazy = LazyJSON
        set_source, set_data = _LAZY_SETTERS
    for row in rows:
        entry_id, type_, role, content, created_at, raw = row
        e = new(cls)
        set_id(e, entry_id)
        set_sid(e, session_id)
        set_type(e, type_)
        set_role(e, role)
        set_content(e, content)
        set_created(e, _fromiso(created_at))
        r: _Lazy = new(lazy)
        set_source(r, row if lean else raw)
        set_data(r, None)
        set_raw(e, r)
        yield e


def entry_raw(row: Row, *, lean: bool) -> _Lazy:
    """The lazy ``raw`` of one ``(id, type, role, content, created_at, raw)`` row."""
    return LazyEntryRaw(row) if lean else LazyJSON(row[5])


def build_entries(session_id: str, rows: Iterable[Row], *, lean: bool) -> list[HistoryEntry]:
    """``iter_entries`` as a list (``history()``: call it with ``gc_paused``)."""
    return list(iter_entries(session_id, rows, lean=lean))


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
