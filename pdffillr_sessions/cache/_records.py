"""The values the cache hands back: frozen records, typed where the contract fixes a value."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .._contract import LOCAL_PENDING, LocalState, SessionStatus
from .._models import HistoryEntry, SessionInfo

__all__ = ["CacheStats", "CachedSession", "CreateIntent", "SearchHit"]


@attrs.frozen(kw_only=True)
class CachedSession:
    """One session as the cache knows it: the server's view plus what happened locally.

    ``local_state`` is what this machine knows beyond the server: ``"open"`` (a with-block
    opened it and has not ended it, or was killed), ``"end_pending"`` (ending it failed),
    ``"ended"`` (the end is confirmed), or None (only mirrored by a sync).
    """

    session_id: str
    scope: str
    title: str | None
    status: SessionStatus
    message_count: int
    created_at: datetime
    ended_at: datetime | None
    entry_count: int
    local_state: LocalState | None
    local_error: str | None
    opened_at: datetime | None
    #: When the full history was last mirrored; None: never, or the server's description of
    #: the session changed since (``sync`` then fetches it).
    synced_at: datetime | None
    raw: Mapping[str, Any] = attrs.field(repr=False, factory=dict)
    #: The process that opened it here (``record_opened``); None for rows cached otherwise.
    #: Shown to people; ``reap`` decides by ``owner_lock``, never by pid.
    opened_pid: int | None = None
    opened_host: str | None = None
    #: The server it lives on (normalised base URL); None for rows written before servers were
    #: recorded (``m004_server_and_owner_lock``), or by a cache opened without a server.
    server: str | None = None
    #: The lock its with-block holds while it runs (``HistoryCache.acquire_owner``: a lock file,
    #: or on PostgreSQL an advisory lock); None when no block owns it.
    owner_lock: str | None = None
    #: Entries were appended here (a send's reply) and no full mirror has confirmed their
    #: place in the server's order yet: ``sync`` fetches this history again.
    provisional_order: bool = False

    @property
    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self.session_id,
            title=self.title,
            status=self.status,
            message_count=self.message_count,
            created_at=self.created_at,
            raw=dict(self.raw),
        )

    @property
    def end_pending(self) -> bool:
        """Opened here and not known to be ended (``local_state`` open or end_pending)."""
        return self.local_state in LOCAL_PENDING


@attrs.frozen(kw_only=True)
class CreateIntent:
    """A create request about to be sent (or sent, reply not yet recorded)."""

    scope: str
    idempotency_key: str
    title: str | None
    recorded_at: datetime
    #: The process that recorded it (None for intents cached before ``m002_opened_by``).
    opened_pid: int | None = None
    opened_host: str | None = None
    #: The server the create was sent to; None for intents recorded before servers were.
    server: str | None = None
    #: The lock file its with-block holds while it runs (``_owner``); None for older intents.
    owner_lock: str | None = None


@attrs.frozen(kw_only=True)
class SearchHit:
    """A full-text match. ``rank`` is FTS5 bm25 (lower is better); ``score`` is ``-rank``."""

    entry: HistoryEntry
    scope: str
    rank: float
    snippet: str

    @property
    def score(self) -> float:
        return -self.rank


@attrs.frozen(kw_only=True)
class CacheStats:
    """What ``HistoryCache.stats()`` counts; ``attrs.asdict`` gives the CLI's ``--json`` shape.

    ``oldest_created_at``/``newest_created_at`` are the stored UTC text
    (``2026-01-01T00:00:00.000000Z``), None for an empty cache.
    """

    path: str
    scope: str | None
    schema_version: int
    migrations: tuple[str, ...]
    sessions: int
    sessions_by_status: Mapping[str, int]
    sessions_by_scope: Mapping[str, int]
    entries: int
    entries_by_scope: Mapping[str, int]
    pending_ends: int
    create_intents: int
    oldest_created_at: str | None
    newest_created_at: str | None
    file_size: int
    #: Sessions opened by a with-block, per host that opened them (a fleet's workers), and how
    #: many of those are still pending (open or end pending: what ``reap`` looks at).
    sessions_by_host: Mapping[str, int] = attrs.field(factory=dict)
    pending_by_host: Mapping[str, int] = attrs.field(factory=dict)
