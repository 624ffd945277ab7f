"""One search language: a quoted phrase is a phrase, as in sqlite-utils and Datasette.

The same query on the same file finds the same entries through ``HistoryCache.search``, the
``search`` command, the ``serve`` search page, ``sqlite-utils search --quote`` and Datasette's
own table search (``?_search=``, ``escape_fts``): both of those read a query with
sqlite-utils' ``quote_fts`` rules, which ``_sql.query_tokens`` follows. Where ``quote_fts``
makes a query FTS5 refuses, the library still answers (any string is safe).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils as sqlite_utils_api
from click.testing import CliRunner

from pdffillr_sessions import _serve
from pdffillr_sessions._models import parse_entry
from pdffillr_sessions.cache import HistoryCache
from pdffillr_sessions.cache._sql import fts_query, query_tokens
from pdffillr_sessions.cli import main

SQLITE_UTILS = str(Path(sys.executable).with_name("sqlite-utils"))
KEY = "sk_search_language_0123456789"

TEXTS = {
    "e1": "Please fill the form for the subscription agreement",
    "e2": "The subscription form is attached",
    "e3": "A side letter grants MFN rights to the investor",
    "e4": "Notes on the side, and a letter from the fund",
    "e5": "Fund IV side-letter: capital call notice",
    "e6": "OR and NOT are plain words here; so is NEAR",
    "e7": "letters and lettering, not the word itself",
}

#: Queries and the entries they find, as sqlite-utils and Datasette find them.
CASES: list[tuple[str, set[str]]] = [
    ('"form subscription"', set()),  # a phrase: these words, next to each other, in order
    ('"subscription form"', {"e2"}),
    ("form subscription", {"e1", "e2"}),  # words: all of them, anywhere, any order
    ('"side letter"', {"e3", "e5"}),  # "side-letter" is "side" then "letter"
    ("side letter", {"e3", "e4", "e5"}),
    ("side-letter", {"e3", "e5"}),  # a token with punctuation is a phrase of its words
    ('"side letter" MFN', {"e3"}),  # a phrase and a word
    ('"capital call', {"e5"}),  # an unbalanced quote runs to the end
    ('fund"side letter"', {"e5"}),
    ("letter*", {"e3", "e4", "e5"}),  # no prefix search: * is not syntax
    ("OR NOT", {"e6"}),  # nor operators: OR and NOT are words
    ("NEAR(side letter)", set()),  # "NEAR(side" is a phrase: "near" then "side"
    ("NEAR side", set()),  # NEAR is a word like any other (e6 has it, not "side")
    ('"" fund', {"e4", "e5"}),  # an empty phrase is nothing
    ('"!!!" fund', {"e4", "e5"}),  # nor is one with no word in it, beside others
    ('"!!!"', set()),  # and alone it finds nothing
    ("", set()),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("search") / "history.db"
    with HistoryCache(path, api_key=KEY) as cache:
        raw = [
            {
                "id": entry_id,
                "type": "message",
                "role": "user",
                "content": text,
                "created_at": "2026-01-01T00:00:00Z",
            }
            for entry_id, text in TEXTS.items()
        ]
        cache.mirror_history("s1", [parse_entry(r, session_id="s1") for r in raw])
    return path


def library(db: Path, query: str) -> set[str]:
    with HistoryCache(db, readonly=True) as cache:
        return {h.entry.id for h in cache.search(query, limit=100)}


def sqlite_utils(db: Path, query: str) -> set[str]:
    out = subprocess.run(
        [
            SQLITE_UTILS,
            "search",
            str(db),
            "history",
            query,
            "--quote",
            "-c",
            "id",
            "--limit",
            "100",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {row["id"] for row in json.loads(out)}


def datasette(db: Path, *queries: str) -> list[set[str]]:
    ds = _serve.build_datasette(db)

    async def run() -> list[Any]:
        await ds.invoke_startup()
        found = []
        for query in queries:
            table = await ds.client.get(
                f"/{_serve.DB_NAME}/history.json",
                params={"_search": query, "_shape": "objects", "_col": "id", "_size": "100"},
            )
            page = await ds.client.get(
                f"{_serve.search_path(query).partition('?')[0]}.json",
                params={"q": query, "_shape": "objects"},
            )
            assert table.status_code == 200 and page.status_code == 200, (table.text, page.text)
            found.append(({r["id"] for r in table.json()["rows"]}, page.json()["rows"]))
        return found

    results = []
    for table_ids, page_rows in asyncio.run(run()):
        assert len(page_rows) == len(table_ids)  # the serve page finds as many, all in s1
        results.append(table_ids)
    return results


def cli(db: Path, query: str) -> set[str]:
    result = CliRunner().invoke(main, ["search", query, "-d", str(db), "--json", "-n", "0"])
    assert result.exit_code == 0, result.output
    return {hit["entry_id"] for hit in json.loads(result.output)}


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_the_library_cli_and_sqlite_utils_find_the_same_entries(
    db: Path, query: str, expected: set[str]
) -> None:
    assert library(db, query) == expected
    assert cli(db, query) == expected
    if query:  # sqlite-utils refuses an empty query (an FTS5 syntax error)
        assert sqlite_utils(db, query) == expected


def test_datasette_and_the_serve_page_find_the_same_entries(db: Path) -> None:
    queries = [q for q, _ in CASES if q]
    assert datasette(db, *queries) == [expected for q, expected in CASES if q]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"side\nletter"', {"e3", "e5"}),  # a line break inside quotes is whitespace
        ('"side\nletter MFN" fund', set()),
        ("side\x00letter", {"e3", "e5"}),  # NUL separates words, inside the token
        ('"side\x00letter"', {"e3", "e5"}),
        ("\x00", set()),
        ("fund \ud800", {"e4", "e5"}),  # a lone surrogate separates words too
        ('"caf\ud800" fund', set()),
    ],
)
def test_where_quote_fts_fails_the_library_still_answers(
    db: Path, query: str, expected: set[str]
) -> None:
    """sqlite-utils' own reading of these fails (FTS5 reads its query as a C string, a NUL
    ends it: "unterminated string"; a lone surrogate cannot be sent to SQLite at all)."""
    assert library(db, query) == expected
    if "\x00" in query or "\ud800" in query:
        table = sqlite_utils_api.Database(db)["history"]
        with pytest.raises((sqlite3.OperationalError, UnicodeEncodeError)):
            list(table.search(query, quote=True))  # type: ignore[union-attr]


def test_the_tokens_are_the_phrases_of_the_query() -> None:
    assert query_tokens('"side letter" fees') == ["side letter", "fees"]
    assert query_tokens('a"b c"d') == ["a", "b c", "d"]
    assert query_tokens('say "hi') == ["say", "hi"]
    assert query_tokens('"" "  " --- ok') == ["ok"]
    assert fts_query('"side letter" fees') == '"side letter" "fees"'
    assert fts_query("x\x00y") == '"x y"'
    assert fts_query("!!!") == ""
