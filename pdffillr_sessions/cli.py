"""The ``pdffillr-sessions`` command line: a thin shell over the library's operations.

Each command parses its options, calls one library operation and formats its result
(``_cli_output``); no SQL, liveness or integrity logic lives here. Offline commands (``path``,
``sessions``, ``show``, ``search``, ``export``, ``stats``, ``check``) open the cache read-only:
they never write to the file, never touch the network and need no key. They do not import httpx
or tenacity either (the client is imported lazily by the online commands ``sync``, ``reap`` and
``end``), so they start fast. ``serve`` shows the same file in Datasette (the ``[web]`` extra),
read-only too.

Conventions follow ``llm logs`` and ``sqlite-utils`` (the README's "Conventions" table): every
command takes ``-d/--database PATH`` (or ``--db``; default ``$PDFFILLR_SESSIONS_DB`` or the user
data directory; a ``postgresql://`` URL names a shared PostgreSQL history instead of a file),
every listing takes sqlite-utils' ``-t/--table`` (the default, fitted to the terminal),
``--json``, ``--nl``, ``--csv`` and ``--tsv``, and ``-n 0`` means all, as in llm. Errors are one
``Error: ...`` line on stderr and a non-zero exit status, never a traceback; the library's
warnings are ``Warning: ...`` lines; the API key never appears in output.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import _cli_output as out
from . import _contract
from ._durations import parse_duration, parse_since
from ._exceptions import PdffillrError, one_line
from ._logging import LOGGER_NAME, StderrHandler, env_level
from ._paths import default_cache_location
from ._serve import DEFAULT_PORT
from ._version import __version__
from .emulator._cli import emulator_command

if TYPE_CHECKING:
    from ._client import PdffillrClient
    from ._models import HistoryEntry
    from .cache import CachedSession, HistoryCache

__all__ = ["main", "parse_duration", "parse_since"]

F = TypeVar("F", bound=Callable[..., Any])

# -- errors ------------------------------------------------------------------------------------


def _os_error_message(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{what}: {os.fsdecode(exc.filename)}"
    return what


class _Group(click.Group):
    """A group that turns the library's errors into one ``Error: ...`` line and exit status 1,
    and refuses arguments that are not valid text."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # On POSIX, bytes that are not UTF-8 reach us as lone surrogates (surrogateescape):
        # no session id, query or path the cache holds can match them, and printing them
        # raises. Refused here, before any option is parsed: a usage error, exit status 2.
        for arg in args:
            bad = _not_text(arg)
            if bad is not None:
                raise click.UsageError(
                    f"argument {bad!r} is not valid text (its bytes are not UTF-8)", ctx
                )
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PdffillrError as exc:
            raise click.ClickException(one_line(exc)) from None
        except BrokenPipeError:
            # `pdffillr-sessions sessions | head`: stop quietly, like the other Unix tools.
            _silence_stdout()
            ctx.exit(1)
        except OSError as exc:
            raise click.ClickException(one_line(_os_error_message(exc))) from None


def _not_text(arg: str) -> str | None:
    """The argument, shown safely, if it holds a lone surrogate; else None."""
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        return arg.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not a real file
        pass


# -- options and parsing -----------------------------------------------------------------------


#: The most rows a listing can ask for (a bigger ``-n`` is a usage error, not an overflow).
MAX_LIMIT = 1_000_000_000


