"""The mirror converges to the server's history: after a ``sync`` or a block's final mirror the
cache holds exactly the server's entries in the server's order, whatever it held before; a
server list holding an id twice is refused with a clear report; a ``message_count`` that lies
does not freeze a session."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdffillr_sessions import (
    HistoryCache,
    HistoryEntry,
    PdffillrClient,
    ProtocolError,
    Session,
    sync,
)
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_convergence_0123456789"
ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


def ids_in(db: Path, session_id: str) -> list[str]:
    with HistoryCache(db, readonly=True) as cache:
        return [e.id for e in cache.history(session_id)]


def server_ids(emulator: Emulator, session_id: str) -> list[str]:
    return [e["id"] for e in emulator.history(KEY, session_id)]


def entry(entry_id: str, session_id: str = "s1") -> HistoryEntry:
    return HistoryEntry(
        id=entry_id,
        session_id=session_id,
        type="message",
        role="user",
        content=f"content of {entry_id}",
        created_at=T0,
        raw={"id": entry_id, "type": "message", "content": f"content of {entry_id}"},
    )


# -- appends out of order ------------------------------------------------------------------------


def test_appends_committed_out_of_order_are_put_in_the_servers_order_by_sync(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    sid = client.sessions.create("two writers").session_id
    sync(client, db)
    first = client.sessions.send(sid, "sent first")
    second = client.sessions.send(sid, "sent second")
    with HistoryCache(db, scope=client.key_scope) as cache:
        # Two processes' replies, committed to the cache in the other order.
        cache.append_entries(sid, second)
        cache.append_entries(sid, first)
        [row] = cache.sessions()
        assert row.provisional_order and row.entry_count == row.message_count == 4
    assert ids_in(db, sid) != server_ids(emulator, sid)  # the reproduced disorder
    report = sync(client, db)
    assert report.ok and report.histories_fetched == 1  # equal counts, but provisional
    assert ids_in(db, sid) == server_ids(emulator, sid)
    with HistoryCache(db, readonly=True) as cache:
        assert not cache.sessions()[0].provisional_order
    assert sync(client, db).histories_fetched == 0  # converged: nothing more to fetch


def test_a_blocks_final_mirror_puts_appends_in_the_servers_order(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    with Session(client, cache=db) as s:
        s.send("mine")
        # Another process sent to this session and committed its reply to the cache first.
        other = client.sessions.send(s.session_id, "theirs")
        with HistoryCache(db, scope=client.key_scope) as cache:
            with cache._write_txn() as conn:  # undo, then redo in the wrong order
                conn.execute("DELETE FROM history")
            cache.append_entries(s.session_id, other)
            cache.append_entries(s.session_id, emulator_entries(emulator, s.session_id)[:2])
    assert ids_in(db, s.session_id) == server_ids(emulator, s.session_id)


def emulator_entries(emulator: Emulator, session_id: str) -> list[HistoryEntry]:
    from pdffillr_sessions._models import parse_entries

    return parse_entries(emulator.history(KEY, session_id), session_id=session_id)


SENDER = """
import sys
from pdffillr_sessions import PdffillrClient, Session

with PdffillrClient(base_url=sys.argv[1]) as client:
    s = Session.resume(client, sys.argv[2], cache=sys.argv[3])
    for i in range(int(sys.argv[4])):
        s.send(f"{sys.argv[5]} {i}")
    s.close()
