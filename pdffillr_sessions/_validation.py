"""Refusing bad arguments locally, before any request is sent or any cache row is written.

The call builders, the upload reader and ``Session`` (which records a create before sending it)
all need the same checks and the same error words, so they live here rather than in any of them.
"""

from __future__ import annotations

from ._exceptions import InvalidInputError

__all__ = ["encodable", "validate_session_id", "validate_title"]


def validate_session_id(session_id: object) -> str:
    """Refuse ids that cannot be one path segment; everything else is encoded, never parsed."""
    if not isinstance(session_id, str):
        raise InvalidInputError(f"session_id must be a string, got {type(session_id).__name__}")
    if session_id in ("", ".", ".."):
        raise InvalidInputError(f"session_id {session_id!r} is not a valid session id")
    return session_id


def encodable(text: str, what: str) -> str:
    """Refuse text that cannot be sent as UTF-8 (lone surrogates), before any request."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode text (a lone surrogate at position {exc.start})"
        ) from None
    return text


def validate_title(title: object) -> str | None:
    """A title is a string or None; anything else is refused before any request or write."""
    if title is not None and not isinstance(title, str):
        raise InvalidInputError(f"title must be a string or None, got {type(title).__name__}")
    return None if title is None else encodable(title, "title")
