"""The pure in-memory model of the Pdffillr sessions service (no sockets, no HTTP).

Everything the emulator knows lives here: sessions per API key, their histories, the
idempotency store and the counters. The HTTP layer (``_server``) only parses requests, calls
these methods and serialises what they return. Rendering to the wire (timestamps, extra fields)
follows the ``Dialect``, so every choice the contract leaves open can be switched in one place.

Errors are raised as ``ApiError(status, type, message)``; the server turns them into the
``{"error": {"type": ..., "message": ...}}`` envelope.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from .. import _contract

__all__ = [
    "ERROR_TYPES",
    "ApiError",
    "Dialect",
    "ServiceState",
    "StoredResponse",
    "assistant_reply",
    "dumps",
    "error_body",
    "error_type_for",
    "validate_url",
]

# Error types of the contract, by status (inferred in the contract).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found",
    405: "invalid_request",
    409: _contract.ERROR_SESSION_ENDED,
    413: "invalid_request",
    422: "invalid_request",
    429: "rate_limit",
    500: "api_error",
    503: "overloaded",
}

DETERMINISTIC_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
DETERMINISTIC_STEP = timedelta(seconds=1)


def error_type_for(status: int) -> str:
    """The contract's error type for a status (other 5xx: api_error; other 4xx: invalid_request)."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request"


def error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    return {
        _contract.ERROR_ENVELOPE_KEY: {
            "type": error_type or error_type_for(status),
            "message": message,
        }
    }


