"""``pdffillr-sessions serve``: the history in Datasette, read-only, with the project's pages.

Most tests ask Datasette in-process (its ASGI client: no socket, milliseconds); one runs the
real command on a real socket. ``tests/test_browser.py`` looks at the pages in Chromium.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _web_sample import KEY_A, KYC, Q4, Q4_ENTRIES, ROOT, UNTITLED, entries, fill, serving, session
from click.testing import CliRunner

from pdffillr_sessions import _serve
from pdffillr_sessions._exceptions import CacheError
from pdffillr_sessions._scope import key_scope
from pdffillr_sessions.cache import HistoryCache
from pdffillr_sessions.cli import main


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    path = tmp_path / "cache" / "history.db"
    fill(path)
    return path


def fetch(path: Path, *urls: str) -> list[Any]:
    """GET each URL from a fresh in-process Datasette serving ``path`` (one event loop)."""
    ds = _serve.build_datasette(path)

    async def run() -> list[Any]:
        await ds.invoke_startup()
        return [await ds.client.get(url) for url in urls]

    return asyncio.run(run())


def rows(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("ok", True), body
    return list(body["rows"])


def json_url(path: str) -> str:
    """The JSON twin of a page, one object per row."""
    base, _, query = path.partition("?")
    return f"{base}.json?_shape=objects" + (f"&{query}" if query else "")


def transcript_link(session_id: str, text: str) -> str:
    return f'<a href="{_serve.transcript_path(session_id)}">{text}</a>'


# -- the pages ---------------------------------------------------------------------------------


def test_the_home_page_is_the_sessions_page(cache_path: Path) -> None:
    (home,) = fetch(cache_path, "/")
    assert home.status_code == 302
    assert home.headers["location"] == _serve.sessions_path()


def test_sessions_page_lists_titles_status_and_counts_newest_first(cache_path: Path) -> None:
    page, data = fetch(cache_path, _serve.sessions_path(), json_url(_serve.sessions_path()))
    found = rows(data)
    # One row per session, though Q4 is cached under two keys.
    assert [r["session"] for r in found] == [KYC, UNTITLED, Q4]
    q4 = found[2]
    assert q4["title"] == "Q4 Contract Review" and q4["status"] == "ended"
    assert (q4["entries"], q4["messages"], q4["documents"], q4["activity"]) == (6, 4, 1, 1)
    assert q4["created (UTC)"] == "2026-03-01 09:30:00"
    assert found[0]["status"] == "active" and found[0]["on this machine"] == "open"
    assert found[1]["entries"] == 0
    # Each session links to its transcript, by its title and by its id; no title: "Untitled".
    html = page.text
    assert transcript_link(Q4, "Q4 Contract Review") in html
    assert transcript_link(Q4, Q4) in html
    assert transcript_link(UNTITLED, "Untitled") in html
    # And the page has a search box over every history.
    assert f'action="/{_serve.DB_NAME}/{_serve.SEARCH_QUERY}"' in html


def test_a_transcript_shows_every_entry_in_order_under_its_sessions_title(
    cache_path: Path,
) -> None:
    page, data = fetch(cache_path, _serve.transcript_path(Q4), json_url(_serve.transcript_path(Q4)))
    found = rows(data)
    # Messages, the document and its activity in the server's order, each once (Q4 is cached
    # under two keys), with whole contents.
    assert [r["content"] for r in found] == [e["content"] for e in Q4_ENTRIES]
    assert [r["type"] for r in found] == [e["type"] for e in Q4_ENTRIES]
    assert [r["role"] for r in found] == [e["role"] for e in Q4_ENTRIES]
    assert [r["#"] for r in found] == [1, 2, 3, 4, 5, 6]
    html = page.text
    assert "<h2>Q4 Contract Review</h2>" in html
    assert "6 entries" in html and "created 2026-03-01 09:30:00 UTC" in html
    assert f'<a href="{_serve.sessions_path()}">all sessions</a>' in html
    positions = [html.index(e["content"].split("\n")[0]) for e in Q4_ENTRIES]
    assert positions == sorted(positions)


def test_a_transcript_of_an_unknown_session_says_so(cache_path: Path) -> None:
    (page,) = fetch(cache_path, _serve.transcript_path("sess_typo"))
    assert page.status_code == 200
    assert "No session sess_typo in this cache." in page.text


def test_search_shows_the_session_title_and_links_back_to_the_session(cache_path: Path) -> None:
    page, data = fetch(
        cache_path, _serve.search_path("side letter"), json_url(_serve.search_path("side letter"))
    )
    found = rows(data)
    # Both words, anywhere, best first; each entry once though cached under two keys.
    assert {r["session"] for r in found} == {Q4}
    assert {r["title"] for r in found} == {"Q4 Contract Review"}
    assert len(found) == 4  # m1, m2, d1, a1 ("side-letter.pdf" holds both words)
    assert any("[side] [letter]" in r["match"] for r in found)
    html = page.text
    assert transcript_link(Q4, "Q4 Contract Review") in html
    assert transcript_link(Q4, Q4) in html


@pytest.mark.parametrize("query", ['"unbalanced', "AND OR NOT (", "*", "", "   ", "\x00"])
def test_search_takes_any_text_without_an_error(cache_path: Path, query: str) -> None:
    (data,) = fetch(cache_path, json_url(_serve.search_path(query)))
    assert rows(data) == []


def test_search_finds_what_the_command_line_finds(cache_path: Path) -> None:
    """Both turn the text into an FTS5 query with the library's own ``_sql.fts_query``."""
    for query in ("fees", "passport", "side-letter", "residency empty", "letter.pdf"):
        (data,) = fetch(cache_path, json_url(_serve.search_path(query)))
        with HistoryCache(cache_path, api_key=KEY_A, readonly=True) as cache:  # holds them all
            expected = sorted((h.entry.session_id, h.entry.type) for h in cache.search(query))
        found = sorted((r["session"], r["type"]) for r in rows(data))
        assert found == expected and found, query


