"""How the command line shows things: tables, transcripts, Markdown, JSON. Pure text building.

Every function here turns a library value into text (or bytes on stdout); none reads the cache
or the network. Text is written as UTF-8 whatever the locale says, control characters in table
cells are made visible, and the ``--json`` shapes (their keys) are stable.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

import attrs

from ._contract import ENTRY_ACTIVITY, ENTRY_DOCUMENT, ENTRY_MESSAGE, LOCAL_END_PENDING, LOCAL_OPEN
from ._exceptions import escape_controls

if TYPE_CHECKING:
    from ._end import EndOutcome, EndReport
    from ._models import HistoryEntry
    from ._reap import ReapOutcome, ReapReport
    from ._sync import SyncFailure, SyncReport
    from .cache import CachedSession, CacheStats, SearchHit

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: What a terminal must never receive raw: C0 controls but tab and newline, DEL, C1 controls,
#: bidirectional overrides, lone surrogates (``_exceptions.escape_controls`` escapes the same).
_TERMINAL_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)

# -- writing -----------------------------------------------------------------------------------


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """JSON with the text as it is (``ensure_ascii=False``); lone surrogates stay escaped."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    # Only a lone surrogate cannot be written as UTF-8; in JSON it can only sit inside a string,
    # where its \\u escape is equally valid and decodes back to the same str.
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def terminal_safe(text: str) -> str:
    """``text`` for a terminal: every character a terminal would act on (escape sequences,
    C1 controls, bidi overrides) as a ``\\uNNNN`` escape, so that server-chosen text cannot
    move the cursor, retitle the window or hide what follows. JSON stays valid JSON, with
    the same decoded value."""
    return _TERMINAL_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _is_terminal(stream: object) -> bool:
    try:
        return bool(getattr(stream, "isatty", lambda: False)())
    except (ValueError, OSError):  # closed or odd streams
        return False


def write(text: str, stream: IO[bytes] | None = None) -> None:
    """Write UTF-8 whatever the locale says (emoji and NULs must survive a pipe or a file).

    On a terminal, text is made ``terminal_safe`` first: output meant for a file or a pipe is
    written exactly, output meant for eyes cannot be turned against them.
    """
    if _is_terminal(stream if stream is not None else sys.stdout):
        text = terminal_safe(text)
    data = text.encode("utf-8", errors="backslashreplace")
    if stream is not None:
        stream.write(data)
        return
    sys.stdout.flush()
    buffer: IO[bytes] | None = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # pragma: no cover - a text-only stdout (an IDE console)
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
        return
    buffer.write(data)
    buffer.flush()


def emit_json(items: Any, *, nl: bool) -> None:
    if nl and isinstance(items, list):
        write("".join(dumps(item) + "\n" for item in items))
    else:
        write(dumps(items, indent=2) + "\n")


# -- cells and tables --------------------------------------------------------------------------


def visible(text: str) -> str:
    """Control characters (but tab and newline), C1 controls, bidi overrides and lone
    surrogates as ``\\xNN``/``\\uNNNN``: never raw to a terminal."""
    return escape_controls(text)


def cell(value: Any, width: int | None = None) -> str:
    """One table cell: one line, control characters made visible, cut to ``width``."""
    if value is None:
        return ""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    text = visible(text)
    if width is not None and len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)
    return "\n".join(lines) + "\n"


def iso(value: datetime | str | None) -> str | None:
    """A timestamp as ISO 8601 text (``Z`` for UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def short_time(value: datetime | str | None) -> str:
    """A timestamp for a table: ``2026-01-31 12:00:00`` (+ the offset when not UTC)."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = moment
    if value.tzinfo is not None and value.utcoffset() != timedelta(0):
        return value.isoformat(sep=" ", timespec="seconds")
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def local_label(state: str | None) -> str:
    return {LOCAL_OPEN: "open", LOCAL_END_PENDING: "end pending"}.get(state or "", "")


# -- the shapes of --json (stable keys) --------------------------------------------------------


