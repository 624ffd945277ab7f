"""Cached records belong to a server as well as to a key; a create that never left the machine.

* ``reap``, ``end`` and ``sync`` run against another server (same key) change nothing of the
  first server's rows: not marked, not ended, not forgotten. (Before, a ``reap --base-url
  OTHER`` got 404s, marked a leaked session ended, and the right server's reap then said
  "Nothing to reap".)
* A 404 from the server a row was recorded for means gone. A row written before servers were
  recorded (NULL) is never marked gone by a 404 (the server may be the wrong one); a successful
  end claims it.
* Two servers giving the same id (deterministic emulators do): ``sync`` leaves the other
  server's row and history alone.
* A create whose every attempt failed to connect (refused, DNS failure) forgets its intent;
  one that may have reached the server once keeps it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pdffillr_sessions import (
    APIConnectionError,
    AsyncPdffillrClient,
    CacheError,
    HistoryCache,
    PdffillrClient,
    Session,
    SessionInfo,
    reap,
    sync,
)
from pdffillr_sessions._owner import OwnerLock, lock_dir
from pdffillr_sessions._scope import server_id
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator

KEY = "sk_server_scope_SECRET_8b7a"


@pytest.fixture
def other() -> Iterator[Emulator]:
    """A second server, same key."""
    with Emulator(port=0) as emu:
        yield emu


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


def snapshot(db: Path) -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        return [
            conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("sessions", "create_intents", "history")
        ]
    finally:
        conn.close()


def cli(server: Emulator, db: Path, *args: str) -> Any:
    env = {"PDFFILLR_API_KEY": KEY}
    result = CliRunner().invoke(
        main, [*args, "--base-url", server.url, "--db", str(db), "--json"], env=env
    )
    return result


def leave_behind(emulator: Emulator, db: Path) -> tuple[str, str, str]:
    """On ``emulator``: a session and a create intent whose block died, and a row of an older
    version (no server, no lock). Returns (session id, intent key, old row's session id)."""
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        open_one = client.sessions.create("left open")
        old_one = client.sessions.create("older version")
        with HistoryCache(db, api_key=KEY, server=client.server) as cache:
            first, second = OwnerLock.acquire(db), OwnerLock.acquire(db)  # one per block
            assert first is not None and second is not None
            cache.record_opened(open_one, owner_lock=first.name)
            cache.record_create_intent("pfs_lost_create", "lost", owner_lock=second.name)
        first.release(resolved=False)  # their processes died
        second.release(resolved=False)
        with HistoryCache(db, api_key=KEY) as legacy:  # no server: as written before m004
            legacy.record_opened(old_one)
    return open_one.session_id, "pfs_lost_create", old_one.session_id


def test_reap_end_and_sync_against_another_server_change_nothing_in_the_cache(
    emulator: Emulator, other: Emulator, db: Path
) -> None:
    sid, key, old_sid = leave_behind(emulator, db)
    with PdffillrClient(KEY, base_url=other.url) as on_other:
        on_other.sessions.create("the other server's own")
    before = snapshot(db)

    result = cli(other, db, "reap", "--older-than", "0")
    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.stdout)["results"]
    # Only the row that does not say its server was tried there; the other's 404 marks nothing.
    assert [(o["session_id"], o["action"]) for o in outcomes] == [(old_sid, "skipped")]
    assert "does not say which server" in outcomes[0]["detail"]
    assert cli(other, db, "end", sid).exit_code == 1  # not found there; not marked here
    assert snapshot(db) == before
    assert cli(other, db, "sync").exit_code == 0  # adds the other server's session, only
    added = [row for row in snapshot(db)[0] if row not in before[0]]
    conn = sqlite3.connect(db)
    server_column = [r[1] for r in conn.execute("PRAGMA table_info(sessions)")].index("server")
    conn.close()
    assert [(row[2], row[server_column]) for row in added] == [
        ("the other server's own", server_id(other.url))
    ]
    with HistoryCache(db, api_key=KEY, server=server_id(emulator.url)) as cache:
        assert {p.session_id for p in cache.pending_ends()} == {sid, old_sid}
        assert [i.idempotency_key for i in cache.create_intents()] == [key]
    assert [s["status"] for s in emulator.sessions(KEY)] == ["active", "active"]

    # The right server's reap, with its defaults: the dead block's records at once.
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        report = reap(client, db)
    done = {
        (o.kind, o.session_id if o.kind == "session" else o.idempotency_key): o.action
        for o in report.outcomes
    }
    assert done[("session", sid)] == "ended"
    assert done[("create_intent", key)] == "ended"
    assert done[("session", old_sid)] == "skipped"  # no lock: waits for --older-than
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        (claimed,) = reap(client, db, older_than=timedelta(0)).outcomes
    assert (claimed.session_id, claimed.action) == (old_sid, "ended")
    with HistoryCache(db, api_key=KEY) as cache:
        row = cache.session(old_sid)
        assert row is not None and row.server == server_id(emulator.url)  # claimed by its end
        assert cache.pending_ends() == [] and cache.create_intents() == []
    assert {s["status"] for s in emulator.sessions(KEY)} == {"ended"}
    assert list(lock_dir(db).iterdir()) == []


