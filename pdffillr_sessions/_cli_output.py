"""How the command line shows things: tables, transcripts, Markdown, JSON. Pure text building.

Every function here turns a library value into text (or bytes on stdout); none reads the cache
or the network. Text is written as UTF-8 whatever the locale says, control characters in table
cells are made visible, and the ``--json`` shapes (their keys) are stable.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
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


def is_terminal(stream: object) -> bool:
    try:
        return bool(getattr(stream, "isatty", lambda: False)())
    except (ValueError, OSError):  # closed or odd streams
        return False


def write(text: str, stream: IO[bytes] | None = None) -> None:
    """Write UTF-8 whatever the locale says (emoji and NULs must survive a pipe or a file).

    On a terminal, text is made ``terminal_safe`` first: output meant for a file or a pipe is
    written exactly, output meant for eyes cannot be turned against them.
    """
    if is_terminal(stream if stream is not None else sys.stdout):
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


class Sink:
    """Text written as ``write`` writes it (UTF-8; terminal-safe on a terminal), in blocks of
    about ``block`` characters: what ``show`` and ``export`` stream into, so that their memory
    stays flat however long the history is. Use it as a context manager (the rest is flushed
    on exit)."""

    def __init__(self, stream: IO[bytes] | None = None, block: int = 1 << 16) -> None:
        self._stream = stream
        self._block = block
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self._block:
            self.flush()

    def write_all(self, pieces: Iterable[str]) -> None:
        for piece in pieces:
            self.write(piece)

    def flush(self) -> None:
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
            write(text, self._stream)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def trimmed(lines: Iterable[str]) -> Iterator[str]:
    """``"\n".join(lines).rstrip("\n") + "\n"``, piece by piece: only newlines that may turn
    out to be trailing are held back (the shapes of ``transcript`` and ``markdown``)."""
    held = 0
    first = True
    for line in lines:
        piece = line if first else "\n" + line
        first = False
        core = piece.rstrip("\n")
        if core:
            yield "\n" * held + core if held else core
            held = len(piece) - len(core)
        else:
            held += len(piece)
    yield "\n"


def json_lines(items: Iterable[Any]) -> Iterator[str]:
    """``--nl`` and ``export -f jsonl``: one compact JSON object a line."""
    for item in items:
        yield dumps(item) + "\n"


def json_document(head: Mapping[str, Any], entries: Iterable[HistoryEntry]) -> Iterator[str]:
    """``dumps({**head, "entries": [entry_dict(e), ...]}, indent=2) + "\n"``, piece by piece
    (``show --json``, ``export -f json``): the document around the list is laid out by
    ``json`` itself, each entry is indented into place as the list's item would be."""
    marker = f"pdffillr-sessions entries {uuid.uuid4().hex}"
    before, after = dumps({**head, "entries": marker}, indent=2).split(dumps(marker), 1)
    yield before
    first = True
    for e in entries:
        item = dumps(entry_dict(e), indent=2).replace("\n", "\n    ")
        yield ("[\n    " if first else ",\n    ") + item
        first = False
    yield "[]" if first else "\n  ]"
    yield after + "\n"


#: How a listing can be printed, as sqlite-utils spells them (``-t/--table`` is the default).
LISTING_FORMATS = ("table", "json", "nl", "csv", "tsv")


def _delimited_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return dumps(value)
    return str(value)


def delimited(
    items: Sequence[Mapping[str, Any]], fields: Sequence[str], *, delimiter: str, headers: bool
) -> str:
    """CSV (``,``) or TSV (tab) with the keys of ``--json`` as columns, as sqlite-utils writes
    them: text exactly, quoted where it must be (a value with a newline stays one field),
    None as an empty field, a list or object as its JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    if headers:
        writer.writerow(fields)
    for item in items:
        writer.writerow([_delimited_value(item.get(f)) for f in fields])
    return buffer.getvalue()


def emit_listing(
    fmt: str,
    items: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    table_text: Any,
    *,
    headers: bool = True,
) -> None:
    """Print a listing as ``fmt`` (``LISTING_FORMATS``); ``table_text`` makes the table (only
    called for one)."""
    if fmt in ("json", "nl"):
        emit_json(list(items), nl=fmt == "nl")
    elif fmt in ("csv", "tsv"):
        write(delimited(items, fields, delimiter="," if fmt == "csv" else "\t", headers=headers))
    else:
        write(table_text())


# -- cells and tables --------------------------------------------------------------------------


def visible(text: str) -> str:
    """Control characters (but tab and newline), C1 controls, bidi overrides and lone
    surrogates as ``\\xNN``/``\\uNNNN``: never raw to a terminal."""
    return escape_controls(text)


def char_width(ch: str) -> int:
    """Columns a character takes on a terminal: 0 for combining marks and zero-width
    formatting, 2 for East Asian wide and full-width ones (most emoji), else 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (``len`` counts an emoji as one)."""
    if text.isascii():
        return len(text)
    return sum(char_width(ch) for ch in text)


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal columns, an ellipsis marking the cut."""
    if display_width(text) <= width:
        return text
    if width <= 0:
        return ""
    kept, used = [], 0
    for ch in text:
        w = char_width(ch)
        if used + w > width - 1:
            break
        kept.append(ch)
        used += w
    return "".join(kept) + "…"


