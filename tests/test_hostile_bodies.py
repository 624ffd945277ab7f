"""Any body is parsed to a typed result or a typed error, and one bad session never stops a sync.

Deep nesting, out-of-range dates and integers, wrong types, lone surrogates: the parsers give a
value or a ``ProtocolError`` (never a ``RecursionError`` or an ``OverflowError``), a value the
cache cannot hold is refused with ``ProtocolError`` and nothing written half, and ``sync`` reports
such a session and mirrors every other one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdffillr_sessions import (
    AsyncPdffillrClient,
    HistoryCache,
    HistoryEntry,
    InternalServerError,
    PdffillrClient,
    ProtocolError,
    SessionInfo,
    reap,
    sync,
)
from pdffillr_sessions._models import (
    parse_entries,
    parse_entry,
    parse_session,
    parse_sessions,
)
from pdffillr_sessions._responses import decode_body
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_hostile_bodies_0123456789"
DEEP = b"[" * 100_000 + b"]" * 100_000
GOOD = {
    "session_id": "sess_good",
    "title": "fine",
    "status": "active",
    "message_count": 0,
    "created_at": "2026-01-01T00:00:00Z",
}


def mock_client(body: bytes, status: int = 200) -> PdffillrClient:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, content=body))
    return PdffillrClient(KEY, base_url="http://x.test", transport=transport, max_retries=0)


# -- any JSON shape ---------------------------------------------------------------------------

DATES = st.one_of(
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00+05:30",
            "2026-01-01",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999+00:00",
            "not a date",
            "",
        ]
    ),
    st.text(max_size=30),
)
INTS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]),
)
TEXT = st.text(st.characters(codec=None, categories=["L", "N", "P", "Cc", "Cs", "Zs"]), max_size=20)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)
FIELD_VALUES = st.one_of(JSON, DATES, INTS, TEXT)
SESSION_KEYS = ["session_id", "title", "status", "message_count", "created_at", "ended_at"]
ENTRY_KEYS = ["id", "type", "role", "content", "created_at", "document", "event"]


def shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of the contract's fields (each any JSON value), and extra fields."""
    return st.fixed_dictionaries({}, optional={k: FIELD_VALUES for k in keys} | {"extra": JSON})


ANY_BODY = st.one_of(
    JSON,
    shaped(SESSION_KEYS),
    shaped(ENTRY_KEYS),
    st.lists(st.one_of(shaped(SESSION_KEYS), shaped(ENTRY_KEYS), JSON), max_size=5),
    st.fixed_dictionaries({"data": st.lists(shaped(SESSION_KEYS), max_size=3)}),
)


@settings(max_examples=400, deadline=None)
@given(body=ANY_BODY)
def test_any_json_gives_a_typed_result_or_a_protocol_error(body: Any) -> None:
    parsers: list[tuple[Any, Any]] = [
        (parse_session, SessionInfo),
        (lambda b: parse_entry(b, session_id="s"), HistoryEntry),
        (parse_sessions, list),
        (lambda b: parse_entries(b, session_id="s"), list),
        (lambda b: decode_body(json.dumps(b).encode("utf-8", "surrogatepass"), what="x"), object),
    ]
    for parse, kind in parsers:
        try:
            result = parse(body)
        except ProtocolError:
            continue  # the typed refusal; any other exception fails the test
        assert isinstance(result, kind)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sessions=st.lists(shaped(SESSION_KEYS), max_size=3), entries=st.lists(shaped(ENTRY_KEYS)))
def test_a_parsed_value_is_stored_or_refused_whole(
    tmp_path_factory: pytest.TempPathFactory, sessions: list[Any], entries: list[Any]
) -> None:
    """Whatever the parsers accept, the cache stores, or refuses with ``ProtocolError``
    leaving the file as it was (never an ``OverflowError``, never half written)."""
    db = tmp_path_factory.mktemp("store") / "c.db"
    with HistoryCache(db, scope="s") as cache:
        cache.upsert_sessions(
            [SessionInfo(**{**GOOD, "created_at": parse_session(GOOD).created_at})]
        )  # type: ignore[arg-type]
        before = (cache.sessions(), cache.history("sess_good"))
        for item in sessions:
            try:
                info = parse_session(item)
            except ProtocolError:
                continue
            try:
                cache.upsert_sessions([info])
            except ProtocolError:
                assert cache.sessions() == before[0]
            before = (cache.sessions(), before[1])
        parsed = []
        for item in entries:
            try:
                parsed.append(parse_entry(item, session_id="sess_good"))
            except ProtocolError:
                continue
        try:
            cache.mirror_history("sess_good", parsed)
        except ProtocolError:
            assert cache.history("sess_good") == before[1]
        assert cache.integrity_check() == []


# -- deep nesting ----------------------------------------------------------------------------


