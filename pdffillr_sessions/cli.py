"""The ``pdffillr-sessions`` command line: read the local history cache, sync it, reap leaks.

Offline commands (``path``, ``sessions``, ``show``, ``search``, ``export``, ``stats``,
``check``) open the cache read-only: they never write to the file, never touch the network and
need no key. They do not import httpx or tenacity either (the client is imported lazily by the
online commands ``sync`` and ``reap``), so they start fast.

Conventions follow ``llm logs`` and ``sqlite-utils``: every command takes ``--db PATH`` (default
``$PDFFILLR_SESSIONS_DB`` or the user data directory), every listing takes ``--json`` (and
``--nl`` for newline-delimited JSON) besides a readable table. Errors are one ``Error: ...`` line
on stderr and a non-zero exit status, never a traceback; the API key never appears in output.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote as urllib_quote

import click

from . import _contract
from ._exceptions import BadRequestError, NotFoundError, PdffillrError
from ._paths import default_cache_path
from ._version import __version__

if TYPE_CHECKING:
    from ._cache import CachedSession, HistoryCache
    from ._client import PdffillrClient
    from ._models import HistoryEntry

__all__ = ["main", "parse_duration", "parse_since"]

F = TypeVar("F", bound=Callable[..., Any])

#: The default of ``reap --older-than``: see the ``reap`` help for why it is not 0.
REAP_DEFAULT_OLDER_THAN = "1h"

# -- errors ------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def _os_error_message(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{what}: {os.fsdecode(exc.filename)}"
    return what


class _Group(click.Group):
    """A group that turns the library's errors into one ``Error: ...`` line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PdffillrError as exc:
            raise click.ClickException(_one_line(str(exc))) from None
        except sqlite3.Error as exc:
            raise click.ClickException(_one_line(f"database error: {exc}")) from None
        except BrokenPipeError:
            # `pdffillr-sessions sessions | head`: stop quietly, like the other Unix tools.
            _silence_stdout()
            ctx.exit(1)
        except OSError as exc:
            raise click.ClickException(_one_line(_os_error_message(exc))) from None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not a real file
        pass


# -- options and parsing -----------------------------------------------------------------------


def _db_option(f: F) -> F:
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"The history cache file [default: ${_contract.ENV_CACHE_PATH} or "
        "history.db in the user data directory; see `pdffillr-sessions path`].",
    )(f)


def _json_options(f: F) -> F:
    f = click.option("--nl", "nl", is_flag=True, help="Newline-delimited JSON: one object a line.")(
        f
    )
    return click.option("--json", "as_json", is_flag=True, help="Output JSON.")(f)


def _base_url_option(f: F) -> F:
    return click.option(
        "--base-url",
        default=None,
        metavar="URL",
        help=f"The API base URL [default: ${_contract.ENV_BASE_URL} or "
        f"{_contract.DEFAULT_BASE_URL}].",
    )(f)


def _resolve_db(db: Path | None) -> Path:
    return db if db is not None else default_cache_path()


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w``, combinations (``1h30m``), or ``0``."""
    text = value.strip()
    if re.fullmatch(r"0+(\.0+)?", text):
        return timedelta(0)
    pos, total, matched = 0, 0.0, False
    for m in _DURATION_PART.finditer(text):
        if text[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        pos, matched = m.end(), True
    if not matched or text[pos:].strip():
        raise ValueError(f"{value!r} is not a duration like 7d, 12h, 30m, 45s or 1h30m")
    return timedelta(seconds=total)


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """A duration back from now (``7d``) or an ISO 8601 date or time (naive is taken as UTC)."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO date/time (2026-01-31, 2026-01-31T12:00Z) nor a "
            "duration (7d, 12h)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _since_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _duration_callback(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