class _DbParam(click.ParamType[Any, Any]):
    """``--db``: a file path, or a ``postgresql://`` URL kept as given (a path would fold its
    ``//``). No ``dir_okay=False``: a directory, a FIFO or a device is refused by the cache
    itself, with one `Error:` line naming what it is (click would print a three-line usage
    error)."""

    name = "PATH|URL"
    _file = click.Path(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from .cache._location import is_postgres_url

        if isinstance(value, str) and is_postgres_url(value):
            return value.strip()
        return self._file.convert(value, param, ctx)


def _db_option(f: F) -> F:
    return click.option(
        "-d",
        "--database",
        "--db",
        "db",
        type=_DbParam(),
        default=None,
        help=f"The history cache file, or a postgresql:// URL [default: "
        f"${_contract.ENV_CACHE_PATH} or history.db in the user data directory; see "
        "`pdffillr-sessions path`].",
    )(f)


def _json_options(f: F) -> F:
    f = click.option("--nl", "nl", is_flag=True, help="Newline-delimited JSON: one object a line.")(
        f
    )
    return click.option("--json", "as_json", is_flag=True, help="Output JSON.")(f)


def _listing_options(f: F) -> F:
    """sqlite-utils' output options on a listing: ``-t/--table`` (the default), ``--json``,
    ``--nl``, ``--csv``, ``--tsv`` and ``--no-headers``. The command gets one ``fmt``."""

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        chosen = [name for name in out.LISTING_FORMATS if kwargs.pop(f"as_{name}")]
        if len(chosen) > 1:
            raise click.UsageError(f"--{chosen[0]} and --{chosen[1]} cannot be used together")
        fmt = chosen[0] if chosen else "table"
        if kwargs["no_headers"] and fmt not in ("csv", "tsv"):
            raise click.UsageError("--no-headers goes with --csv or --tsv")
        return f(*args, fmt=fmt, **kwargs)

    command = click.option(
        "--no-headers", "no_headers", is_flag=True, help="CSV or TSV without the header row."
    )(command)
    for flag, name, text in reversed(
        (
            ("-t/--table", "as_table", "Output as a table that fits the terminal (the default)."),
            ("--json", "as_json", "Output JSON: one array."),
            ("--nl", "as_nl", "Output newline-delimited JSON: one object a line."),
            ("--csv", "as_csv", "Output CSV, with the keys of --json as columns."),
            ("--tsv", "as_tsv", "Output TSV, with the keys of --json as columns."),
        )
    ):
        command = click.option(*flag.split("/"), name, is_flag=True, help=text)(command)
    return command  # type: ignore[return-value]


def _base_url_option(f: F) -> F:
    return click.option(
        "--base-url",
        default=None,
        metavar="URL",
        help=f"The API base URL [default: ${_contract.ENV_BASE_URL} or "
        f"{_contract.DEFAULT_BASE_URL}].",
    )(f)


def _resolve_db(db: Path | str | None) -> Path | str:
    """The cache location: ``--db``, else the default (a path, or a URL from the environment)."""
    return db if db is not None else default_cache_location()


def _shown(location: Path | str) -> str:
    """A location as it may be printed (a URL without its password)."""
    from .cache._location import display

    return display(location)


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


# -- the cache and the client ------------------------------------------------------------------


def _open_readonly(db: Path | str | None) -> HistoryCache:
    """The cache, read-only: never created, never migrated, never written."""
    path = _resolve_db(db)
    if isinstance(path, Path) and not path.exists():
        raise click.ClickException(
            f"no history cache at {path} (nothing recorded yet: run a Session, or "
            "`pdffillr-sessions sync`)"
        )
    from .cache import HistoryCache

    return HistoryCache(path, readonly=True)


def _refuse_the_cache_as_output(output: Path, db: Path | str) -> None:
    """Never write an export over the cache (or its -wal, -shm, -journal): that would erase
    every session it holds. (A PostgreSQL cache is no file an export could hit.)"""
    if not isinstance(db, Path):
        return
    from .cache._files import cache_file_role

    role = cache_file_role(output, db)
    if role is not None:
        raise click.UsageError(
            f"refusing to write the export to {out.cell(output)}: it is the history cache"
            + ("" if role == "database" else f" ({role} file)")
            + " (pass another -o FILE)"
        )


def _require_session(cache: HistoryCache, session_id: str) -> CachedSession:
    found = cache.session(session_id)
    if found is None:
        raise click.ClickException(
            f"no session {session_id!r} in the cache at {cache.path} "
            "(`pdffillr-sessions sync` mirrors the server's sessions)"
        )
    return found


def _make_client(base_url: str | None) -> PdffillrClient:
    if not os.environ.get(_contract.ENV_API_KEY):
        raise click.ClickException(
            f"no API key: set the {_contract.ENV_API_KEY} environment variable"
        )
    from ._client import PdffillrClient  # lazy: the offline commands never import httpx

    return PdffillrClient(base_url=base_url)


# -- the group ---------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pdffillr-sessions")
def main() -> None:
    """Read, search and export the local history of Pdffillr sessions; sync it; end leaks.

    The history cache is written by the library (every Session mirrors into it) and by
    `sync`. The offline commands never write to it and need no API key. `sync`, `reap` and
    `end` use the key in $PDFFILLR_API_KEY and the server in $PDFFILLR_BASE_URL.
    PDFFILLR_LOG=info (or debug) shows the library's log, retries included, on stderr.
    """
    _show_the_librarys_warnings(click.get_current_context())


def _show_the_librarys_warnings(ctx: click.Context) -> None:
    """The library warns on its logger (a cache others can read that cannot be made
    private, a history it could not mirror), which has only a ``NullHandler``: while a command
    runs, those are ``Warning: ...`` lines on stderr. The handler goes when the command ends,
    so that a program running the command line in its own process (a test runner) is left with
    the logger it had. ``PDFFILLR_LOG``, when set, shows them (and more) its own way instead."""
    logger = logging.getLogger(LOGGER_NAME)
    if env_level() is not None or any(type(h) is _WarningHandler for h in logger.handlers):
        return
    handler = _WarningHandler(logging.WARNING)
    handler.setFormatter(out.LogFormatter())
    logger.addHandler(handler)
    ctx.call_on_close(lambda: logger.removeHandler(handler))


class _WarningHandler(StderrHandler):
    """The handler ``_show_the_librarys_warnings`` adds (never twice: a command run inside
    another, as click's ``CliRunner`` may, finds it there)."""


@main.command()
@_db_option
def path(db: Path | str | None) -> None:
    """Print the path of the history cache (or its PostgreSQL URL, without the password)."""
    out.write(f"{_shown(_resolve_db(db))}\n")


@main.command()
@click.option(
    "--status",
    type=click.Choice([_contract.STATUS_ACTIVE, _contract.STATUS_ENDED]),
    default=None,
    help="Only sessions with this server status.",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(0, MAX_LIMIT),
    default=None,
    help="At most N sessions (0: all, the default).",
)
@click.option(
    "--since",
    metavar="DATE|DURATION",
    default=None,
    callback=_since_callback,
    help="Only sessions created since this ISO date/time (naive = UTC) or duration (7d, 12h).",
)
@_listing_options
@_db_option
def sessions(
    status: str | None,
    limit: int | None,
    since: datetime | None,
    fmt: str,
    no_headers: bool,
    db: Path | str | None,
) -> None:
    """List the cached sessions, newest first.

    LOCAL is what this machine knows beyond the server: "open" (a with-block opened it and has
    not ended it yet, or was killed) and "end pending" (ending it failed): see `reap`. The
    table shows SCOPE (the API key's fingerprint) only when the cache holds more than one
    key's sessions, and LOCAL only when some session has a local state.
    """
    with _open_readonly(db) as cache:
        found = cache.sessions(status=status, limit=limit or None, since=since)
    out.emit_listing(
        fmt,
        [out.session_dict(s) for s in found],
        out.SESSION_FIELDS,
        lambda: out.sessions_table(found, out.terminal_width(sys.stdout)),
        headers=not no_headers,
    )


@main.command()
@click.argument("session_id")
@_json_options
@_db_option
def show(session_id: str, as_json: bool, nl: bool, db: Path | str | None) -> None:
    """Show one session: its metadata and its history as a transcript.

    --json prints the session object with its entries (the same as `export --format json`);
    --nl prints the session, then one entry a line.
    """
    with _open_readonly(db) as cache, cache.snapshot(), out.Sink() as sink:
        s = _require_session(cache, session_id)
        entries = cache.iter_history(s.session_id)  # one entry at a time: flat memory
        if nl:
            sink.write_all(out.json_lines([out.session_object(s)]))
            sink.write_all(out.json_lines(out.entry_dict(e) for e in entries))
        elif as_json:
            sink.write_all(out.json_document(out.session_object(s), entries))
        else:
            sink.write_all(out.trimmed(out.transcript_lines(s, entries)))


@main.command()
@click.argument("query")
@click.option("--session", "session_id", default=None, help="Only in this session.")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(0, MAX_LIMIT),
    default=20,
    show_default=True,
    help="At most N hits (0: all).",
)
@_listing_options
@_db_option
def search(
    query: str,
    session_id: str | None,
    limit: int,
    fmt: str,
    no_headers: bool,
    db: Path | str | None,
) -> None:
    """Full-text search over every cached history, best match first.

    \b
    The query language of `sqlite-utils search --quote` and Datasette:
      side letter          both words, anywhere, in any order
      "side letter"        the phrase: these words next to each other
      side-letter          the same phrase (a word with punctuation is its words)
      "side letter" MFN    the phrase and the word
    Nothing else is syntax: OR, NOT, NEAR, * and ^ are words or punctuation.
    """
    with _open_readonly(db) as cache:
        if session_id is not None:
            _require_session(cache, session_id)
        hits = cache.search(query, limit=limit or MAX_LIMIT, session_id=session_id)
        titles: dict[str, str | None] = {}
        for hit in hits:
            sid = hit.entry.session_id
            if sid not in titles:
                found = cache.session(sid)
                titles[sid] = found.title if found is not None else None
    out.emit_listing(
        fmt,
        [out.hit_dict(hit, titles.get(hit.entry.session_id)) for hit in hits],
        out.HIT_FIELDS,
        lambda: out.hits_table(
            hits, titles, out.terminal_width(sys.stdout), one_session=session_id is not None
        ),
        headers=not no_headers,
    )


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
def export(session_id: str, fmt: str, output: Path | None, db: Path | str | None) -> None:
    """Export one session's history.

    jsonl: one JSON object per entry (id, session_id, type, role, content, created_at, then
    every other field the server sent). json: the session object with its "entries".
    markdown: a readable transcript. Text is written exactly (UTF-8, nothing escaped but what
    JSON requires).
    """
    if output is not None:
        _refuse_the_cache_as_output(output, _resolve_db(db))
    with _open_readonly(db) as cache, cache.snapshot():
        s = _require_session(cache, session_id)
        count = cache.count_history(s.session_id) if fmt == "markdown" else 0
        written = 0

        def entries() -> Iterator[HistoryEntry]:
            nonlocal written
            for e in cache.iter_history(s.session_id):  # one entry at a time: flat memory
                written += 1
                yield e

        if fmt == "jsonl":
            pieces = out.json_lines(out.entry_dict(e) for e in entries())
        elif fmt == "json":
            pieces = out.json_document(out.session_object(s), entries())
        else:
            pieces = out.trimmed(out.markdown_lines(s, entries(), count))
        if output is None:
            with out.Sink() as sink:
                sink.write_all(pieces)
            return
        try:
            with open(output, "wb") as fh, out.Sink(fh) as sink:
                sink.write_all(pieces)
        except BaseException:
            output.unlink(missing_ok=True)  # never a half-written export
            raise
    click.echo(
        f"Exported {written} entries of {out.cell(s.session_id)} to {out.cell(output)}",
        err=True,
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@_db_option
def stats(as_json: bool, db: Path | str | None) -> None:
    """Counts per status and key scope, entries, file size, schema version, date range.

    --json prints `HistoryCache.stats()` (a `CacheStats`) with its field names as keys.
    """
    with _open_readonly(db) as cache:
        data = cache.stats()
    if as_json:
        out.emit_json(out.stats_dict(data), nl=False)
        return
    out.write(out.stats_text(data))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@_db_option
def check(as_json: bool, db: Path | str | None) -> None:
    """Check the integrity of the cache file: SQLite's, then the full-text index's.

    The file is only read, and never copied: the full-text index is checked against the
    content read-only (checksums of both, the content re-tokenized batch by batch in memory),
    so a read-only location works too. Exits 1 if there are problems.
    """
    with _open_readonly(db) as cache:
        where = cache.path
        problems = cache.integrity_check()
    if as_json:
        out.emit_json({"path": str(where), "ok": not problems, "problems": problems}, nl=False)
    elif problems:
        out.write("".join(f"{out.cell(p)}\n" for p in problems))
    else:
        out.write(f"ok: {where}\n")
    if problems:
        if not as_json:
            click.echo(f"Error: {len(problems)} problem(s) in {where}", err=True)
        raise SystemExit(1)


# -- online commands ---------------------------------------------------------------------------


class _ProgressBar:
    """The ``sync`` progress callback: one line on stderr, redrawn in place, always narrower
    than the terminal (``_cli_output.progress_line``; click's bar wraps at 80 columns with a
    session id beside it, and a wrapped line is redrawn as a new one every time)."""

    def __init__(self) -> None:
        self._drawn = 0

    def __call__(self, done: int, total: int, session_id: str) -> None:
        width = out.terminal_width(sys.stderr) or 80
        line = out.progress_line(done, total, session_id, width)
        shown = out.display_width(line)
        pad = " " * max(min(self._drawn, width - 1) - shown, 0)  # what the last line left
        sys.stderr.write("\r" + line + pad)
        sys.stderr.flush()
        self._drawn = shown

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


@main.command()
@click.argument("session_ids", nargs=-1)
@click.option(
    "-j",
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Histories fetched at once.",
)
@_base_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_db_option
def sync(
    session_ids: tuple[str, ...],
    concurrency: int,
    base_url: str | None,
    as_json: bool,
    db: Path | str | None,
) -> None:
    """Mirror the server's sessions and their histories into the cache.

    With SESSION_IDs, only those. Incremental: a history is fetched when it is new, when the
    server's description of the session changed, when its message_count differs from what the
    cache holds, or when sends left its order unconfirmed. A session that cannot be mirrored is
    an `Error:` line on stderr and the others are still mirrored; the exit status is then 1.
    Needs $PDFFILLR_API_KEY.
    """
    from ._sync import sync as sync_cache

    bar = _ProgressBar() if out.is_terminal(sys.stderr) else None
    with _make_client(base_url) as client:
        try:
            report = sync_cache(
                client,
                _resolve_db(db),
                session_ids=session_ids or None,
                concurrency=concurrency,
                progress=bar,
            )
        finally:
            if bar is not None:
                bar.close()
    if as_json:
        out.emit_json(out.sync_dict(report), nl=False)
    else:
        out.write(out.sync_text(report))
    for failure in report.failures:
        click.echo(f"Error: {out.sync_problem(failure)}", err=True)
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be done: no request, no write.")
@click.option(
    "--older-than",
    metavar="DURATION",
    default="1h",
    callback=_duration_callback,
    show_default=True,
    help="Records with no owner lock (written by older versions) only if recorded longer ago "
    "than this; 0 = all of them.",
)
@click.option(
    "--include-live",
    is_flag=True,
    help="Also end sessions whose with-block is still running (it holds its owner lock).",
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
    db: Path | str | None,
) -> None:
    """End the sessions this machine opened and never saw ended (crashed or killed scripts).

    Two kinds of leftovers, in the current key's scope and on the current server only:

    \b
    - sessions a with-block opened and never ended ("open"), or failed to end ("end pending");
    - creates whose reply was lost: the create is replayed with the same Idempotency-Key (the
      server answers with the session it made, or makes it now), then that session is ended.

    A with-block holds an OS lock while it runs, which the kernel releases when its process
    dies. reap takes that lock: if it can, the block's process has exited and its records are
    dealt with at once; if it cannot, the block is still running and is left alone ("live"),
    whatever --older-than says, unless --include-live is given (ending a running script's
    session makes its next send fail). Only records with no lock (written by older versions)
    fall back to --older-than (default 1h). "End pending" sessions are always reaped: their
    with-block has already exited. A 404 marks a session ended only if the cache recorded it
    for this server.

    On a PostgreSQL cache (--db postgresql://...) every with-block, on any machine, holds an
    advisory lock while it runs: reap ends what a dead block left at once and never touches a
    running one, and several reapers may run at once (a cron job on each machine is fine).

    Exits 1 if any session could not be ended. Needs $PDFFILLR_API_KEY.
    """
    from ._reap import ReapReport
    from ._reap import reap as reap_cache

    path = _resolve_db(db)
    if isinstance(path, Path) and not path.exists():  # nothing to reap: no key needed to say so
        report = ReapReport(dry_run=dry_run, note=f"no history cache at {path}")
    else:
        with _make_client(base_url) as client:
            report = reap_cache(
                client, path, dry_run=dry_run, older_than=older_than, include_live=include_live
            )
    if as_json:
        results = [out.reap_outcome_dict(o) for o in report.outcomes]
        out.emit_json({"dry_run": report.dry_run, "results": results}, nl=False)
    else:
        out.write(out.reap_text(report))
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.argument("session_ids", nargs=-1, required=True)
@_base_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@_db_option
def end(
    session_ids: tuple[str, ...], base_url: str | None, as_json: bool, db: Path | str | None
) -> None:
    """End sessions upstream by id and record them ended in the cache.

    Any session of the key can be ended, not only those a with-block opened here. Every id is
    tried; an unknown one is an `Error:` line. Exits 1 if any could not be ended.
    Needs $PDFFILLR_API_KEY.
    """
    from ._end import end_sessions

    with _make_client(base_url) as client:
        report = end_sessions(client, session_ids, _resolve_db(db))
    if as_json:
        out.emit_json(out.end_dict(report), nl=False)
    else:
        out.write(out.end_text(report))
        for o in report.problems:
            click.echo(f"Error: {out.end_problem(o)}", err=True)
    if not report.ok:
        raise SystemExit(1)


# The very command of `python -m pdffillr_sessions.emulator`, so the two cannot drift apart. Its
# module imports only click and the fault parser: the server loads when the command runs.
main.add_command(emulator_command, name="emulator")


# -- the web view ------------------------------------------------------------------------------


@main.command()
@click.option(
    "-p",
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The port on 127.0.0.1; 0 takes any free one.",
)
@click.option("-o", "--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@_db_option
def serve(port: int, open_browser: bool, db: Path | str | None) -> None:
    """Browse the history in Datasette: sessions, transcripts and search, read-only.

    Prints the address of the sessions page, then serves until Ctrl-C. Only 127.0.0.1 listens
    (the history is private and Datasette asks for no password), and the file is never written:
    run a Session or `sync` meanwhile and reload the page to see it. Needs the optional extra:
    `pip install 'pdffillr-sessions[web]'`.
    """
    from ._serve import serve as serve_cache

    location = _resolve_db(db)
    if not isinstance(location, Path):
        raise click.ClickException(
            f"serve shows an SQLite cache file; {_shown(location)} is a PostgreSQL database "
            "(Datasette reads SQLite only)"
        )

    def ready(url: str) -> None:
        click.echo(url)
        click.echo(f"Serving {location} read-only: Ctrl-C stops.", err=True)
        if open_browser:
            click.launch(url)

    serve_cache(location, port=port, ready=ready)