def test_100000_nested_arrays_are_a_protocol_error_not_a_recursion_error() -> None:
    with mock_client(DEEP) as client, pytest.raises(ProtocolError, match="nested too deeply"):
        client.sessions.list()
    with mock_client(DEEP, status=503) as client, pytest.raises(InternalServerError):
        client.sessions.list()  # an error body nested that deep is kept as text

    async def scenario() -> None:
        transport = httpx.MockTransport(lambda r: httpx.Response(200, content=DEEP))
        async with AsyncPdffillrClient(
            KEY, base_url="http://x.test", transport=transport
        ) as client:
            with pytest.raises(ProtocolError, match="nested too deeply"):
                await client.sessions.list()

    asyncio.run(scenario())


@pytest.fixture
def server() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def client(server: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=server.url, sleep=lambda s: None, max_retries=0) as c:
        yield c


def deep_fault(**kwargs: Any) -> Fault:
    return Fault("status", status=200, body=DEEP, content_type="application/json", **kwargs)


def test_deep_json_is_one_error_line_from_the_cli(server: Emulator, tmp_path: Path) -> None:
    server.add_fault(deep_fault(method="GET", path=r"/sessions$"))
    result = CliRunner().invoke(
        cli,
        ["sync", "--db", str(tmp_path / "c.db")],
        env={"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": server.url},
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "nested too deeply" in result.output
    assert "Traceback" not in result.output


def test_reap_goes_through_every_record_when_a_reply_is_nested_too_deeply(
    client: PdffillrClient, server: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    opened = [client.sessions.create(f"left open {i}") for i in range(2)]
    with HistoryCache(db, scope=client.key_scope, server=client.server) as cache:
        cache.record_create_intent("pfs_lost_create_1", "lost")
        for info in opened:
            cache.record_opened(info)
    server.add_fault(deep_fault(method="POST", path=r"/sessions$", times=5))
    report = reap(client, db, older_than=timedelta(0))  # records with no owner lock: by age
    actions = sorted((o.kind, o.action) for o in report.outcomes)
    assert actions == [("create_intent", "failed"), ("session", "ended"), ("session", "ended")]
    assert "nested too deeply" in next(o.detail or "" for o in report.outcomes if o.failed)


# -- edge values, one bad session in a sync ---------------------------------------------------

EDGE_SESSIONS = [
    {**GOOD, "session_id": "sess_year_1", "created_at": "0001-01-01T00:00:00+01:00"},
    {**GOOD, "session_id": "sess_year_9999", "created_at": "9999-12-31T23:59:59-01:00"},
    {**GOOD, "session_id": "sess_huge_count", "message_count": 2**63},
]


@pytest.mark.parametrize("bad", EDGE_SESSIONS, ids=lambda s: s["session_id"])
def test_out_of_range_values_are_protocol_errors_from_the_client(bad: dict[str, Any]) -> None:
    with mock_client(json.dumps([GOOD, bad]).encode()) as client:
        with pytest.raises(ProtocolError, match="out of range"):
            client.sessions.list()


def listing_fault(server: Emulator, extra: list[dict[str, Any]]) -> None:
    body = json.dumps([*server.sessions(KEY), *extra])
    server.add_fault(
        Fault(
            "status",
            status=200,
            method="GET",
            path=r"/sessions$",
            body=body,
            content_type="application/json",
        )
    )


def test_one_bad_session_never_stops_a_sync(
    client: PdffillrClient, server: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    good = []
    for i in range(3):
        sid = client.sessions.create(f"good {i}").session_id
        client.sessions.send(sid, "hello")
        good.append(sid)
    surrogate = client.sessions.create("unstorable").session_id
    client.sessions.send(surrogate, "fine")
    history = server.history(KEY, surrogate)
    history[-1] = {**history[-1], "content": "lone \ud800 surrogate"}
    server.add_fault(
        Fault(
            "status",
            status=200,
            method="GET",
            path=f"{surrogate}/messages$",
            body=json.dumps(history),  # \ud800 as a JSON escape: valid JSON, not valid text
            content_type="application/json",
        )
    )
    dotdot = {**GOOD, "session_id": "..", "message_count": 1}
    listing_fault(server, [dotdot, *EDGE_SESSIONS])
    report = sync(client, db)
    failures = {(f.session_id, f.stage, f.error_type) for f in report.failures}
    assert failures == {
        ("..", "fetch", "InvalidInputError"),
        (surrogate, "store", "ProtocolError"),
        ("sess_year_1", "list", "ProtocolError"),
        ("sess_year_9999", "list", "ProtocolError"),
        ("sess_huge_count", "list", "ProtocolError"),
    }
    with HistoryCache(db, readonly=True) as cache:
        for sid in good:
            assert len(cache.history(sid)) == 2
        assert cache.history(surrogate) == []  # refused whole, never half written
    listing_fault(server, [dotdot])
    result = CliRunner().invoke(
        cli,
        ["sync", "--db", str(db)],
        env={"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": server.url},
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("Synced ")
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert any("'..'" in line for line in errors), result.stderr
    assert "Traceback" not in result.output