def session_dict(s: CachedSession) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "title": s.title,
        "status": s.status,
        "message_count": s.message_count,
        "entry_count": s.entry_count,
        "created_at": iso(s.created_at),
        "ended_at": iso(s.ended_at),
        "scope": s.scope,
        "local_state": s.local_state,
        "local_error": s.local_error,
        "opened_at": iso(s.opened_at),
        "synced_at": iso(s.synced_at),
    }


def session_object(s: CachedSession) -> dict[str, Any]:
    """The session as the server sent it, with the cache's stable keys on top."""
    out = session_dict(s)
    for key, value in s.raw.items():
        out.setdefault(key, value)
    return out


def entry_time(e: HistoryEntry) -> str | None:
    """The server's own timestamp text when it sent one, else ours."""
    raw_time = e.raw.get("created_at")
    return raw_time if isinstance(raw_time, str) else iso(e.created_at)


def entry_dict(e: HistoryEntry) -> dict[str, Any]:
    """One history entry: the stable keys first, then whatever else the server sent."""
    out: dict[str, Any] = {
        "id": e.id,
        "session_id": e.session_id,
        "type": e.type,
        "role": e.role,
        "content": e.content,
        "created_at": entry_time(e),
    }
    for key, value in e.raw.items():
        out.setdefault(key, value)
    return out


def hit_dict(hit: SearchHit, title: str | None) -> dict[str, Any]:
    return {
        "session_id": hit.entry.session_id,
        "session_title": title,
        "entry_id": hit.entry.id,
        "type": hit.entry.type,
        "role": hit.entry.role,
        "created_at": entry_time(hit.entry),
        "score": hit.score,
        "snippet": hit.snippet,
        "content": hit.entry.content,
    }


def stats_dict(stats: CacheStats) -> dict[str, Any]:
    """``CacheStats`` with its field names as keys (tuples as lists, mappings as dicts)."""
    return attrs.asdict(stats)


def sync_dict(report: SyncReport) -> dict[str, Any]:
    return {
        "sessions": report.sessions,
        "new": report.new,
        "changed": report.changed,
        "unchanged": report.unchanged,
        "histories_fetched": report.histories_fetched,
        "entries_added": report.entries_added,
        "not_listed_upstream": len(report.not_listed_upstream),
        "failures": [
            {
                "session_id": f.session_id,
                "stage": f.stage,
                "error_type": f.error_type,
                "message": f.message,
            }
            for f in report.failures
        ],
    }


def reap_outcome_dict(o: ReapOutcome) -> dict[str, Any]:
    if o.kind == "session":
        who: dict[str, Any] = {
            "kind": o.kind,
            "session_id": o.session_id,
            "title": o.title,
            "local_state": o.local_state,
            "opened_at": iso(o.opened_at),
        }
    else:
        who = {
            "kind": o.kind,
            "session_id": o.session_id,
            "title": o.title,
            "idempotency_key": o.idempotency_key,
            "recorded_at": iso(o.recorded_at),
        }
    return {
        **who,
        "opened_pid": o.opened_pid,
        "owner": o.owner,
        "live": o.live,
        "action": o.action,
        "detail": o.detail,
    }


def end_dict(report: EndReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "results": [
            {"session_id": o.session_id, "action": o.action, "detail": o.detail}
            for o in report.outcomes
        ],
    }


# -- readable text -----------------------------------------------------------------------------


def sessions_table(found: Sequence[CachedSession]) -> str:
    rows = [
        (
            cell(s.session_id),
            cell(s.title, 40),
            cell(s.status),
            cell(
                s.entry_count
                if s.entry_count == s.message_count
                else f"{s.entry_count}/{s.message_count}"
            ),
            cell(short_time(s.created_at)),
            cell(s.scope),
            cell(local_label(s.local_state)),
        )
        for s in found
    ]
    return table(("ID", "TITLE", "STATUS", "ENTRIES", "CREATED", "SCOPE", "LOCAL"), rows)