def cell(value: Any, width: int | None = None) -> str:
    """One table cell: one line, control characters made visible, cut to ``width``."""
    if value is None:
        return ""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    text = visible(text)
    return text if width is None else truncate(text, width)


@attrs.frozen
class Column:
    """A table column. ``shrink`` (a width) lets its cells be cut, with an ellipsis, down to
    that many columns when the table is wider than the terminal; ``drop`` (a rank, lowest
    first) lets it go when cutting is not enough. A column with neither is never cut: an id
    is shown whole, or it could not be pasted into ``show``."""

    header: str
    shrink: int | None = None
    drop: int | None = None


def _widths(columns: Sequence[Column], rows: list[list[str]]) -> list[int]:
    widths = [display_width(c.header) for c in columns]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], display_width(c))
    return widths


def _fit(columns: Sequence[Column], widths: list[int], width: int) -> list[int]:
    """Cut the shrinkable column with the most room above its floor by one column of text
    until the table fits (or none can be cut further): a long title and a long match give up
    about as much as each other, and a short one is left alone."""
    widths = list(widths)
    floors = [
        max(c.shrink, display_width(c.header)) if c.shrink is not None else w
        for c, w in zip(columns, widths, strict=True)
    ]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    while excess > 0:
        room = [(widths[i] - floors[i], i) for i in range(len(widths)) if widths[i] > floors[i]]
        if not room:
            break
        _, roomiest = max(room)
        widths[roomiest] -= 1
        excess -= 1
    return widths


def table(
    headers: Sequence[str | Column], rows: Iterable[Sequence[str]], width: int | None = None
) -> str:
    """A plain-text table. With ``width`` (the terminal's), it fits: shrinkable columns are
    cut with an ellipsis, then droppable ones dropped, lowest ``drop`` first."""
    columns = [h if isinstance(h, Column) else Column(h) for h in headers]
    table_rows = [list(r) for r in rows]
    widths = _widths(columns, table_rows)
    if width is not None:
        order = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None)
        fitted = _fit(columns, widths, width)
        while sum(fitted) + 2 * (len(fitted) - 1) > width and order:
            _, gone = order.pop(0)
            keep = [i for i in range(len(columns)) if i != gone]
            order = [(d, keep.index(i)) for d, i in order]
            columns = [columns[i] for i in keep]
            table_rows = [[r[i] for i in keep] for r in table_rows]
            widths = [widths[i] for i in keep]
            fitted = _fit(columns, widths, width)
        widths = fitted

    def line(cells: Sequence[str]) -> str:
        padded = []
        for c, w in zip(cells, widths, strict=True):
            c = truncate(c, w)
            padded.append(c + " " * (w - display_width(c)))
        return "  ".join(padded).rstrip()

    lines = [line([c.header for c in columns]), "  ".join("-" * w for w in widths)]
    lines.extend(line(r) for r in table_rows)
    return "\n".join(lines) + "\n"