# -- output ------------------------------------------------------------------------------------

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _dumps(obj: Any, *, indent: int | None = None) -> str:
    """JSON with the text as it is (``ensure_ascii=False``); lone surrogates stay escaped."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    # Only a lone surrogate cannot be written as UTF-8; in JSON it can only sit inside a string,
    # where its \\u escape is equally valid and decodes back to the same str.
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _write(text: str, stream: IO[bytes] | None = None) -> None:
    """Write UTF-8 whatever the locale says (emoji and NULs must survive a pipe)."""
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


def _emit_json(items: Any, *, nl: bool) -> None:
    if nl and isinstance(items, list):
        _write("".join(_dumps(item) + "\n" for item in items))
    else:
        _write(_dumps(items, indent=2) + "\n")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _visible(m: re.Match[str]) -> str:
    return f"\\x{ord(m.group()):02x}"


def _cell(value: Any, width: int | None = None) -> str:
    """One table cell: one line, control characters made visible, cut to ``width``."""
    if value is None:
        return ""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    text = _CONTROL.sub(_visible, text)
    if width is not None and len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)
    return "\n".join(lines) + "\n"


def _iso(value: Any) -> str | None:
    """A timestamp as ISO 8601 text (``Z`` for UTC), whatever the cache handed back."""
    if value is None:
        return None
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def _short_time(value: Any) -> str:
    """A timestamp for a table: ``2026-01-31 12:00:00`` (+ the offset when not UTC)."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() != timedelta(0):
            return value.isoformat(sep=" ", timespec="seconds")
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    return str(value)


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- the shapes of --json (stable keys) -------------------------------------------------------

_SESSION_KEYS = (
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


def _session_dict(s: CachedSession) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "title": s.title,
        "status": s.status,
        "message_count": s.message_count,
        "entry_count": s.entry_count,
        "created_at": _iso(s.created_at),
        "ended_at": _iso(s.ended_at),
        "scope": s.scope,
        "local_state": s.local_state,
        "local_error": s.local_error,
        "opened_at": _iso(s.opened_at),
        "synced_at": _iso(s.synced_at),
    }


def _raw(obj: Any) -> Mapping[str, Any]:
    raw = getattr(obj, "raw", None)
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str):  # a cache that hands back the stored JSON text
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, Mapping) else {}
    return {}


def _session_object(s: CachedSession) -> dict[str, Any]:
    """The session as the server sent it, with the cache's stable keys on top."""
    out = _session_dict(s)
    for key, value in _raw(s).items():
        out.setdefault(key, value)
    return out


def _entry_time(e: HistoryEntry) -> str | None:
    raw_time = _raw(e).get("created_at")
    return raw_time if isinstance(raw_time, str) else _iso(e.created_at)


def _entry_dict(e: HistoryEntry) -> dict[str, Any]:
    """One history entry: the stable keys first, then whatever else the server sent."""
    out: dict[str, Any] = {
        "id": e.id,
        "session_id": e.session_id,
        "type": e.type,
        "role": e.role,
        "content": e.content,
        "created_at": _entry_time(e),
    }
    for key, value in _raw(e).items():
        out.setdefault(key, value)
    return out


def _document_summary(doc: Mapping[str, Any]) -> str:
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


def _entry_document(e: HistoryEntry) -> Mapping[str, Any] | None:
    doc = _raw(e).get("document")
    return doc if isinstance(doc, Mapping) else None


def _entry_event(e: HistoryEntry) -> str | None:
    event = _raw(e).get("event")
    return event if isinstance(event, str) else None


# -- the cache ---------------------------------------------------------------------------------


def _open_readonly(db: Path | None) -> HistoryCache:
    """The cache, read-only: never created, never migrated, never written."""
    path = _resolve_db(db)
    if not path.exists():
        raise click.ClickException(
            f"no history cache at {path} (nothing recorded yet: run a Session, or "
            "`pdffillr-sessions sync`)"
        )
    from ._cache import HistoryCache

    return HistoryCache(path, readonly=True)