def hits_table(hits: Sequence[SearchHit], titles: Mapping[str, str | None]) -> str:
    rows = [
        (
            cell(hit.entry.session_id),
            cell(titles.get(hit.entry.session_id), 24),
            cell(short_time(entry_time(hit.entry))),
            cell(hit.entry.role or hit.entry.type),
            cell(hit.snippet, 70),
        )
        for hit in hits
    ]
    return table(("SESSION", "TITLE", "WHEN", "WHO", "MATCH"), rows)


def document_summary(doc: Mapping[str, Any]) -> str:
    name = doc.get("filename") or doc.get("document_id") or "document"
    details = []
    size = doc.get("size_bytes")
    if isinstance(size, int) and not isinstance(size, bool):
        details.append(f"{size:,} bytes")
    if doc.get("source"):
        details.append(str(doc["source"]))
    if doc.get("url"):
        details.append(str(doc["url"]))
    return f"{name} ({', '.join(details)})" if details else str(name)


def transcript(s: CachedSession, entries: Sequence[HistoryEntry]) -> str:
    title = cell(s.title) if s.title else "(untitled)"
    out = [f"Session {cell(s.session_id)}: {title}"]
    status = cell(s.status)
    if s.local_state and s.local_state != s.status:
        status += f" (local: {local_label(s.local_state) or s.local_state})"
    out.append(f"  status:   {status}")
    if s.local_error:
        out.append(f"  error:    {cell(s.local_error)}")
    out.append(f"  created:  {short_time(s.created_at)}")
    out.append(
        f"  entries:  {s.entry_count} cached (message_count {s.message_count} at the last sync)"
    )
    out.append(f"  scope:    {s.scope}")
    if s.opened_at:
        out.append(f"  opened:   {short_time(s.opened_at)} (by a Session on this machine)")
    if s.synced_at:
        out.append(f"  synced:   {short_time(s.synced_at)}")
    out.append("")
    if not entries:
        out.append("(no history)")
    for e in entries:
        when = cell(short_time(entry_time(e)))
        doc = e.document
        if e.type == ENTRY_MESSAGE:
            out.append(f"[{when}] {cell(e.role) or 'message'}:")
            lines = (e.content or "").splitlines() or [""]
            out.extend(f"    {visible(line)}" for line in lines)
        elif e.type == ENTRY_DOCUMENT or doc is not None:
            summary = cell(document_summary(doc)) if doc is not None else cell(e.content)
            out.append(f"[{when}] document: {summary}")
            if doc is not None and e.content:
                out.append(f"    {cell(e.content)}")
        elif e.type == ENTRY_ACTIVITY:
            label = cell(e.event) or "activity"
            out.append(f"[{when}] activity {label}: {cell(e.content)}".rstrip(": "))
        else:
            role = f" {cell(e.role)}" if e.role else ""
            out.append(f"[{when}] {cell(e.type)}{role}: {cell(e.content)}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def markdown(s: CachedSession, entries: Sequence[HistoryEntry]) -> str:
    out = [f"# {s.title or s.session_id}", ""]
    out.append(f"- Session: `{s.session_id}`")
    out.append(f"- Status: {s.status}")
    out.append(f"- Created: {iso(s.created_at)}")
    out.append(f"- Entries: {len(entries)}")
    out.append("")
    for e in entries:
        when = entry_time(e)
        doc = e.document
        if e.type == ENTRY_MESSAGE:
            out.append(f"## {e.role or 'message'} · {when}")
        elif e.type == ENTRY_ACTIVITY:
            out.append(f"## activity `{e.event or '?'}` · {when}")
        else:
            out.append(f"## {e.type} · {when}")
        out.append("")
        if doc is not None:
            out.append(f"**{document_summary(doc)}**")
            out.append("")
        if e.content:
            out.append(e.content)
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def stats_text(stats: CacheStats) -> str:
    lines = [
        f"path:            {stats.path}",
        f"size:            {stats.file_size:,} bytes",
        f"schema version:  {stats.schema_version}",
        f"sessions:        {stats.sessions}",
    ]
    lines += [f"  {cell(k) + ':':<15}{v}" for k, v in stats.sessions_by_status.items()]
    lines.append(f"entries:         {stats.entries}")
    lines.append(f"oldest:          {stats.oldest_created_at or '-'}")
    lines.append(f"newest:          {stats.newest_created_at or '-'}")
    lines.append("scopes (API key fingerprints):")
    lines += [
        f"  {cell(k):<17}{v} sessions, {stats.entries_by_scope.get(k, 0)} entries"
        for k, v in stats.sessions_by_scope.items()
    ]
    lines.append(f"pending ends:    {stats.pending_ends}  (see `pdffillr-sessions reap`)")
    lines.append(f"create intents:  {stats.create_intents}")
    if stats.sessions_by_host:
        lines.append("hosts (sessions opened by a with-block there):")
        lines += [
            f"  {cell(host):<17}{n} sessions, {stats.pending_by_host.get(host, 0)} pending"
            for host, n in stats.sessions_by_host.items()
        ]
    return "\n".join(lines) + "\n"


def sync_text(report: SyncReport) -> str:
    fetched, added = report.histories_fetched, report.entries_added
    text = (
        f"Synced {report.sessions} session(s): {report.new} new, "
        f"{report.changed} changed, {report.unchanged} unchanged; "
        f"fetched {fetched} histor{'y' if fetched == 1 else 'ies'}, added {added} entr"
        f"{'y' if added == 1 else 'ies'}."
    )
    gone = len(report.not_listed_upstream)
    if gone:
        text += f" {gone} cached session(s) are no longer listed by the server (kept)."
    if report.failures:
        text += f" {len(report.failures)} session(s) could not be mirrored (see the errors)."
    return text + "\n"


_SYNC_STAGES = {"list": "read", "fetch": "fetch the history of", "store": "store the history of"}


def sync_problem(f: SyncFailure) -> str:
    """Why one session was not mirrored, as one line (after ``Error: ``)."""
    who = "a listed session" if f.session_id is None else f"session {cell(repr(f.session_id))}"
    return f"could not {_SYNC_STAGES[f.stage]} {who}: {cell(f.message)} ({f.error_type})"


_REAP_LABELS = {
    "ended": "ended",
    "gone": "gone",
    "failed": "FAILED",
    "skipped": "skipped",
    "would_end": "would end",
    "would_replay_and_end": "would replay create and end",
    "dropped": "dropped",
}


def reap_text(report: ReapReport) -> str:
    if not report.outcomes:
        return f"Nothing to reap{' (' + report.note + ')' if report.note else ''}.\n"
    lines = []
    for o in report.outcomes:
        who = cell(o.session_id) if o.session_id else f"create {o.idempotency_key}"
        title = f' "{cell(o.title, 40)}"' if o.title else ""
        detail = f": {cell(o.detail)}" if o.detail else ""
        lines.append(f"{_REAP_LABELS.get(o.action, o.action)}  {who}{title}{detail}")
    counts: dict[str, int] = {}
    for o in sorted(report.outcomes, key=lambda o: o.action):
        counts[o.action] = counts.get(o.action, 0) + 1
    lines.append("Done: " + ", ".join(f"{n} {_REAP_LABELS.get(k, k)}" for k, n in counts.items()))
    return "\n".join(lines) + "\n"


def end_text(report: EndReport) -> str:
    """The ended sessions, one line each (problems go to stderr as ``Error:`` lines)."""
    return "".join(f"ended  {cell(sid)}\n" for sid in report.ended)


def end_problem(o: EndOutcome) -> str:
    """Why one session was not ended, as one line."""
    if o.action == "not_found":
        return f"no session {cell(repr(o.session_id))} under this API key"
    return f"could not end {cell(o.session_id)}: {cell(o.detail)}"
