"""The client's behaviour replayed from recorded cassettes (``cassettes/test_cassettes/``).

Recorded over a real socket from the deterministic emulator; replayed with record mode ``none``,
so an unrecorded request fails the test and no server is needed. Re-record with
``python -m pytest -m vcr --record-mode=rewrite``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CASSETTE_KEY, CASSETTE_PORT, CassetteServer

from pdffillr_sessions import (
    AuthenticationError,
    BadRequestError,
    HistoryCache,
    NotFoundError,
    PdffillrClient,
    RateLimitError,
    Session,
    SessionEndedError,
)

pytestmark = pytest.mark.vcr


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(cassette_server: CassetteServer, sleeps: list[float]) -> Iterator[PdffillrClient]:
    with PdffillrClient(CASSETTE_KEY, base_url=cassette_server.url, sleep=sleeps.append) as c:
        yield c


def test_session_lifecycle(client: PdffillrClient, recording: bool) -> None:
    if not recording:
        # Replaying needs no server: nothing listens on the recorded port.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", CASSETTE_PORT), timeout=0.5).close()
    created = client.sessions.create(title="Due Diligence Review")
    assert created.title == "Due Diligence Review"
    assert created.status == "active" and created.message_count == 0
    anonymous = client.sessions.create()
    assert anonymous.title is None

    listed = client.sessions.list()
    assert [s.session_id for s in listed[:2]] == [anonymous.session_id, created.session_id]

    appended = client.sessions.send(created.session_id, "Summarise the side letter")
    assert [e.role for e in appended if e.type == "message"] == ["user", "assistant"]
    assert appended[0].content == "Summarise the side letter"
    assert all(e.session_id == created.session_id for e in appended)

    history = client.sessions.messages(created.session_id)
    assert [e.id for e in history] == [e.id for e in appended]
    assert client.sessions.messages(anonymous.session_id) == []

    client.sessions.end(created.session_id)
    after = {s.session_id: s for s in client.sessions.list()}
    assert after[created.session_id].status == "ended"
    assert after[created.session_id].message_count == len(history)
    assert after[anonymous.session_id].status == "active"  # only that session is affected

    with pytest.raises(SessionEndedError) as info:
        client.sessions.send(created.session_id, "one more")
    assert info.value.status_code == 409 and info.value.error_type == "session_ended"
    assert info.value.request_id
    client.sessions.end(created.session_id)  # ending twice is fine
    assert client.sessions.messages(created.session_id) == history  # ended stays readable
    client.sessions.end(anonymous.session_id)


def test_unknown_session_is_not_found(client: PdffillrClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.sessions.messages("sess_does_not_exist")
    assert info.value.error_type == "not_found"
    with pytest.raises(NotFoundError):
        client.sessions.end("sess_does_not_exist")


def test_wrong_key_is_an_authentication_error(cassette_server: CassetteServer) -> None:
    with PdffillrClient("sk_wrong_key_zzzzzzzz", base_url=cassette_server.url) as bad:
        with pytest.raises(AuthenticationError) as info:
            bad.sessions.list()
    assert info.value.status_code == 401


def test_empty_content_is_rejected_by_the_server_shape(client: PdffillrClient) -> None:
    session = client.sessions.create(title="validation")
    with pytest.raises(BadRequestError):
        client.request(
            "POST", f"/v1/sdk/chat/sessions/{session.session_id}/messages", json={"content": ""}
        )
    client.sessions.end(session.session_id)


def test_transient_503_then_success_is_retried(
    client: PdffillrClient, cassette_server: CassetteServer, sleeps: list[float]
) -> None:
    cassette_server.add_fault(
        "status", status=503, method="GET", times=1, headers={"Retry-After": "1"}
    )
    assert isinstance(client.sessions.list(), list)
    assert sleeps == [1.0]


def test_rate_limit_that_persists_surfaces_after_the_retries(
    client: PdffillrClient, cassette_server: CassetteServer, sleeps: list[float]
) -> None:
    cassette_server.add_fault(
        "status", status=429, method="GET", times=3, headers={"retry-after-ms": "20"}
    )
    with pytest.raises(RateLimitError) as info:
        client.sessions.list()
    assert info.value.error_type == "rate_limit"
    assert sleeps == [0.02, 0.02]


def test_attach_by_url(client: PdffillrClient) -> None:
    session = client.sessions.create(title="documents")
    entries = client.sessions.attach(session.session_id, url="https://example.com/side-letter.pdf")
    doc = next(e for e in entries if e.type == "document")
    assert doc.document is not None and doc.document["source"] == "url"
    assert any(e.type == "activity" and e.event == "document.processed" for e in entries)
    client.sessions.end(session.session_id)


def test_with_block_mirrors_and_ends(client: PdffillrClient, tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    with Session(client, title="Q4 Contract Review", cache=db) as s:
        s.send("Summarise the side letter")
        server_history = s.history()
    assert s.ended
    with HistoryCache(db, readonly=True) as cache:
        assert cache.history(s.session_id) == server_history
        cached = cache.session(s.session_id)
        assert cached is not None and cached.status == "ended" and not cached.end_pending
    assert next(x for x in client.sessions.list() if x.session_id == s.session_id).ended
