"""Session edges: threads sharing one, sessions ended by someone else, resumed sessions, closed
clients; each pinned by a test that failed before its fix."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdffillr_sessions import (
    AsyncPdffillrClient,
    CacheError,
    ClientClosedError,
    HistoryCache,
    InvalidInputError,
    PdffillrClient,
    Session,
    SessionEndedError,
)
from pdffillr_sessions.emulator import Emulator

KEY = "sk_session_edges_0123456789"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


def test_a_session_shared_by_threads_caches_the_servers_order(
    client: PdffillrClient, tmp_path: Path
) -> None:
    db = tmp_path / "threads.db"
    with Session(client, cache=db) as s:

        def worker(i: int) -> None:
            for j in range(15):
                s.send(f"thread {i} message {j}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    server = [e.id for e in client.sessions.messages(s.session_id)]
    with HistoryCache(db) as cache:
        assert [e.id for e in cache.history(s.session_id)] == server
    assert len(server) == 4 * 15 * 2


def test_a_session_ended_by_someone_else_is_recorded_ended_with_its_history(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "ext.db"
    with Session(client, cache=db) as s:
        s.send("one")
        client.sessions.end(s.session_id)  # another script ends it
        with pytest.raises(SessionEndedError):
            s.send("two")
        assert s.ended
        before = len(emulator.request_log)
        with pytest.raises(SessionEndedError, match="no request was sent"):
            s.send("three")
        assert len(emulator.request_log) == before
    with HistoryCache(db) as cache:
        row = cache.session(s.session_id)
        assert row is not None and row.status == "ended" and row.local_state == "ended"
        assert cache.pending_ends() == []
        assert len(cache.history(s.session_id)) == len(emulator.history(KEY, s.session_id))


def test_a_resumed_session_found_ended_is_recorded_at_once(
    client: PdffillrClient, tmp_path: Path
) -> None:
    db = tmp_path / "resumed.db"
    info = client.sessions.create()
    s = Session.resume(client, info.session_id, cache=db)
    client.sessions.end(info.session_id)
    with pytest.raises(SessionEndedError):
        s.send("late")
    assert s.ended
    with HistoryCache(db) as cache:
        row = cache.session(info.session_id)
        assert row is not None and row.status == "ended"


def test_a_closed_client_raises_a_typed_error_and_leaves_no_intent(
    emulator: Emulator, tmp_path: Path
) -> None:
    import asyncio

    db = tmp_path / "closed.db"
    client = PdffillrClient(KEY, base_url=emulator.url)
    client.close()
    with pytest.raises(ClientClosedError):
        client.sessions.list()
    with pytest.raises(ClientClosedError), Session(client, cache=db):
        pytest.fail("the block must not run")
    with HistoryCache(db) as cache:
        assert cache.create_intents() == []
    assert emulator.request_log == []

    async def closed_async() -> None:
        async with AsyncPdffillrClient(KEY, base_url=emulator.url) as ac:
            pass
        await ac.sessions.list()

    with pytest.raises(ClientClosedError):
        asyncio.run(closed_async())


def test_resume_refuses_an_empty_id_before_any_request(
    client: PdffillrClient, emulator: Emulator
) -> None:
    with pytest.raises(InvalidInputError):
        Session.resume(client, "", cache=False)
    assert emulator.request_log == []


def test_a_resumed_session_closes_its_own_cache(client: PdffillrClient, tmp_path: Path) -> None:
    info = client.sessions.create()
    s = Session.resume(client, info.session_id, cache=tmp_path / "r.db")
    assert s.cache is not None
    s.close()
    assert s.cache is None
    s.send("still works, no longer mirrored")
    s.close()  # idempotent
    with HistoryCache(tmp_path / "r.db") as cache:
        assert cache.history(info.session_id) == []


def test_an_owner_lock_that_cannot_be_made_is_a_typed_error_and_nothing_is_sent(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    (tmp_path / "history.db.locks").write_text("not a directory")
    with pytest.raises(CacheError, match="owner lock"), Session(client, cache=db):
        pytest.fail("the block must not run")
    with HistoryCache(db) as cache:
        assert cache.create_intents() == []
    assert emulator.request_log == []