def test_technical_columns_are_hidden_by_default(cache_path: Path) -> None:
    scope = key_scope(KEY_A)
    pages = [
        _serve.sessions_path(),
        _serve.transcript_path(Q4),
        _serve.search_path("side letter"),
        f"/{_serve.DB_NAME}",
    ]
    *shown, database, sessions_table = fetch(cache_path, *pages, f"/{_serve.DB_NAME}/sessions")
    for page in [*shown, database]:
        assert page.status_code == 200
        assert scope not in page.text and KEY_A not in page.text
        assert '"document_id"' not in page.text and "&#34;document_id&#34;" not in page.text
    # The raw tables are hidden from the database page, not gone: one click away.
    assert "hidden tables" in database.text
    assert sessions_table.status_code == 200 and scope in sessions_table.text
    # There too a session id links to its transcript.
    assert transcript_link(Q4, Q4) in sessions_table.text


def test_the_template_files_match_the_pages() -> None:
    """Datasette picks a canned query's template by name: a renamed page would lose its own."""
    folder = ROOT / "pdffillr_sessions" / "_datasette_templates"
    names = {p.name for p in folder.glob("*.html")}
    db = _serve.DB_NAME
    assert names == {
        f"query-{db}-{_serve.SESSIONS_QUERY}.html",
        f"query-{db}-{_serve.TRANSCRIPT_QUERY}.html",
    }


# -- read-only ---------------------------------------------------------------------------------


def digest(path: Path) -> tuple[str, int, int]:
    """The database file's content and mtime, and how many bytes its WAL holds.

    A reader of a WAL database may create the empty ``-wal`` and ``-shm`` files beside it (as
    every offline command does); what it must never do is change the file or add a frame.
    """
    wal = path.with_name(path.name + "-wal")
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_mtime_ns,
        wal.stat().st_size if wal.exists() else 0,
    )


