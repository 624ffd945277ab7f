"""Hostile input: odd ids, SQL and FTS syntax, NUL bytes, emoji, huge messages, bad types.

Each gets a clear typed error or round-trips exactly, and nothing already cached is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdffillr_sessions import (
    HistoryCache,
    InvalidInputError,
    NotFoundError,
    PdffillrClient,
    Session,
)
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Emulator

KEY = "sk_hostile_input_tests_7c1d"

HOSTILE_TEXTS = [
    "'; DROP TABLE history; --",
    'Robert"); DELETE FROM sessions WHERE ("1"="1',
    'NEAR(side letter) AND "unbalanced * OR -excluded content:title ^start',
    "\x00NUL at the start, in the \x00 middle and at the end\x00",
    "emoji 🧾📄✅ and combining e\u0301 and RTL \u202eevil\u202c",
    "line\nbreaks\r\nand\u2028separators\u2029too\ttabs",
    "x" * 200_000,
    "%2e%2e/../%00 ${HOME} {{template}} <script>alert(1)</script>",
]


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def client(server: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=server.url, sleep=lambda s: None) as c:
        yield c


def export_jsonl(db: Path, session_id: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(cli, ["export", session_id, "--format", "jsonl", "--db", str(db)])
    assert result.exit_code == 0, result.output
    # Split on "\n" only: U+2028 inside a JSON string is legal and must not split a record.
    return [json.loads(line) for line in result.stdout_bytes.decode("utf-8").split("\n") if line]


def test_hostile_texts_round_trip_through_send_cache_and_export(
    client: PdffillrClient, server: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    with Session(client, title="'; DROP TABLE sessions; --", cache=db) as s:
        for text in HOSTILE_TEXTS:
            [sent, *_] = s.send(text)
            assert sent.content == text
    server_contents = [e["content"] for e in server.history(KEY, s.session_id)]
    with HistoryCache(db) as cache:
        cached = cache.history(s.session_id)
        assert [e.content for e in cached] == server_contents
        assert cache.session(s.session_id).title == "'; DROP TABLE sessions; --"  # type: ignore[union-attr]
        for text in HOSTILE_TEXTS[:6]:
            cache.search(text)  # FTS syntax in a query never raises
        assert cache.search("DROP TABLE")[0].entry.content == HOSTILE_TEXTS[0]
    exported = export_jsonl(db, s.session_id)
    assert [e["content"] for e in exported] == server_contents


@pytest.mark.parametrize(
    "session_id", ["..", ".", "", "a/b", "a?b", "%2e%2e", "../../etc/passwd", "sess\x00x"]
)
def test_hostile_session_ids_are_refused_or_stay_one_segment(
    client: PdffillrClient, server: Emulator, session_id: str
) -> None:
    before = len(server.request_log)
    try:
        client.sessions.messages(session_id)
    except InvalidInputError:
        assert len(server.request_log) == before  # refused locally, nothing sent
    except NotFoundError:
        # Sent as ONE encoded segment: the server saw the messages route of an unknown id,
        # never another route (a traversal would have listed sessions or hit /v1/sdk/chat).
        [record] = server.request_log[before:]
        assert record.path.startswith("/v1/sdk/chat/sessions/") and record.path.endswith(
            "/messages"
        )
        assert record.path.count("/") == 6
    else:  # pragma: no cover - would be a traversal
        pytest.fail(f"{session_id!r} reached an existing resource")


@pytest.mark.parametrize("title", [5, 3.2, ["a"], {"t": 1}, b"bytes", True])
def test_non_string_titles_are_refused_before_any_request(
    client: PdffillrClient, server: Emulator, title: object, tmp_path: Path
) -> None:
    before = len(server.request_log)
    with pytest.raises(InvalidInputError):
        client.sessions.create(title=title)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError), Session(client, title=title, cache=tmp_path / "c.db"):  # type: ignore[arg-type]
        pass
    assert len(server.request_log) == before


def test_a_refused_send_loses_nothing_already_cached(
    client: PdffillrClient, tmp_path: Path
) -> None:
    db = tmp_path / "keep.db"
    with Session(client, cache=db) as s:
        s.send("keep me")
        with pytest.raises(InvalidInputError):
            s.send("")
        with pytest.raises(InvalidInputError):
            s.send(None)  # type: ignore[arg-type]
    with HistoryCache(db) as cache:
        assert cache.history(s.session_id)[0].content == "keep me"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.text(min_size=1, max_size=2_000))
def test_any_text_round_trips_through_send_cache_and_export(
    server: Emulator, tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    db = tmp_path_factory.mktemp("prop") / "p.db"
    with PdffillrClient(KEY, base_url=server.url) as client:
        with Session(client, cache=db) as s:
            [sent, *_] = s.send(text)
    assert sent.content == text
    with HistoryCache(db, readonly=True) as cache:
        assert cache.history(s.session_id)[0].content == text
    assert export_jsonl(db, s.session_id)[0]["content"] == text
