"""Every API call as a plain value: what to send, and how to read a successful answer.

A ``Call`` says what to send (method, path, body, whether it needs an Idempotency-Key) and how to
read the answer. Building one is pure (no I/O but reading an upload once); the sync and async
clients only run it through their retry loop. Adding an endpoint is one function here, used by
both clients, so they cannot drift apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from . import _contract
from ._exceptions import APIStatusError, InvalidInputError, ProtocolError, SessionEndedError
from ._models import (
    HistoryEntry,
    SessionInfo,
    parse_entries,
    parse_session,
    parse_sessions,
    parse_sessions_lenient,
)
from ._responses import decode_body
from ._uploads import FileInput, read_upload
from ._validation import encodable, validate_session_id, validate_title

__all__ = [
    "Call",
    "attach_call",
    "create_call",
    "end_call",
    "lenient_list_call",
    "list_call",
    "messages_call",
    "new_idempotency_key",
    "send_call",
]

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Call(Generic[T]):
    """One logical API call: what to send, and how to read a successful answer.

    ``idempotent=False`` calls get one Idempotency-Key per logical call (``idempotency_key`` or
    a fresh one), reused on every retry. ``done_on`` lists errors that mean the call's goal is
    already reached (ending an ended session): ``parse(b"")`` is returned for them.
    """

    method: str
    path: str
    parse: Callable[[bytes], T]
    json: Any = None
    files: Mapping[str, Any] | None = None
    idempotent: bool = True
    idempotency_key: str | None = None
    done_on: tuple[type[APIStatusError], ...] = ()


def new_idempotency_key() -> str:
    """A fresh key for one logical non-idempotent call."""
    return f"pfs_{uuid.uuid4().hex}"


def create_call(title: str | None, idempotency_key: str | None) -> Call[SessionInfo]:
    body = {} if validate_title(title) is None else {"title": title}
    return Call(
        method="POST",
        path=_contract.SESSIONS_PATH,
        json=body,
        idempotent=False,
        idempotency_key=idempotency_key,
        parse=lambda c: parse_session(decode_body(c, what="create"), what="created session"),
    )


def list_call() -> Call[list[SessionInfo]]:
    return Call(
        method="GET",
        path=_contract.SESSIONS_PATH,
        parse=lambda c: parse_sessions(decode_body(c, what="sessions list")),
    )


def lenient_list_call() -> Call[tuple[list[SessionInfo], list[tuple[str | None, ProtocolError]]]]:
    """``list_call`` that keeps the sessions it can parse and returns the others' errors."""
    return Call(
        method="GET",
        path=_contract.SESSIONS_PATH,
        parse=lambda c: parse_sessions_lenient(decode_body(c, what="sessions list")),
    )


def end_call(session_id: str) -> Call[None]:
    return Call(
        method="POST",
        path=_contract.end_path(validate_session_id(session_id)),
        parse=lambda c: None,
        done_on=(SessionEndedError,),
    )


def messages_call(session_id: str) -> Call[list[HistoryEntry]]:
    sid = validate_session_id(session_id)
    return Call(
        method="GET",
        path=_contract.messages_path(sid),
        parse=lambda c: parse_entries(decode_body(c, what="history"), session_id=sid),
    )


def send_call(session_id: str, content: str) -> Call[list[HistoryEntry]]:
    sid = validate_session_id(session_id)
    if not isinstance(content, str):
        raise InvalidInputError(f"content must be a string, got {type(content).__name__}")
    if not content:
        raise InvalidInputError("content must not be empty")
    encodable(content, "content")
    return Call(
        method="POST",
        path=_contract.messages_path(sid),
        json={"content": content},
        idempotent=False,
        parse=lambda c: parse_entries(
            decode_body(c, what="send"), session_id=sid, what="sent entries"
        ),
    )


def attach_call(
    session_id: str,
    *,
    file: FileInput | None,
    url: str | None,
    filename: str | None,
    content_type: str,
) -> Call[list[HistoryEntry]]:
    sid = validate_session_id(session_id)
    if (file is None) == (url is None):
        raise InvalidInputError("attach needs exactly one of file= or url=")

    def parse(c: bytes) -> list[HistoryEntry]:
        return parse_entries(decode_body(c, what="attach"), session_id=sid, what="attached entries")

    path = _contract.documents_path(sid)
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInputError("url must be an http(s) URL")
        encodable(url, "url")
        return Call(method="POST", path=path, json={"url": url}, idempotent=False, parse=parse)
    data, name = read_upload(file, filename)
    encodable(content_type, "content_type")
    return Call(
        method="POST",
        path=path,
        files={"file": (name, data, content_type)},
        idempotent=False,
        parse=parse,
    )