"""


def test_two_processes_resuming_one_session_converge_after_sync(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    script = tmp_path / "sender.py"
    script.write_text(SENDER, encoding="utf-8")
    sid = client.sessions.create("shared").session_id
    env = {"PDFFILLR_API_KEY": KEY, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), emulator.url, sid, str(db), "15", name], env=env
        )
        for name in ("left", "right")
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    assert len(server_ids(emulator, sid)) == 60
    report = sync(client, db)
    assert report.ok
    assert ids_in(db, sid) == server_ids(emulator, sid)


# -- whatever the cache holds ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=12),
    prefix=st.integers(min_value=0, max_value=12),
    appended=st.lists(st.integers(min_value=0, max_value=11), max_size=8),
    foreign=st.lists(st.sampled_from(["x1", "x2", "x3"]), unique=True, max_size=3),
    data=st.data(),
)
def test_a_full_mirror_converges_whatever_the_cache_held(
    tmp_path_factory: pytest.TempPathFactory,
    n: int,
    prefix: int,
    appended: list[int],
    foreign: list[str],
    data: Any,
) -> None:
    """Any mix of earlier full mirrors, appends in any order, and rows the server does not list:
    one full mirror leaves the server's entries in the server's order, then the rest."""
    server = [entry(f"e{i}") for i in range(n)]
    db = tmp_path_factory.mktemp("conv") / "c.db"
    with HistoryCache(db, scope="s") as cache:
        cache.mirror_history("s1", server[: min(prefix, n)])
        shuffled = data.draw(st.permutations([server[i] for i in appended if i < n]))
        for e in shuffled:
            cache.append_entries("s1", [e])
        for f in foreign:
            cache.append_entries("s1", [entry(f)])
        before = [e.id for e in cache.history("s1")]
        cache.mirror_history("s1", server)
        after = [e.id for e in cache.history("s1")]
        kept = [i for i in before if i not in {e.id for e in server}]
        assert after == [e.id for e in server] + kept
        assert cache.mirror_history("s1", server) == 0
        assert cache.integrity_check() == []


# -- duplicate ids ----------------------------------------------------------------------------


def test_a_history_holding_an_id_twice_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with HistoryCache(tmp_path / "c.db", scope="s") as cache:
        cache.mirror_history("s1", [entry("a"), entry("b")])
        with pytest.raises(ProtocolError, match=r"entry id 'b' twice \(at positions 1 and 3\)"):
            cache.mirror_history("s1", [entry("a"), entry("b"), entry("c"), entry("b")])
        assert [e.id for e in cache.history("s1")] == ["a", "b"]
        # Once the server's list is sound again, the mirror goes on as usual.
        assert cache.mirror_history("s1", [entry("a"), entry("b"), entry("c")]) == 1


def _duplicated_history(session_id: str) -> str:
    item = {"type": "message", "role": "user", "content": "x", "created_at": "2026-01-01T00:00:00Z"}
    return json.dumps([{**item, "id": "dup"}, {**item, "id": "other"}, {**item, "id": "dup"}])


def test_sync_reports_a_history_with_duplicate_ids_and_mirrors_the_rest(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    sids = [client.sessions.create(f"s{i}").session_id for i in range(3)]
    for sid in sids:
        client.sessions.send(sid, "hello")
    bad = sids[1]
    emulator.add_fault(
        Fault(
            "status",
            status=200,
            method="GET",
            path=f"{bad}/messages$",
            body=_duplicated_history(bad),
            content_type="application/json",
            times=2,
        )
    )
    for _ in range(2):  # every later sync reports it the same way, and breaks nothing else
        report = sync(client, db)
        assert [(f.session_id, f.stage) for f in report.failures] == [(bad, "store")]
        assert "'dup' twice" in report.failures[0].message
        for sid in sids:
            assert ids_in(db, sid) == ([] if sid == bad else server_ids(emulator, sid))
    assert sync(client, db).ok  # the server is sound again: the session converges
    assert ids_in(db, bad) == server_ids(emulator, bad)


# -- a count that lies ------------------------------------------------------------------------


def test_a_message_count_of_zero_does_not_freeze_a_session(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    sid = client.sessions.create("liar").session_id
    client.sessions.send(sid, "hello")
    lying = [dict(s, message_count=0) for s in emulator.sessions(KEY)]
    for _ in range(2):
        emulator.add_fault(
            Fault(
                "status",
                status=200,
                method="GET",
                path=r"/sessions$",
                body=json.dumps(lying),
                content_type="application/json",
            )
        )
        report = sync(client, db)
        assert report.ok and report.histories_fetched == 1
        assert ids_in(db, sid) == server_ids(emulator, sid)
    client.sessions.send(sid, "more")  # the count still says 0: the new entries still come
    emulator.add_fault(
        Fault(
            "status",
            status=200,
            method="GET",
            path=r"/sessions$",
            body=json.dumps(lying),
            content_type="application/json",
        )
    )
    sync(client, db)
    assert ids_in(db, sid) == server_ids(emulator, sid) and len(ids_in(db, sid)) == 4


# -- both backends ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same store on each backend: a file path or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "history.db")
    return str(request.getfixturevalue("pg_url"))


def test_the_mirror_converges_and_refuses_duplicates_on_both_backends(location: str) -> None:
    server = [entry(f"e{i}") for i in range(6)]
    with HistoryCache(location, scope="s") as cache:
        cache.mirror_history("s1", server[:2])
        cache.append_entries("s1", [server[4], server[5]])  # committed before...
        cache.append_entries("s1", [server[2], server[3]])  # ...the earlier reply
        assert [e.id for e in cache.history("s1")] == ["e0", "e1", "e4", "e5", "e2", "e3"]
        with pytest.raises(ProtocolError, match="'e1' twice"):
            cache.mirror_history("s1", [*server, entry("e1")])
        assert cache.mirror_history("s1", server) == 0  # nothing new: only the order is fixed
        assert [e.id for e in cache.history("s1")] == [e.id for e in server]
        assert cache.mirror_history("s1", server) == 0
        assert cache.integrity_check() == []