def _require_session(cache: HistoryCache, session_id: str) -> CachedSession:
    found = cache.session(session_id)
    if found is None:
        raise click.ClickException(
            f"no session {session_id!r} in the cache at {cache.path} "
            "(`pdffillr-sessions sync` mirrors the server's sessions)"
        )
    return found


# -- the group ---------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pdffillr-sessions")
def main() -> None:
    """Read, search and export the local history of Pdffillr sessions; sync it; end leaks.

    The history cache is written by the library (every Session mirrors into it) and by
    `sync`. The offline commands never write to it and need no API key. `sync` and `reap`
    use the key in $PDFFILLR_API_KEY and the server in $PDFFILLR_BASE_URL.
    """


@main.command()
@_db_option
def path(db: Path | None) -> None:
    """Print the path of the history cache."""
    _write(f"{_resolve_db(db)}\n")


@main.command()
@click.option(
    "--status",
    type=click.Choice([_contract.STATUS_ACTIVE, _contract.STATUS_ENDED]),
    default=None,
    help="Only sessions with this server status.",
)
@click.option("-n", "--limit", type=click.IntRange(min=0), default=None, help="At most N sessions.")
@click.option(
    "--since",
    metavar="DATE|DURATION",
    default=None,
    callback=_since_callback,
    help="Only sessions created since this ISO date/time (naive = UTC) or duration (7d, 12h).",
)
@_json_options
@_db_option
def sessions(
    status: str | None,
    limit: int | None,
    since: datetime | None,
    as_json: bool,
    nl: bool,
    db: Path | None,
) -> None:
    """List the cached sessions, newest first.

    LOCAL is what this machine knows beyond the server: "open" (a with-block opened it and has
    not ended it yet, or was killed) and "end pending" (ending it failed): see `reap`.
    """
    with _open_readonly(db) as cache:
        found = cache.sessions(status=status, limit=limit, since=since)
    if as_json or nl:
        _emit_json([_session_dict(s) for s in found], nl=nl)
        return
    rows = [
        (
            _cell(s.session_id),
            _cell(s.title, 40),
            _cell(s.status),
            _cell(
                s.entry_count
                if s.entry_count == s.message_count
                else f"{s.entry_count}/{s.message_count}"
            ),
            _cell(_short_time(s.created_at)),
            _cell(s.scope),
            _cell(_local_label(s.local_state)),
        )
        for s in found
    ]
    _write(_table(("ID", "TITLE", "STATUS", "ENTRIES", "CREATED", "SCOPE", "LOCAL"), rows))


def _local_label(state: str | None) -> str:
    return {"open": "open", "end_pending": "end pending"}.get(state or "", "")


@main.command()
@click.argument("session_id")
@_json_options
@_db_option
def show(session_id: str, as_json: bool, nl: bool, db: Path | None) -> None:
    """Show one session: its metadata and its history as a transcript.

    --json prints the session object with its entries (the same as `export --format json`);
    --nl prints the session, then one entry a line.
    """
    with _open_readonly(db) as cache:
        s = _require_session(cache, session_id)
        entries = cache.history(s.session_id)
    if nl:
        _emit_json([_session_object(s), *(_entry_dict(e) for e in entries)], nl=True)
        return
    if as_json:
        _emit_json({**_session_object(s), "entries": [_entry_dict(e) for e in entries]}, nl=False)
        return
    _write(_transcript(s, entries))