def test_a_404_from_the_recorded_server_means_gone(emulator: Emulator, db: Path) -> None:
    vanished = SessionInfo(
        session_id="sess_vanished",
        title=None,
        status="active",
        message_count=0,
        created_at=datetime.now(UTC),
    )
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        with HistoryCache(db, api_key=KEY, server=client.server) as cache:
            cache.record_opened(vanished)
        (outcome,) = reap(client, db, older_than=timedelta(0)).outcomes
    assert outcome.action == "gone"
    with HistoryCache(db, api_key=KEY) as cache:
        row = cache.session("sess_vanished")
        assert row is not None and row.local_state == "ended"


def test_sync_leaves_another_servers_row_with_the_same_id_alone(db: Path) -> None:
    with Emulator(deterministic=True) as a, Emulator(deterministic=True) as b:
        a_server = server_id(a.url)
        with (
            PdffillrClient(KEY, base_url=a.url) as on_a,
            PdffillrClient(KEY, base_url=b.url) as on_b,
        ):
            mine = on_a.sessions.create("on A")
            sync(on_a, db)
            theirs = on_b.sessions.create("on B")
            on_b.sessions.send(theirs.session_id, "B's message")
            assert theirs.session_id == mine.session_id  # the same id, another session
            report = sync(on_b, db)
    assert report.sessions == 0 and report.entries_added == 0
    with HistoryCache(db, api_key=KEY) as cache:
        row = cache.session(mine.session_id)
        assert row is not None and row.title == "on A" and row.server == a_server
        assert cache.history(mine.session_id) == []


def test_server_id_is_one_spelling_and_never_holds_credentials() -> None:
    assert server_id("HTTPS://API.Pdffillr.ai:443/") == "https://api.pdffillr.ai"
    assert server_id("http://127.0.0.1:8080/base/") == "http://127.0.0.1:8080/base"
    assert server_id("http://h:80") == "http://h"
    assert server_id("https://user:pw@h.example/") == "https://h.example"
    assert server_id("http://[::1]:9000") == "http://[::1]:9000"


# -- a create that never left the machine ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_create_refused_before_connecting_forgets_its_intent(db: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    with PdffillrClient(KEY, base_url=url, sleep=lambda s: None) as client:
        with pytest.raises(APIConnectionError) as caught, Session(client, cache=db):
            pytest.fail("the block must not run")
    assert caught.value.request_sent is False
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.create_intents() == []
    assert list(lock_dir(db).iterdir()) == []


def flaky_transport(*failures: httpx.TransportError) -> httpx.MockTransport:
    queue = list(failures)

    def handler(request: httpx.Request) -> httpx.Response:
        raise queue.pop(0)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("failures", "sent"),
    [
        ((httpx.ConnectError("[Errno -2] Name or service not known"),) * 3, False),  # DNS
        (
            (httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("")),
            False,
        ),
        ((httpx.ReadTimeout("read"), httpx.ConnectError("refused"), httpx.ConnectError("x")), True),
        (
            (
                httpx.ConnectError("refused"),
                httpx.RemoteProtocolError("reset"),
                httpx.ConnectError("x"),
            ),
            True,
        ),
    ],
    ids=["dns", "never-connected", "timed-out-once", "reset-once"],
)
def test_only_a_create_no_attempt_of_which_connected_forgets_its_intent(
    db: Path, failures: tuple[httpx.TransportError, ...], sent: bool
) -> None:
    with PdffillrClient(
        KEY,
        base_url="https://api.example",
        transport=flaky_transport(*failures),
        sleep=lambda s: None,
    ) as client:
        with pytest.raises(APIConnectionError) as caught, Session(client, cache=db):
            pytest.fail("the block must not run")
    assert caught.value.request_sent is sent
    with HistoryCache(db, api_key=KEY) as cache:
        assert len(cache.create_intents()) == (1 if sent else 0)


def test_a_block_whose_new_id_is_another_servers_row_is_ended_not_left_unrecorded(
    db: Path,
) -> None:
    with Emulator(deterministic=True) as a, Emulator(deterministic=True) as b:
        with PdffillrClient(KEY, base_url=a.url) as on_a:
            with Session(on_a, title="on A", cache=db):
                pass
        with PdffillrClient(KEY, base_url=b.url) as on_b:
            with pytest.raises(CacheError, match="another server"), Session(on_b, cache=db):
                pytest.fail("the block must not run with a session the cache cannot hold")
        assert [s["status"] for s in b.sessions(KEY)] == ["ended"]  # ended, not leaked
        with PdffillrClient(KEY, base_url=b.url) as on_b:
            assert reap(on_b, db).outcomes[0].action == "ended"  # its intent: replayed, ended


@pytest.mark.parametrize(
    ("failures", "sent"),
    [
        ((httpx.ConnectError("refused"),) * 3, False),
        ((httpx.ReadTimeout("read"), httpx.ConnectError("a"), httpx.ConnectError("b")), True),
    ],
    ids=["never-connected", "timed-out-once"],
)
def test_the_async_client_says_the_same_of_its_create(
    failures: tuple[httpx.TransportError, ...], sent: bool
) -> None:
    queue = list(failures)

    def handler(request: httpx.Request) -> httpx.Response:
        raise queue.pop(0)

    async def no_sleep(seconds: float) -> None:
        return None

    async def create() -> None:
        async with AsyncPdffillrClient(
            KEY,
            base_url="https://api.example",
            transport=httpx.MockTransport(handler),
            sleep=no_sleep,
        ) as client:
            await client.sessions.create("t", idempotency_key="pfs_k")

    with pytest.raises(APIConnectionError) as caught:
        asyncio.run(create())
    assert caught.value.request_sent is sent and queue == []