def test_the_cache_is_never_written(cache_path: Path) -> None:
    before = digest(cache_path)
    ds = _serve.build_datasette(cache_path)
    db = ds.get_database(_serve.DB_NAME)

    async def browse_and_try_to_write() -> list[int]:
        await ds.invoke_startup()
        statuses = []
        for url in (
            "/",
            _serve.sessions_path(),
            _serve.transcript_path(Q4),
            _serve.search_path("side"),
            f"/{_serve.DB_NAME}/sessions?_facet=status",
            f"/{_serve.DB_NAME}/history?_search=letter",
            f"/{_serve.DB_NAME}.json?sql=" + "delete+from+sessions",
        ):
            statuses.append((await ds.client.get(url)).status_code)
        with pytest.raises(CacheError, match="read-only"):
            await db.execute_write("DELETE FROM sessions")
        return statuses

    statuses = asyncio.run(browse_and_try_to_write())
    assert statuses[:-1] == [302, 200, 200, 200, 200, 200]
    assert statuses[-1] == 400  # Datasette's SQL box takes SELECT only
    # Even a statement that reaches a reading connection cannot write.
    conn = db.connect()
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
        conn.execute("DELETE FROM sessions")
    assert digest(cache_path) == before
    with HistoryCache(cache_path, readonly=True) as cache:
        assert len(cache.sessions()) == 4  # Q4 is cached under two keys


def test_what_a_running_script_just_mirrored_is_served(cache_path: Path) -> None:
    """A script still running holds its latest entries in the WAL file: Datasette's
    ``--immutable`` would not see them; the read-only connections here do."""
    writer = HistoryCache(cache_path, api_key=KEY_A)
    try:
        with sqlite3.connect(cache_path) as conn:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        writer.record_opened(session("sess_live", "Still running", "active", 1, 4))
        writer.mirror_history(
            "sess_live",
            entries(
                "sess_live",
                [
                    {
                        "id": "l1",
                        "type": "message",
                        "role": "user",
                        "content": "Written a moment ago.",
                    }
                ],
                4,
            ),
        )
        wal = cache_path.with_name(cache_path.name + "-wal")
        assert wal.exists() and wal.stat().st_size > 0
        (data,) = fetch(cache_path, json_url(_serve.transcript_path("sess_live")))
        assert [r["content"] for r in rows(data)] == ["Written a moment ago."]
    finally:
        writer.close()


# -- the command -------------------------------------------------------------------------------


def test_without_datasette_serve_says_how_to_install_it(
    cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasette", None)  # import datasette -> ImportError
    result = CliRunner().invoke(main, ["serve", "--db", str(cache_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    # A command for this interpreter (here, from this checkout: the checkout with the extra).
    assert lines[0].endswith(f": {_serve.install_command()}")
    assert "[web]" in lines[0] and sys.executable in lines[0]


def test_the_install_command_names_the_checkout_it_runs_from(tmp_path: Path) -> None:
    start = [sys.executable, "-m", "pip", "install"]
    # From this checkout (an editable install): the checkout again, with the extra.
    assert shlex.split(_serve.install_command()) == [*start, "-e", f"{ROOT}[web]"]
    # From an installed wheel: the package from the index.
    site = tmp_path / "my venv" / "site-packages" / "pdffillr_sessions"
    site.mkdir(parents=True)
    assert shlex.split(_serve.install_command(site)) == [*start, "pdffillr-sessions[web]"]
    # Beside another project's pyproject.toml: still the index.
    (site.parent / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert shlex.split(_serve.install_command(site)) == [*start, "pdffillr-sessions[web]"]


def test_serve_refuses_what_is_not_a_cache(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_bytes(b"just some notes\n" * 20)
    missing = tmp_path / "missing.db"
    for path, message in ((text, "not a pdffillr-sessions cache"), (missing, "no history cache")):
        result = CliRunner().invoke(main, ["serve", "--db", str(path)])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: ") and message in result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert text.read_bytes() == b"just some notes\n" * 20
    assert not missing.exists()


def test_a_port_in_use_is_one_error_line(cache_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((_serve.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--db", str(cache_path), "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot listen on 127.0.0.1:")
    assert "--port 0" in result.stderr


@pytest.fixture
def served(cache_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with serving(cache_path) as running:
        yield running


def test_serve_listens_on_loopback_and_stops_on_ctrl_c(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    url, proc = served
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/history/all_sessions", url)
    with urllib.request.urlopen(url, timeout=10) as response:
        html = response.read().decode()
    assert "Q4 Contract Review" in html and "KYC refresh" in html
    root = url.split("/history/")[0] + "/"
    with urllib.request.urlopen(root, timeout=10) as response:  # redirected to the sessions
        assert response.url == url
    data = json.loads(urllib.request.urlopen(f"{root}-/metadata.json", timeout=10).read())
    assert data["title"] == "Pdffillr session history"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "read-only" in err and "Traceback" not in err
