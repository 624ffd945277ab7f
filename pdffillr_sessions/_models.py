"""The value objects of the API and the pure functions that parse them from JSON.

Parsing is strict about what the contract requires (a missing ``session_id`` is a
``ProtocolError`` naming it) and lenient about everything else: unknown fields are kept in
``raw``, unknown history types and statuses are kept as they are, and both a bare JSON array and
a ``{"data": [...]}`` envelope are accepted where a list is expected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import attrs

from . import _contract
from ._contract import EntryType, Role, SessionStatus
from ._exceptions import ProtocolError, escape_controls

__all__ = [
    "HistoryEntry",
    "SessionInfo",
    "parse_datetime",
    "parse_entries",
    "parse_entry",
    "parse_json",
    "parse_session",
    "parse_sessions",
    "parse_sessions_lenient",
]


@attrs.frozen(kw_only=True)
class SessionInfo:
    """One session as the server describes it (the seed's Session object).

    ``status`` is ``"active"`` or ``"ended"``; a value the contract does not know is kept as the
    server sent it.
    """

    session_id: str
    title: str | None
    status: SessionStatus
    message_count: int
    created_at: datetime
    raw: Mapping[str, Any] = attrs.field(repr=False, factory=dict)

    @property
    def ended(self) -> bool:
        return self.status == _contract.STATUS_ENDED

    @property
    def active(self) -> bool:
        return self.status == _contract.STATUS_ACTIVE


@attrs.frozen(kw_only=True)
class HistoryEntry:
    """One item of a session's history: a message, an attached document or an activity.

    ``type`` and ``role`` are typed with the contract's values; other values the server sends
    are kept as they are.
    """

    id: str
    session_id: str
    type: EntryType
    role: Role | None
    content: str | None
    created_at: datetime
    raw: Mapping[str, Any] = attrs.field(repr=False, factory=dict)

    @property
    def document(self) -> Mapping[str, Any] | None:
        """The ``document`` object of a document entry, if the server sent one."""
        doc = self.raw.get("document")
        return doc if isinstance(doc, Mapping) else None

    @property
    def event(self) -> str | None:
        """The ``event`` name of an activity entry, if the server sent one."""
        event = self.raw.get("event")
        return event if isinstance(event, str) else None


#: The largest integer SQLite (and so the cache) can hold: a larger count is refused at once.
MAX_INT64 = 2**63 - 1


def parse_json(text: str | bytes, *, what: str) -> Any:
    """Decode a response body, turning bad JSON into a ``ProtocolError`` that says where.

    Nesting deeper than Python's recursion limit (100,000 nested arrays) is a ``ProtocolError``
    too, not a ``RecursionError``.
    """
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(
            f"{what}: the response body is not valid JSON ({escape_controls(str(exc))[:200]})"
        ) from None
    except RecursionError:
        raise ProtocolError(f"{what}: the response body is nested too deeply") from None


def _utc_safe(parsed: datetime) -> datetime | None:
    """``parsed`` made aware (naive is UTC), or None if it has no UTC equivalent.

    ``0001-01-01T00:00:00+01:00`` is a valid ISO 8601 string whose UTC time is before year 1:
    Python cannot represent it, and the cache stores every timestamp in UTC.
    """
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is UTC:
        return parsed
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        return None
    return parsed


def parse_datetime(value: Any, *, what: str) -> datetime:
    """An ISO 8601 timestamp as an aware datetime (``Z``, an offset, or naive taken as UTC)."""
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: expected an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ProtocolError(f"{what}: {value[:100]!r} is not an ISO 8601 timestamp") from None
    safe = _utc_safe(parsed)
    if safe is None:
        raise ProtocolError(f"{what}: {value[:100]!r} is out of range (no UTC time exists for it)")
    return safe


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in obj:
        raise ProtocolError(f"{what}: required field {key!r} is missing")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"{what}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError(
        f"{what}: field {key!r} must be a string or null, got {type(value).__name__}"
    )


def _as_object(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    return obj


_fromiso = datetime.fromisoformat


def _fast_datetime(value: str) -> datetime | None:
    """``parse_datetime`` for a valid string, None for anything the slow path must explain."""
    try:
        parsed = _fromiso(value)
    except ValueError:
        return None
    return _utc_safe(parsed)


# The fast paths below check a well-formed object (the usual case) with a few type() tests and
# build the value at once; anything else goes through the field-by-field parser, which says
# what is wrong. Both accept exactly the same objects (a hypothesis test compares them).


def parse_session(obj: Any, *, what: str = "session") -> SessionInfo:
    if type(obj) is dict:
        sid = obj.get("session_id")
        count = obj.get("message_count")
        status = obj.get("status")
        created = obj.get("created_at")
        title = obj.get("title")
        if (
            type(sid) is str
            and sid
            and type(count) is int
            and 0 <= count <= MAX_INT64
            and type(status) is str
            and type(created) is str
            and (title is None or type(title) is str)
        ):
            created_at = _fast_datetime(created)
            if created_at is not None:
                return SessionInfo(
                    session_id=sid,
                    title=title,
                    status=cast(SessionStatus, status),
                    message_count=count,
                    created_at=created_at,
                    raw=dict(obj),
                )
    return _parse_session(obj, what)


def _parse_session(obj: Any, what: str) -> SessionInfo:
    obj = _as_object(obj, what)
    session_id = _require(obj, "session_id", str, what)
    if not session_id:
        raise ProtocolError(f"{what}: field 'session_id' is empty")
    message_count = _require(obj, "message_count", int, what)
    if message_count < 0:
        raise ProtocolError(f"{what}: field 'message_count' is negative")
    if message_count > MAX_INT64:
        raise ProtocolError(f"{what}: field 'message_count' is out of range (over 2**63 - 1)")
    return SessionInfo(
        session_id=session_id,
        title=_optional_str(obj, "title", what),
        status=cast(SessionStatus, _require(obj, "status", str, what)),
        message_count=message_count,
        created_at=parse_datetime(
            _require(obj, "created_at", str, what), what=f"{what}.created_at"
        ),
        raw=dict(obj),
    )


EntryFields = tuple[str, str, str, "str | None", "str | None"]


def well_formed_entry(obj: Any) -> EntryFields | None:
    """``(id, type, created_at text, role, content)`` of a history entry object whose fields
    have the contract's types (the usual case, checked with a few ``type()`` tests), else None:
    the caller then goes through the field-by-field parser, which says what is wrong. The one
    shape check of both fast paths (``parse_entry`` and the cache's rows from JSON)."""
    if type(obj) is not dict:
        return None
    entry_id = obj.get("id")
    type_ = obj.get("type")
    created = obj.get("created_at")
    role = obj.get("role")
    content = obj.get("content")
    if (
        type(entry_id) is str
        and entry_id
        and type(type_) is str
        and type(created) is str
        and (role is None or type(role) is str)
        and (content is None or type(content) is str)
    ):
        return entry_id, type_, created, role, content
    return None


def parse_entry(obj: Any, *, session_id: str, what: str = "history entry") -> HistoryEntry:
    fields = well_formed_entry(obj)
    if fields is not None:
        entry_id, type_, created, role, content = fields
        created_at = _fast_datetime(created)
        if created_at is not None:
            return HistoryEntry(
                id=entry_id,
                session_id=session_id,
                type=cast(EntryType, type_),
                role=cast("Role | None", role),
                content=content,
                created_at=created_at,
                raw=dict(obj),
            )
    return _parse_entry(obj, session_id, what)


def _parse_entry(obj: Any, session_id: str, what: str) -> HistoryEntry:
    obj = _as_object(obj, what)
    entry_id = _require(obj, "id", str, what)
    if not entry_id:
        raise ProtocolError(f"{what}: field 'id' is empty")
    return HistoryEntry(
        id=entry_id,
        session_id=session_id,
        type=cast(EntryType, _require(obj, "type", str, what)),
        role=cast("Role | None", _optional_str(obj, "role", what)),
        content=_optional_str(obj, "content", what),
        created_at=parse_datetime(
            _require(obj, "created_at", str, what), what=f"{what}.created_at"
        ),
        raw=dict(obj),
    )


def unwrap_list(body: Any, *, what: str) -> list[Any]:
    """A list body, bare or in the ``{"data": [...]}`` envelope."""
    if isinstance(body, list):
        return body
    if isinstance(body, Mapping) and isinstance(body.get(_contract.LIST_ENVELOPE_KEY), list):
        return list(body[_contract.LIST_ENVELOPE_KEY])
    raise ProtocolError(
        f"{what}: expected a JSON array or an object with a {_contract.LIST_ENVELOPE_KEY!r} array, "
        f"got {type(body).__name__}"
    )


def parse_sessions(body: Any) -> list[SessionInfo]:
    items = unwrap_list(body, what="sessions list")
    return [parse_session(item, what=f"sessions list[{i}]") for i, item in enumerate(items)]


def parse_sessions_lenient(
    body: Any,
) -> tuple[list[SessionInfo], list[tuple[str | None, ProtocolError]]]:
    """The sessions a list holds, and the items it could not parse (with their
    ``session_id`` when they have a string one): ``sync`` mirrors the good ones and reports
    the rest, so that one malformed session does not stop it."""
    items = unwrap_list(body, what="sessions list")
    good: list[SessionInfo] = []
    bad: list[tuple[str | None, ProtocolError]] = []
    for i, item in enumerate(items):
        try:
            good.append(parse_session(item, what=f"sessions list[{i}]"))
        except ProtocolError as exc:
            sid = item.get("session_id") if isinstance(item, Mapping) else None
            bad.append((sid if isinstance(sid, str) else None, exc))
    return good, bad


def parse_entries(body: Any, *, session_id: str, what: str = "history") -> list[HistoryEntry]:
    items = unwrap_list(body, what=what)
    return [
        parse_entry(item, session_id=session_id, what=f"{what}[{i}]")
        for i, item in enumerate(items)
    ]