def _transcript(s: CachedSession, entries: Sequence[HistoryEntry]) -> str:
    title = _cell(s.title) if s.title else "(untitled)"
    out = [f"Session {s.session_id}: {title}"]
    status = s.status
    if s.local_state and s.local_state != s.status:
        status += f" (local: {_local_label(s.local_state) or s.local_state})"
    out.append(f"  status:   {status}")
    if s.local_error:
        out.append(f"  error:    {_cell(s.local_error)}")
    out.append(f"  created:  {_short_time(s.created_at)}")
    out.append(
        f"  entries:  {s.entry_count} cached (message_count {s.message_count} at the last sync)"
    )
    out.append(f"  scope:    {s.scope}")
    if s.opened_at:
        out.append(f"  opened:   {_short_time(s.opened_at)} (by a Session on this machine)")
    if s.synced_at:
        out.append(f"  synced:   {_short_time(s.synced_at)}")
    out.append("")
    if not entries:
        out.append("(no history)")
    for e in entries:
        when = _short_time(_entry_time(e))
        doc = _entry_document(e)
        event = _entry_event(e)
        if e.type == "message":
            out.append(f"[{when}] {e.role or 'message'}:")
            lines = (e.content or "").splitlines() or [""]
            out.extend(f"    {_CONTROL.sub(_visible, line)}" for line in lines)
        elif e.type == "document" or doc is not None:
            summary = _document_summary(doc) if doc is not None else _cell(e.content)
            out.append(f"[{when}] document: {summary}")
            if doc is not None and e.content:
                out.append(f"    {_cell(e.content)}")
        elif e.type == "activity":
            label = event or "activity"
            out.append(f"[{when}] activity {label}: {_cell(e.content)}".rstrip(": "))
        else:
            out.append(f"[{when}] {e.type}{' ' + e.role if e.role else ''}: {_cell(e.content)}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


@main.command()
@click.argument("query")
@click.option("--session", "session_id", default=None, help="Only in this session.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_json_options
@_db_option
def search(
    query: str, session_id: str | None, limit: int, as_json: bool, nl: bool, db: Path | None
) -> None:
    """Full-text search over every cached history, best match first."""
    with _open_readonly(db) as cache:
        hits = cache.search(query, limit=limit, session_id=session_id)
        titles: dict[str, str | None] = {}
        for hit in hits:
            sid = hit.entry.session_id
            if sid not in titles:
                found = cache.session(sid)
                titles[sid] = found.title if found is not None else None
    if as_json or nl:
        items = [
            {
                "session_id": hit.entry.session_id,
                "session_title": titles.get(hit.entry.session_id),
                "entry_id": hit.entry.id,
                "type": hit.entry.type,
                "role": hit.entry.role,
                "created_at": _entry_time(hit.entry),
                "score": hit.score,
                "snippet": hit.snippet,
                "content": hit.entry.content,
            }
            for hit in hits
        ]
        _emit_json(items, nl=nl)
        return
    rows = [
        (
            _cell(hit.entry.session_id),
            _cell(titles.get(hit.entry.session_id), 24),
            _cell(_short_time(_entry_time(hit.entry))),
            _cell(hit.entry.role or hit.entry.type),
            _cell(hit.snippet, 70),
        )
        for hit in hits
    ]
    _write(_table(("SESSION", "TITLE", "WHEN", "WHO", "MATCH"), rows))


@main.command()
@click.argument("session_id")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "json", "markdown"]),
    default="jsonl",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of stdout.",
)
@_db_option
def export(session_id: str, fmt: str, output: Path | None, db: Path | None) -> None:
    """Export one session's history.

    jsonl: one JSON object per entry (id, session_id, type, role, content, created_at, then
    every other field the server sent). json: the session object with its "entries".
    markdown: a readable transcript. Text is written exactly (UTF-8, nothing escaped but what
    JSON requires).
    """
    with _open_readonly(db) as cache:
        s = _require_session(cache, session_id)
        entries = cache.history(s.session_id)
    if fmt == "jsonl":
        text = "".join(_dumps(_entry_dict(e)) + "\n" for e in entries)
    elif fmt == "json":
        text = (
            _dumps({**_session_object(s), "entries": [_entry_dict(e) for e in entries]}, indent=2)
            + "\n"
        )
    else:
        text = _markdown(s, entries)
    if output is None:
        _write(text)
        return
    with open(output, "wb") as fh:
        _write(text, fh)
    click.echo(f"Exported {len(entries)} entries of {s.session_id} to {output}", err=True)