def terminal_width(stream: object) -> int | None:
    """How many columns output to ``stream`` should fit in: ``$COLUMNS`` when set (so it can
    be asked for in a pipe too), else the terminal's when ``stream`` is one, else None (no
    fitting: a file or a pipe gets whole cells)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if is_terminal(stream):
        try:
            return os.get_terminal_size(stream.fileno()).columns  # type: ignore[attr-defined]
        except (OSError, ValueError, AttributeError):
            return None
    return None


def iso(value: datetime | str | None) -> str | None:
    """A timestamp for JSON, CSV and TSV: ISO 8601 text (``Z`` for UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def short_time(value: datetime | str | None) -> str:
    """The one timestamp style of every text meant for people (tables, transcripts, ``stats``,
    Markdown): ``2026-01-31 12:00:00``, in UTC, to the second. A time with another offset is
    converted to UTC; one with none is taken as UTC; text that is no timestamp is kept."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = moment
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
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


SESSION_FIELDS = (
    "session_id",
    "title",
    "status",
    "message_count",
    "entry_count",
    "created_at",
    "ended_at",
    "scope",
    "local_state",
    "local_error",
    "opened_at",
    "synced_at",
)
HIT_FIELDS = (
    "session_id",
    "session_title",
    "entry_id",
    "type",
    "role",
    "created_at",
    "score",
    "snippet",
    "content",
)


def sessions_table(found: Sequence[CachedSession], width: int | None = None) -> str:
    """The sessions as a table that fits ``width``: the title is cut first, then CREATED and
    ENTRIES go. SCOPE is shown only when the sessions are of more than one key, LOCAL only
    when some session has a local state: a column that says the same on every row says
    nothing."""
    columns = [
        Column("ID"),
        Column("TITLE", shrink=10),
        Column("STATUS"),
        Column("ENTRIES", drop=2),
        Column("CREATED", drop=1),
    ]
    show_scope = len({s.scope for s in found}) > 1
    show_local = any(local_label(s.local_state) for s in found)
    if show_scope:
        columns.append(Column("SCOPE", drop=3))
    if show_local:
        columns.append(Column("LOCAL", drop=4))
    rows = []
    for s in found:
        row = [
            cell(s.session_id),
            cell(s.title, 40),
            cell(s.status),
            cell(
                s.entry_count
                if s.entry_count == s.message_count
                else f"{s.entry_count}/{s.message_count}"
            ),
            cell(short_time(s.created_at)),
        ]
        if show_scope:
            row.append(cell(s.scope))
        if show_local:
            row.append(cell(local_label(s.local_state)))
        rows.append(row)
    return table(columns, rows, width)


def hits_table(
    hits: Sequence[SearchHit],
    titles: Mapping[str, str | None],
    width: int | None = None,
    *,
    one_session: bool = False,
) -> str:
    """Search hits as a table that fits ``width``: the match and the title are cut first,
    then TITLE, WHEN and WHO go, in that order. With ``one_session`` (``--session``) the
    session's id and title are the same on every row and are not shown."""
    columns = [
        Column("SESSION"),
        Column("TITLE", shrink=8, drop=1),
        Column("WHEN", drop=2),
        Column("WHO", drop=3),
        Column("MATCH", shrink=24),
    ]
    rows = [
        [
            cell(hit.entry.session_id),
            cell(titles.get(hit.entry.session_id), 24),
            cell(short_time(entry_time(hit.entry))),
            cell(hit.entry.role or hit.entry.type),
            cell(hit.snippet, 70),
        ]
        for hit in hits
    ]
    if one_session:
        columns, rows = columns[2:], [r[2:] for r in rows]
    return table(columns, rows, width)


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


def transcript(s: CachedSession, entries: Iterable[HistoryEntry]) -> str:
    """The session's metadata and its history as readable text (``show``)."""
    return "".join(trimmed(transcript_lines(s, entries)))


def transcript_lines(s: CachedSession, entries: Iterable[HistoryEntry]) -> Iterator[str]:
    """``transcript``'s lines (no newline), one entry at a time (``trimmed`` joins them)."""
    title = cell(s.title) if s.title else "(untitled)"
    yield f"Session {cell(s.session_id)}: {title}"
    status = cell(s.status)
    if s.local_state and s.local_state != s.status:
        status += f" (local: {local_label(s.local_state) or s.local_state})"
    yield f"  status:   {status}"
    if s.local_error:
        yield f"  error:    {cell(s.local_error)}"
    yield f"  created:  {short_time(s.created_at)}"
    yield f"  entries:  {s.entry_count} cached (message_count {s.message_count} at the last sync)"
    yield f"  scope:    {s.scope}"
    if s.opened_at:
        yield f"  opened:   {short_time(s.opened_at)} (by a Session on this machine)"
    if s.synced_at:
        yield f"  synced:   {short_time(s.synced_at)}"
    yield ""
    empty = True
    for e in entries:
        empty = False
        when = cell(short_time(entry_time(e)))
        doc = e.document
        if e.type == ENTRY_MESSAGE:
            yield f"[{when}] {cell(e.role) or 'message'}:"
            lines = (e.content or "").splitlines() or [""]
            for line in lines:
                yield f"    {visible(line)}"
        elif e.type == ENTRY_DOCUMENT or doc is not None:
            summary = cell(document_summary(doc)) if doc is not None else cell(e.content)
            yield f"[{when}] document: {summary}"
            if doc is not None and e.content:
                yield f"    {cell(e.content)}"
        elif e.type == ENTRY_ACTIVITY:
            label = cell(e.event) or "activity"
            yield f"[{when}] activity {label}: {cell(e.content)}".rstrip(": ")
        else:
            role = f" {cell(e.role)}" if e.role else ""
            yield f"[{when}] {cell(e.type)}{role}: {cell(e.content)}"
        yield ""
    if empty:
        yield "(no history)"


def markdown(s: CachedSession, entries: Sequence[HistoryEntry]) -> str:
    """A readable Markdown transcript (``export -f markdown``)."""
    return "".join(trimmed(markdown_lines(s, entries, len(entries))))


def markdown_lines(s: CachedSession, entries: Iterable[HistoryEntry], count: int) -> Iterator[str]:
    """``markdown``'s lines, one entry at a time; ``count`` is how many ``entries`` holds."""
    yield f"# {s.title or s.session_id}"
    yield ""
    yield f"- Session: `{s.session_id}`"
    yield f"- Status: {s.status}"
    yield f"- Created: {short_time(s.created_at)}"
    yield f"- Entries: {count}"
    yield ""
    for e in entries:
        when = short_time(entry_time(e))
        doc = e.document
        if e.type == ENTRY_MESSAGE:
            yield f"## {e.role or 'message'} · {when}"
        elif e.type == ENTRY_ACTIVITY:
            yield f"## activity `{e.event or '?'}` · {when}"
        else:
            yield f"## {e.type} · {when}"
        yield ""
        if doc is not None:
            yield f"**{document_summary(doc)}**"
            yield ""
        if e.content:
            yield e.content
            yield ""


def stats_text(stats: CacheStats) -> str:
    lines = [
        f"path:            {stats.path}",
        f"size:            {stats.file_size:,} bytes",
        f"schema version:  {stats.schema_version}",
        f"sessions:        {stats.sessions}",
    ]
    lines += [f"  {cell(k) + ':':<15}{v}" for k, v in stats.sessions_by_status.items()]
    lines.append(f"entries:         {stats.entries}")
    lines.append(f"oldest:          {short_time(stats.oldest_created_at) or '-'}")
    lines.append(f"newest:          {short_time(stats.newest_created_at) or '-'}")
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


# -- the sync progress line and the library's warnings -----------------------------------------

PROGRESS_LABEL = "Fetching histories"


def progress_line(done: int, total: int, item: str | None, width: int) -> str:
    """``sync``'s progress as one line narrower than ``width`` (the terminal's), so that the
    carriage return that redraws it always returns to its start: a line as wide as the
    terminal wraps, and every redraw then adds a line. The session id is cut first, then the
    bar, then the label goes; what is left is cut to fit whatever the width."""
    budget = max(width - 1, 1)
    counter = f"{done}/{total}"
    label = PROGRESS_LABEL
    name = cell(item) if item else ""

    def bar(size: int) -> str:
        filled = size * done // total if total else size
        return "[" + "#" * filled + "-" * (size - filled) + "]"

    def compose(label: str, size: int, name: str) -> str:
        parts = [p for p in (label, bar(size) if size else "", counter, name) if p]
        return " ".join(parts)

    size = 20
    fixed = display_width(compose(label, size, ""))
    if name and fixed + 1 + display_width(name) > budget:
        name = truncate(name, max(budget - fixed - 1, 12))
    while display_width(compose(label, size, name)) > budget and size > 5:
        size -= 1
    if display_width(compose(label, size, name)) > budget:
        label = ""
    if display_width(compose(label, size, name)) > budget:
        name = truncate(name, max(budget - display_width(compose(label, size, "")) - 1, 0))
    return truncate(compose(label, size, name).rstrip(), budget)


class LogFormatter(logging.Formatter):
    """The library's warnings on the command line's stderr: ``Warning: ...`` (``Error: ...``
    for errors), escaped like every other server-chosen or path text on a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = "Error" if record.levelno >= logging.ERROR else "Warning"
        text = f"{prefix}: {record.getMessage()}"
        return terminal_safe(text) if is_terminal(sys.stderr) else text
