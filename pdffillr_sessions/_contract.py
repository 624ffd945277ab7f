"""Everything about the wire that the upstream docs do not pin down, in one place.

The Sessions page of the Pdffillr docs fixes the session endpoints and the Session object.
Every name below marked *inferred* comes from ``shared/api-contract.md``: the most likely shape,
kept here so that it is a one-line change when the real API says otherwise. Nothing in this
module does I/O or imports anything heavy: the offline CLI imports it.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import quote

DEFAULT_BASE_URL = "https://api.pdffillr.ai"  # inferred
ENV_API_KEY = "PDFFILLR_API_KEY"
ENV_BASE_URL = "PDFFILLR_BASE_URL"
ENV_CACHE_PATH = "PDFFILLR_SESSIONS_DB"

# Headers.
AUTH_HEADER = "Authorization"  # inferred: "Bearer <key>"
AUTH_SCHEME = "Bearer"
IDEMPOTENCY_HEADER = "Idempotency-Key"  # inferred
REQUEST_ID_HEADER = "x-request-id"  # inferred
RETRY_AFTER_HEADER = "retry-after"
RETRY_AFTER_MS_HEADER = "retry-after-ms"

# Routes (relative to the base URL).
SESSIONS_PATH = "/v1/sdk/chat/sessions"


def _segment(session_id: str) -> str:
    """Encode a session id as exactly one path segment.

    Session ids are opaque: we never parse them, but we must never let one leave its segment
    (``..``, ``a/b``, ``a?b``). Empty ids and the dot segments are refused by the caller
    (``validate_session_id``); everything else is percent-encoded, ``/`` included.
    """
    return quote(session_id, safe="")


def session_path(session_id: str) -> str:
    return f"{SESSIONS_PATH}/{_segment(session_id)}"


def end_path(session_id: str) -> str:
    return f"{session_path(session_id)}/end"


def messages_path(session_id: str) -> str:  # inferred path
    return f"{session_path(session_id)}/messages"


def documents_path(session_id: str) -> str:  # inferred path
    return f"{session_path(session_id)}/documents"


# Envelopes.
LIST_ENVELOPE_KEY = "data"  # a list may come bare or as {"data": [...]}
ERROR_ENVELOPE_KEY = "error"  # {"error": {"type": ..., "message": ...}} (inferred)

# Values the contract fixes. The Literal types say what a type checker may rely on; at run time
# an unknown value from the server is kept as it is (never refused, never coerced).
SessionStatus = Literal["active", "ended"]  # the seed
EntryType = Literal["message", "document", "activity"]  # inferred
Role = Literal["user", "assistant"]  # inferred; None for documents and activity

STATUS_ACTIVE: Final = "active"
STATUS_ENDED: Final = "ended"
ENTRY_MESSAGE: Final = "message"
ENTRY_DOCUMENT: Final = "document"
ENTRY_ACTIVITY: Final = "activity"

# What this machine knows beyond the server (the cache's ``local_state``), not the wire.
LocalState = Literal["open", "end_pending", "ended"]
#: What a record's owner lock says (``_owner``, ``cache._pg_locks``). ``alive``: a running
#: with-block holds the lock (or another reap is working on the record). ``dead``: nobody
#: holds it: its owner has exited (the kernel or the database released it). ``unknown``: the
#: record names no usable lock (older versions, Windows, a missing file).
Liveness = Literal["alive", "dead", "unknown"]
LOCAL_OPEN: Final = "open"  # a with-block opened it and has not ended it (or was killed)
LOCAL_END_PENDING: Final = "end_pending"  # ending it failed: `reap` retries
LOCAL_ENDED: Final = "ended"  # the end is confirmed
LOCAL_PENDING: Final = (LOCAL_OPEN, LOCAL_END_PENDING)  # opened here, end not confirmed

# Error types (inferred).
ERROR_SESSION_ENDED = "session_ended"