def _markdown(s: CachedSession, entries: Sequence[HistoryEntry]) -> str:
    out = [f"# {s.title or s.session_id}", ""]
    out.append(f"- Session: `{s.session_id}`")
    out.append(f"- Status: {s.status}")
    out.append(f"- Created: {_iso(s.created_at)}")
    out.append(f"- Entries: {len(entries)}")
    out.append("")
    for e in entries:
        when = _entry_time(e)
        doc = _entry_document(e)
        if e.type == "message":
            out.append(f"## {e.role or 'message'} · {when}")
        elif e.type == "activity":
            out.append(f"## activity `{_entry_event(e) or '?'}` · {when}")
        else:
            out.append(f"## {e.type} · {when}")
        out.append("")
        if doc is not None:
            out.append(f"**{_document_summary(doc)}**")
            out.append("")
        if e.content:
            out.append(e.content)
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@_db_option
def stats(as_json: bool, db: Path | None) -> None:
    """Counts per status and key scope, entries, file size, schema version, date range.

    --json prints `HistoryCache.stats()` as it is (its keys are the stable shape).
    """
    with _open_readonly(db) as cache:
        data = cache.stats()
    if as_json:
        _emit_json(data, nl=False)
        return
    lines = [
        f"path:            {data['path']}",
        f"file size:       {data['file_size']:,} bytes",
        f"schema version:  {data['schema_version']}",
        f"sessions:        {data['sessions']}",
    ]
    lines += [f"  {k + ':':<15}{v}" for k, v in data["sessions_by_status"].items()]
    lines.append(f"entries:         {data['entries']}")
    lines.append(f"oldest:          {data['oldest_created_at'] or '-'}")
    lines.append(f"newest:          {data['newest_created_at'] or '-'}")
    lines.append("scopes (API key fingerprints):")
    entries_by_scope = data.get("entries_by_scope", {})
    lines += [
        f"  {k:<17}{v} sessions, {entries_by_scope.get(k, 0)} entries"
        for k, v in data["sessions_by_scope"].items()
    ]
    lines.append(f"pending ends:    {data['pending_ends']}  (see `pdffillr-sessions reap`)")
    lines.append(f"create intents:  {data['create_intents']}")
    _write("\n".join(lines) + "\n")