class ApiError(Exception):
    """A contract error: the server answers ``status`` with the error envelope."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or error_type_for(status)

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.error_type)


@dataclass(frozen=True, kw_only=True)
class Dialect:
    """The choices the contract allows a real server to make, switchable for client tests.

    The defaults are the emulator's canonical shape: 200 everywhere, bare JSON arrays, ``Z``
    timestamps, only the documented fields, and ending an ended session answers 200 again.
    """

    create_status: Literal[200, 201] = 200
    """Status of a successful create."""
    append_status: Literal[200, 201] = 200
    """Status of a successful send or attach."""
    list_envelope: bool = False
    """Wrap every list (sessions, history, appended entries) as ``{"data": [...]}``."""
    extra_fields: bool = False
    """Add fields the contract does not name (``updated_at``, ``workspace``, ``object``...)."""
    offset_timestamps: bool = False
    """Write timestamps with ``+00:00`` instead of ``Z``."""
    end_status: Literal[200, 204] = 200
    """Status of a successful end (204: empty body)."""
    end_ended: Literal["ok", "409"] = "ok"
    """Ending an ended session: answer as a success again ("ok") or 409 ``session_ended``."""

    def __post_init__(self) -> None:
        if self.create_status not in (200, 201):
            raise ValueError("create_status must be 200 or 201")
        if self.append_status not in (200, 201):
            raise ValueError("append_status must be 200 or 201")
        if self.end_status not in (200, 204):
            raise ValueError("end_status must be 200 or 204")
        if self.end_ended not in ("ok", "409"):
            raise ValueError("end_ended must be 'ok' or '409'")

    def timestamp(self, moment: datetime) -> str:
        text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
        return text if self.offset_timestamps else text.replace("+00:00", "Z")

    def wrap_list(self, items: list[dict[str, Any]]) -> Any:
        return {_contract.LIST_ENVELOPE_KEY: items} if self.list_envelope else items


def assistant_reply(content: str) -> str:
    """The emulator's assistant: a pure function of the user's message (same input, same reply)."""
    words = content.split()
    preview = " ".join(words[:5])
    if len(words) > 5:
        preview += " ..."
    lines = content.count("\n") + 1
    return (
        f"Received {len(content)} characters, {len(words)} words, {lines} lines. "
        f'You wrote: "{preview}".'
    )


@dataclass
class _Entry:
    id: str
    type: str
    role: str | None
    content: str | None
    created_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Session:
    session_id: str
    api_key: str
    title: str | None
    created_at: datetime
    seq: int
    status: str = _contract.STATUS_ACTIVE
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    entries: list[_Entry] = field(default_factory=list)


@dataclass(frozen=True)
class StoredResponse:
    """What an idempotent request answered, replayed verbatim on a repeat."""

    status: int
    body: Any


class ServiceState:
    """Sessions, histories and idempotency records of every API key. Thread-safe (one lock).

    ``deterministic=True``: a fixed clock from 2026-01-01T00:00:00Z advancing one second per
    event, and counter ids, so that the same sequence of calls gives byte-identical answers.
    Otherwise: the real UTC clock and random ids.
    """

    def __init__(self, *, dialect: Dialect | None = None, deterministic: bool = False) -> None:
        self.dialect = dialect or Dialect()
        self.deterministic = deterministic
        self.lock = threading.RLock()
        self.reset()

    # -- lifecycle -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: sessions, idempotency records, counters, the clock."""
        with self.lock:
            self._sessions: dict[str, _Session] = {}
            self._idempotency: dict[tuple[str, str, str, str], StoredResponse] = {}
            self._seq = itertools.count(1)
            self._counters: dict[str, itertools.count[int]] = {}
            self._tick = 0
            self.sessions_created = 0
            self.sessions_ended = 0
            self.idempotent_replays = 0

    # -- clock and ids -------------------------------------------------------------------------

    def now(self) -> datetime:
        if self.deterministic:
            moment = DETERMINISTIC_EPOCH + self._tick * DETERMINISTIC_STEP
            self._tick += 1
            return moment
        return datetime.now(UTC)

    def new_id(self, prefix: str) -> str:
        """``prefix_`` + a counter (deterministic) or random hex (default)."""
        if self.deterministic:
            counter = self._counters.setdefault(prefix, itertools.count(1))
            return f"{prefix}_{next(counter):06d}"
        return f"{prefix}_{secrets.token_hex(12)}"

    # -- rendering -----------------------------------------------------------------------------

    def _render_session(self, s: _Session) -> dict[str, Any]:
        d = self.dialect
        out: dict[str, Any] = {
            "session_id": s.session_id,
            "title": s.title,
            "status": s.status,
            "message_count": len(s.entries),
            "created_at": d.timestamp(s.created_at),
        }
        if s.ended_at is not None:
            out["ended_at"] = d.timestamp(s.ended_at)
        if d.extra_fields:
            out["object"] = "chat.session"
            out["updated_at"] = d.timestamp(s.updated_at or s.created_at)
            out["workspace"] = {"id": "ws_emulator", "name": "Pdffillr emulator"}
            out["metadata"] = {}
        return out

    def _render_entry(self, e: _Entry) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": e.id,
            "type": e.type,
            "role": e.role,
            "content": e.content,
            "created_at": self.dialect.timestamp(e.created_at),
        }
        out.update(e.extra)
        if self.dialect.extra_fields:
            out["object"] = "chat.history_entry"
            out["metadata"] = {}
        return out

    # -- lookups -------------------------------------------------------------------------------

    def _get(self, api_key: str, session_id: str) -> _Session:
        s = self._sessions.get(session_id)
        if s is None or s.api_key != api_key:
            # Another key's session is indistinguishable from a missing one: never 403.
            raise ApiError(404, f"No session {session_id!r} under this API key.")
        return s

    def _require_active(self, s: _Session) -> None:
        if s.status != _contract.STATUS_ACTIVE:
            raise ApiError(409, f"Session {s.session_id!r} has ended and is read-only.")

    def _append(self, s: _Session, entry: _Entry) -> _Entry:
        s.entries.append(entry)
        s.updated_at = entry.created_at
        return entry

    # -- the service ---------------------------------------------------------------------------

    def create(self, api_key: str, title: str | None = None) -> dict[str, Any]:
        with self.lock:
            sid = self.new_id("sess")
            while sid in self._sessions:  # pragma: no cover - random collision
                sid = self.new_id("sess")
            s = _Session(
                session_id=sid,
                api_key=api_key,
                title=title,
                created_at=self.now(),
                seq=next(self._seq),
            )
            self._sessions[sid] = s
            self.sessions_created += 1
            return self._render_session(s)

    def list_sessions(self, api_key: str) -> list[dict[str, Any]]:
        """The key's sessions, newest first; equal timestamps: the later-created first."""
        with self.lock:
            mine = [s for s in self._sessions.values() if s.api_key == api_key]
            mine.sort(key=lambda s: (s.created_at, s.seq), reverse=True)
            return [self._render_session(s) for s in mine]

    def require_active(self, api_key: str, session_id: str) -> None:
        """404 if the key has no such session, 409 if it has ended."""
        with self.lock:
            self._require_active(self._get(api_key, session_id))

    def end(self, api_key: str, session_id: str) -> dict[str, Any]:
        with self.lock:
            s = self._get(api_key, session_id)
            if s.status == _contract.STATUS_ENDED:
                if self.dialect.end_ended == "409":
                    raise ApiError(409, f"Session {session_id!r} has already ended.")
                return self._render_session(s)
            s.status = _contract.STATUS_ENDED
            s.ended_at = self.now()
            s.updated_at = s.ended_at
            self.sessions_ended += 1
            return self._render_session(s)

    def history(self, api_key: str, session_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [self._render_entry(e) for e in self._get(api_key, session_id).entries]

    def send(self, api_key: str, session_id: str, content: Any) -> list[dict[str, Any]]:
        """Append the user's message and the assistant's reply; return both."""
        with self.lock:
            s = self._get(api_key, session_id)
            self._require_active(s)
            if not isinstance(content, str) or not content:
                raise ApiError(400, "Field 'content' must be a non-empty string.")
            user = self._append(
                s, _Entry(self.new_id("msg"), "message", "user", content, self.now())
            )
            reply = self._append(
                s,
                _Entry(
                    self.new_id("msg"), "message", "assistant", assistant_reply(content), self.now()
                ),
            )
            return [self._render_entry(user), self._render_entry(reply)]

    def attach(
        self,
        api_key: str,
        session_id: str,
        *,
        filename: str,
        content_type: str,
        size_bytes: int | None,
        source: Literal["upload", "url"],
        url: str | None = None,
    ) -> list[dict[str, Any]]:
        """Append a document entry and its ``document.processed`` activity; return both."""
        with self.lock:
            s = self._get(api_key, session_id)
            self._require_active(s)
            document = {
                "document_id": self.new_id("doc"),
                "filename": filename,
                "content_type": content_type,
                "size_bytes": size_bytes,
                "source": source,
                "url": url,
            }
            size = "unknown size" if size_bytes is None else f"{size_bytes} bytes"
            doc_entry = self._append(
                s,
                _Entry(
                    self.new_id("ent"),
                    "document",
                    None,
                    f"Attached {filename} ({size})",
                    self.now(),
                    {"document": document},
                ),
            )
            activity = self._append(
                s,
                _Entry(
                    self.new_id("ent"),
                    "activity",
                    None,
                    f"Processed {filename}",
                    self.now(),
                    {"event": "document.processed"},
                ),
            )
            return [self._render_entry(doc_entry), self._render_entry(activity)]

    # -- idempotency ---------------------------------------------------------------------------

    def idempotent(
        self,
        api_key: str,
        idempotency_key: str | None,
        method: str,
        route: str,
        action: Callable[[], StoredResponse],
    ) -> tuple[StoredResponse, bool]:
        """Run ``action`` once per (api key, idempotency key, method, route); replay afterwards.

        Returns the response and whether it was a replay. Without an idempotency key the action
        simply runs. Results are kept for the state's lifetime (errors included: a retry of a
        request that failed with 409 fails the same way).
        """
        if not idempotency_key:
            return action(), False
        key = (api_key, idempotency_key, method, route)
        with self.lock:
            stored = self._idempotency.get(key)
            if stored is not None:
                self.idempotent_replays += 1
                return stored, True
            result = action()
            self._idempotency[key] = result
            return result, False

    # -- inspection ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.lock:
            active = sum(1 for s in self._sessions.values() if s.status == _contract.STATUS_ACTIVE)
            return {
                "sessions_created": self.sessions_created,
                "sessions_ended": self.sessions_ended,
                "sessions_active": active,
                "idempotent_replays": self.idempotent_replays,
            }


def validate_url(value: Any) -> str:
    """An absolute http(s) URL, else ApiError 400."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, "Field 'url' must be a non-empty string.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(400, "Field 'url' must be an absolute http(s) URL.")
    return value


def dumps(obj: Any) -> bytes:
    """The one JSON serialisation of the emulator (UTF-8, emoji and NUL kept exactly)."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate sent as "\\udXXX": escape it back
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")