def _count(values: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@_db_option
def check(as_json: bool, db: Path | None) -> None:
    """Check the integrity of the cache file: SQLite's, then the full-text index's.

    The file is only read: the full-text check (a write statement for SQLite) runs on a
    private temporary copy. Exits 1 if there are problems.
    """
    with _open_readonly(db) as cache:
        where = Path(cache.path)
        problems = list(cache.integrity_check())
    if not problems:
        problems.extend(_fts_problems(where))
    if as_json:
        _emit_json({"path": str(where), "ok": not problems, "problems": problems}, nl=False)
    elif problems:
        _write("".join(f"{_cell(p)}\n" for p in problems))
    else:
        _write(f"ok: {where}\n")
    if problems:
        if not as_json:
            click.echo(f"Error: {len(problems)} problem(s) in {where}", err=True)
        raise SystemExit(1)


def _fts_problems(path: Path) -> list[str]:
    """FTS5's integrity-check, run on a temporary copy so that the file is never written."""
    import tempfile

    uri = "file:" + urllib_quote(str(path.absolute())) + "?mode=ro"
    with tempfile.TemporaryDirectory(prefix="pdffillr-check-") as tmp:
        source = sqlite3.connect(uri, uri=True)
        copy = sqlite3.connect(os.path.join(tmp, "copy.db"))
        try:
            source.backup(copy)
            try:
                copy.execute(
                    "INSERT INTO history_fts (history_fts, rank) VALUES ('integrity-check', 1)"
                )
            except sqlite3.DatabaseError as exc:
                return [
                    f"the full-text index history_fts does not match history ({exc}); rebuild "
                    f"it with: sqlite-utils rebuild-fts {path} history"
                ]
            return []
        finally:
            copy.close()
            source.close()


# -- online commands ---------------------------------------------------------------------------


def _make_client(base_url: str | None) -> PdffillrClient:
    if not os.environ.get(_contract.ENV_API_KEY):
        raise click.ClickException(
            f"no API key: set the {_contract.ENV_API_KEY} environment variable"
        )
    from ._client import PdffillrClient  # lazy: the offline commands never import httpx

    return PdffillrClient(base_url=base_url)


def _is_tty() -> bool:
    for stream in (sys.stderr, sys.stdout):
        try:
            if stream.isatty():
                return True
        except (AttributeError, ValueError):
            continue
    return False


@main.command()
@click.argument("session_ids", nargs=-1)
@_base_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_db_option
def sync(
    session_ids: tuple[str, ...], base_url: str | None, as_json: bool, db: Path | None
) -> None:
    """Mirror the server's sessions and their histories into the cache.

    With SESSION_IDs, only those. Incremental: a history is fetched only when the server's
    message_count differs from what the cache holds. Needs $PDFFILLR_API_KEY.
    """
    from ._cache import HistoryCache

    with _make_client(base_url) as client:
        # Listed before the cache is opened: an unreachable server leaves no new file behind.
        listed = all_listed = client.sessions.list()
        with HistoryCache(_resolve_db(db), scope=client.key_scope) as cache:
            before = {s.session_id: s for s in cache.sessions()}
            if session_ids:
                by_id = {info.session_id: info for info in listed}
                missing = [sid for sid in session_ids if sid not in by_id]
                if missing:
                    raise click.ClickException(
                        f"no session {missing[0]!r} under this API key"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                    )
                listed = [by_id[sid] for sid in dict.fromkeys(session_ids)]
            new = [i for i in listed if i.session_id not in before]
            changed = [
                i
                for i in listed
                if i.session_id in before
                and (
                    before[i.session_id].status != i.status
                    or before[i.session_id].message_count != i.message_count
                    or before[i.session_id].title != i.title
                )
            ]
            cache.upsert_sessions(listed)
            stale = [
                i
                for i in listed
                if i.session_id not in before or before[i.session_id].entry_count != i.message_count
            ]
            stale = [i for i in stale if i.message_count > 0 or i.session_id in before]
            added = 0
            fetched = 0

            def fetch(infos: Iterable[Any]) -> None:
                nonlocal added, fetched
                for info in infos:
                    entries = client.sessions.messages(info.session_id)
                    added += cache.mirror_history(info.session_id, entries)
                    fetched += 1

            if stale and _is_tty():
                with click.progressbar(
                    stale,
                    label="Fetching histories",
                    file=sys.stderr,
                    item_show_func=lambda i: i.session_id if i is not None else None,
                ) as bar:
                    fetch(bar)
            else:
                fetch(stale)
            upstream = {i.session_id for i in all_listed}
            gone = [] if session_ids else sorted(set(before) - upstream)
        summary = {
            "sessions": len(listed),
            "new": len(new),
            "changed": len(changed),
            "unchanged": len(listed) - len(new) - len(changed),
            "histories_fetched": fetched,
            "entries_added": added,
            "not_listed_upstream": len(gone),
        }
        if as_json:
            _emit_json(summary, nl=False)
            return
        text = (
            f"Synced {summary['sessions']} session(s): {summary['new']} new, "
            f"{summary['changed']} changed, {summary['unchanged']} unchanged; "
            f"fetched {fetched} histor{'y' if fetched == 1 else 'ies'}, added {added} entr"
            f"{'y' if added == 1 else 'ies'}."
        )
        if gone:
            text += f" {len(gone)} cached session(s) are no longer listed by the server (kept)."
        _write(text + "\n")


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be done: no request, no write.")
@click.option(
    "--older-than",
    metavar="DURATION",
    default=REAP_DEFAULT_OLDER_THAN,
    callback=_duration_callback,
    show_default=True,
    help="Only sessions opened (or creates recorded) longer ago than this; 0 = all of them.",
)
@click.option(
    "--include-live",
    is_flag=True,
    help="Also end sessions whose opening process is still running on this host.",
)
@_base_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_db_option
def reap(
    dry_run: bool,
    older_than: timedelta,
    include_live: bool,
    base_url: str | None,
    as_json: bool,
    db: Path | None,
) -> None:
    """End the sessions this machine opened and never saw ended (crashed or killed scripts).

    Two kinds of leftovers, in the current key's scope only:

    \b
    - sessions a with-block opened and never ended ("open"), or failed to end ("end pending");
    - creates whose reply was lost: the create is replayed with the same Idempotency-Key (the
      server answers with the session it made, or makes it now), then that session is ended.

    An open session whose opening process is still running on this host (its recorded pid is
    alive) is skipped as "live", whatever --older-than says, unless --include-live is given:
    ending a running script's session makes its next send fail. For sessions opened elsewhere
    (or before the opener was recorded) the cache cannot tell a killed script from a running
    one, so --older-than (default 1h) leaves recent ones alone. Pass --older-than 0 right after
    a crash to reap everything now. "End pending" sessions are always reaped: their with-block
    has already exited.

    Exits 1 if any session could not be ended. Needs $PDFFILLR_API_KEY.
    """
    path = _resolve_db(db)
    if not path.exists():
        _report_reap([], as_json=as_json, dry_run=dry_run, note=f"no history cache at {path}")
        return
    cutoff = datetime.now(UTC) - older_than
    from ._cache import HistoryCache

    with _make_client(base_url) as client:
        scope = client.key_scope
        readonly = dry_run
        with HistoryCache(path, scope=scope, readonly=readonly) as cache:
            results: list[dict[str, Any]] = []
            for s in cache.pending_ends():
                results.append(_reap_session(client, cache, s, cutoff, dry_run, include_live))
            for intent in cache.create_intents():
                results.append(_reap_intent(client, cache, intent, cutoff, dry_run, include_live))
    _report_reap(results, as_json=as_json, dry_run=dry_run)
    if any(r["action"] == "failed" for r in results):
        raise SystemExit(1)


def _too_recent(moment: Any, cutoff: datetime) -> bool:
    when = _as_datetime(moment)
    return when is not None and when > cutoff


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return True  # no procfs: trust kill(0)
    return state not in ([b"Z"], [b"X"])


def _opener_alive(pid: int | None, host: str | None) -> bool:
    """True when the recorded opening process is known to be still running on this host."""
    import socket

    if pid is None or host != socket.gethostname():
        return False
    return _pid_alive(pid)


def _skip_live(result: dict[str, Any], pid: int | None, host: str | None, force: bool) -> bool:
    """Mark ``result`` live when its opener still runs; True if it must be skipped."""
    if not _opener_alive(pid, host):
        return False
    result["live"] = True
    if force:
        return False
    result["action"] = "skipped"
    result["detail"] = f"live: its process {pid} still runs on this host (see --include-live)"
    return True


def _reap_session(
    client: PdffillrClient,
    cache: HistoryCache,
    s: CachedSession,
    cutoff: datetime,
    dry_run: bool,
    include_live: bool = False,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "kind": "session",
        "session_id": s.session_id,
        "title": s.title,
        "local_state": s.local_state,
        "opened_at": _iso(s.opened_at),
        "opened_pid": s.opened_pid,
        "live": False,
        "action": None,
        "detail": None,
    }
    if s.local_state != "end_pending" and _skip_live(
        result, s.opened_pid, s.opened_host, include_live
    ):
        return result
    if s.local_state != "end_pending" and _too_recent(s.opened_at or s.created_at, cutoff):
        result["action"] = "skipped"
        result["detail"] = "opened too recently (see --older-than)"
        return result
    if dry_run:
        result["action"] = "would_end"
        return result
    return _end_and_record(client, cache, s.session_id, result)


def _end_and_record(
    client: PdffillrClient, cache: HistoryCache, session_id: str, result: dict[str, Any]
) -> dict[str, Any]:
    """End one session upstream and record the outcome in the cache and in ``result``."""
    try:
        client.sessions.end(session_id)
    except NotFoundError:
        cache.mark_ended(session_id)
        result["action"] = "gone"
        result["detail"] = "the server no longer has it: marked ended"
        return result
    except PdffillrError as exc:
        result["action"] = "failed"
        result["detail"] = _one_line(str(exc))
        cache.mark_end_pending(session_id, f"reap: {type(exc).__name__}: {result['detail']}")
        return result
    cache.mark_ended(session_id)
    result["action"] = "ended"
    return result


def _reap_intent(
    client: PdffillrClient,
    cache: HistoryCache,
    intent: Any,
    cutoff: datetime,
    dry_run: bool,
    include_live: bool = False,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "kind": "create_intent",
        "session_id": None,
        "title": intent.title,
        "idempotency_key": intent.idempotency_key,
        "recorded_at": _iso(intent.recorded_at),
        "opened_pid": intent.opened_pid,
        "live": False,
        "action": None,
        "detail": None,
    }
    # A running script may be inside its create (retrying): replaying and ending it would end
    # the session its block is about to use.
    if _skip_live(result, intent.opened_pid, intent.opened_host, include_live):
        return result
    if _too_recent(intent.recorded_at, cutoff):
        result["action"] = "skipped"
        result["detail"] = "recorded too recently (see --older-than)"
        return result
    if dry_run:
        result["action"] = "would_replay_and_end"
        return result
    try:
        info = client.sessions.create(intent.title, idempotency_key=intent.idempotency_key)
    except BadRequestError as exc:
        # The server refuses this create outright: it never made a session from it.
        cache.forget_create_intent(intent.idempotency_key)
        result["action"] = "dropped"
        result["detail"] = f"the server refused the create: {_one_line(str(exc))}"
        return result
    except PdffillrError as exc:
        result["action"] = "failed"
        result["detail"] = f"replaying the create failed: {_one_line(str(exc))}"
        return result
    result["session_id"] = info.session_id
    # Recorded as opened before the end: if the end fails, the next reap finds it as a session.
    cache.record_opened(info, idempotency_key=intent.idempotency_key)
    _end_and_record(client, cache, info.session_id, result)
    if result["action"] == "ended":
        result["detail"] = "recovered from a create whose reply was lost"
    return result


_REAP_LABELS = {
    "ended": "ended",
    "gone": "gone",
    "failed": "FAILED",
    "skipped": "skipped",
    "would_end": "would end",
    "would_replay_and_end": "would replay create and end",
    "dropped": "dropped",
}


def _report_reap(
    results: list[dict[str, Any]], *, as_json: bool, dry_run: bool, note: str | None = None
) -> None:
    if as_json:
        _emit_json({"dry_run": dry_run, "results": results}, nl=False)
        return
    if not results:
        _write(f"Nothing to reap{' (' + note + ')' if note else ''}.\n")
        return
    lines = []
    for r in results:
        who = r["session_id"] or f"create {r['idempotency_key']}"
        title = f' "{_cell(r["title"], 40)}"' if r.get("title") else ""
        detail = f": {r['detail']}" if r.get("detail") else ""
        lines.append(f"{_REAP_LABELS.get(r['action'], r['action'])}  {who}{title}{detail}")
    counts = _count(r["action"] for r in results)
    lines.append("Done: " + ", ".join(f"{n} {_REAP_LABELS.get(k, k)}" for k, n in counts.items()))
    _write("\n".join(lines) + "\n")


# -- the emulator ------------------------------------------------------------------------------

# The very command of `python -m pdffillr_sessions.emulator`, so the two cannot drift apart. Its
# module imports only click and the fault parser: the server loads when the command runs.
from .emulator._cli import emulator_command  # noqa: E402

main.add_command(emulator_command, name="emulator")
