"""``async with AsyncSession(...)``: ``Session``'s guarantees in asyncio programs, against a live
emulator. Cancellation is an exit like any other (``task.cancel()``, ``asyncio.timeout``, a
failing ``TaskGroup`` sibling), and the event loop never waits on SQLite.

(The fault matrix, the crash windows, the soak and the exit deadlines run for both classes in
their own modules; signals are in ``test_signals.py``.)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pdffillr_sessions import (
    APIConnectionError,
    AsyncPdffillrClient,
    AsyncSession,
    AuthenticationError,
    ClientClosedError,
    HistoryCache,
    InternalServerError,
    NotFoundError,
    PdffillrClient,
    SessionEndedError,
    SessionStateError,
    reap,
)
from pdffillr_sessions import _lifecycle as lifecycle
from pdffillr_sessions._owner import OwnerLock, Probe, lock_dir
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_async_session_SECRET_4b3a29"
T = TypeVar("T")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "history.db"


def run(emulator: Emulator, body: Callable[[AsyncPdffillrClient], Awaitable[T]]) -> T:
    """``body(client)`` in a fresh event loop, with a client that never sleeps between retries."""

    async def main() -> T:
        async def no_sleep(seconds: float) -> None:
            return None

        async with AsyncPdffillrClient(KEY, base_url=emulator.url, sleep=no_sleep) as client:
            return await body(client)

    return asyncio.run(main())


def upstream(emulator: Emulator, session_id: str) -> dict[str, Any]:
    return next(s for s in emulator.sessions(KEY) if s["session_id"] == session_id)


def assert_ended_and_recorded(emulator: Emulator, db: Path, *sids: str) -> None:
    """Ended upstream, recorded ended, the cache equal to the server, nothing left for reap."""
    for sid in sids:
        assert upstream(emulator, sid)["status"] == "ended"
    with HistoryCache(db, api_key=KEY) as cache:
        for sid in sids:
            row = cache.session(sid)
            assert row is not None and row.local_state == "ended" and row.status == "ended"
            assert [dict(e.raw) for e in cache.history(sid)] == emulator.history(KEY, sid)
        assert cache.pending_ends() == [] and cache.create_intents() == []
    assert list(lock_dir(db).iterdir()) == []  # every owner lock released, its file deleted


# -- the block ---------------------------------------------------------------------------------


def test_block_creates_sends_mirrors_and_ends(emulator: Emulator, db: Path) -> None:
    async def body(client: AsyncPdffillrClient) -> AsyncSession:
        async with AsyncSession(client, title="Q4 Contract Review", cache=db) as s:
            assert upstream(emulator, s.session_id)["status"] == "active"
            with HistoryCache(db) as cache:  # recorded before the block ran
                row = cache.session(s.session_id)
                assert row is not None and row.local_state == "open" and row.owner_lock
            appended = await s.send("Summarise the side letter")
            with HistoryCache(db) as cache:  # mirrored at once
                assert [e.id for e in cache.history(s.session_id)] == [e.id for e in appended]
            await s.attach(file=b"%PDF-1.7 fake", filename="side-letter.pdf")
            assert [e.id for e in await s.history()] == [
                e["id"] for e in emulator.history(KEY, s.session_id)
            ]
            assert s.title == "Q4 Contract Review" and not s.ended and s.cache is not None
        return s

    s = run(emulator, body)
    assert s.ended and s.info.status == "ended" and s.cache is None
    assert "AsyncSession(session_id=" in repr(s) and KEY not in repr(s)
    assert_ended_and_recorded(emulator, db, s.session_id)
    # Every cache and lock operation ran in the session's worker thread, which ends (once its
    # queue, empty by now, is done: joined here, bounded).
    workers = [t for t in threading.enumerate() if t.name.startswith("pdffillr-session-cache")]
    for t in workers:
        t.join(timeout=10)
    assert not [t for t in workers if t.is_alive()]


def test_an_exception_in_the_block_propagates_unchanged_and_the_session_ends(
    emulator: Emulator, db: Path
) -> None:
    boom = ValueError("the script failed")
    sessions: list[AsyncSession] = []

    async def body(client: AsyncPdffillrClient) -> None:
        async with AsyncSession(client, cache=db) as s:
            sessions.append(s)
            await s.send("hello")
            raise boom

    with pytest.raises(ValueError) as info:
        run(emulator, body)
    assert info.value is boom and not getattr(boom, "__notes__", None)
    assert_ended_and_recorded(emulator, db, sessions[0].session_id)


def test_a_failed_end_after_a_successful_block_is_raised_and_kept_pending(
    emulator: Emulator, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pdffillr_sessions")
    sessions: list[AsyncSession] = []

    async def body(client: AsyncPdffillrClient) -> None:
        async with AsyncSession(client, cache=db) as s:
            sessions.append(s)
            emulator.add_fault(Fault("status", status=500, path="/end$", times=3))

    with pytest.raises(InternalServerError):
        run(emulator, body)
    [s] = sessions
    assert upstream(emulator, s.session_id)["status"] == "active"
    with HistoryCache(db) as cache:
        [pending] = cache.pending_ends()
        assert pending.session_id == s.session_id and pending.local_state == "end_pending"
        assert "InternalServerError" in (pending.local_error or "")
    assert any("reap" in r.getMessage() for r in caplog.records)
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        (outcome,) = reap(client, db).outcomes  # its block has exited: reaped at once
    assert outcome.action == "ended" and outcome.owner == "dead"


def test_a_failed_end_never_hides_the_blocks_exception(emulator: Emulator, db: Path) -> None:
    sessions: list[AsyncSession] = []

    async def body(client: AsyncPdffillrClient) -> None:
        async with AsyncSession(client, cache=db) as s:
            sessions.append(s)
            emulator.add_fault(Fault("drop_before", path="/end$", times=3))
            raise RuntimeError("block failed")

    with pytest.raises(RuntimeError) as info:
        run(emulator, body)
    assert str(info.value) == "block failed"
    notes = getattr(info.value, "__notes__", [])
    assert any(sessions[0].session_id in n and "APIConnectionError" in n for n in notes)
    with HistoryCache(db) as cache:
        assert [p.session_id for p in cache.pending_ends()] == [sessions[0].session_id]


def test_send_after_the_block_raises_without_a_request(emulator: Emulator) -> None:
    async def body(client: AsyncPdffillrClient) -> None:
        async with AsyncSession(client, cache=False) as s:
            pass
        before = len(emulator.request_log)
        with pytest.raises(SessionEndedError, match="no request was sent"):
            await s.send("too late")
        assert len(emulator.request_log) == before
        assert await s.history() == []  # an ended session stays readable

    run(emulator, body)


def test_a_session_is_entered_once_and_used_only_inside(emulator: Emulator) -> None:
    async def body(client: AsyncPdffillrClient) -> None:
        s = AsyncSession(client, cache=False)
        with pytest.raises(SessionStateError):
            await s.send("hi")
        with pytest.raises(SessionStateError):
            _ = s.session_id
        async with s:
            with pytest.raises(SessionStateError):
                await s.__aenter__()
        with pytest.raises(SessionStateError):
            await s.__aenter__()

    run(emulator, body)
    assert len(emulator.sessions(KEY)) == 1


def test_create_and_send_are_never_duplicated_when_their_replies_are_lost(
    emulator: Emulator, db: Path
) -> None:
    emulator.add_fault(Fault("drop_after", method="POST", path="/sessions$", times=2))

    async def body(client: AsyncPdffillrClient) -> str:
        async with AsyncSession(client, cache=db) as s:
            emulator.add_fault(Fault("drop_after", method="POST", path="/messages$", times=2))
            await s.send("exactly once")
        return s.session_id

    sid = run(emulator, body)
    assert [x["session_id"] for x in emulator.sessions(KEY)] == [sid]
    assert [e["content"] for e in emulator.history(KEY, sid) if e["role"] == "user"] == [
        "exactly once"
    ]
    assert_ended_and_recorded(emulator, db, sid)  # the final mirror caught the lost reply
    keys = {r.idempotency_key for r in emulator.request_log if r.method == "POST"}
    assert None in keys and len(keys) == 3  # the end has none; one key per create and send


def test_a_create_whose_every_reply_is_lost_leaves_an_intent_default_reap_resolves(
    emulator: Emulator, db: Path
) -> None:
    emulator.add_fault(Fault("drop_after", method="POST", path="/sessions$", times=3))

    async def body(client: AsyncPdffillrClient) -> None:
        async with AsyncSession(client, title="lost", cache=db):
            pytest.fail("the block must not run")

    with pytest.raises(APIConnectionError):
        run(emulator, body)
    [created] = emulator.sessions(KEY)  # the server did create it, once
    with HistoryCache(db) as cache:
        [intent] = cache.create_intents()
        assert intent.title == "lost"
        with Probe(db, intent.owner_lock) as probe:
            assert probe.liveness == "dead"  # the block has exited: reap need not wait
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        assert reap(client, db).ok
    assert [(s["session_id"], s["status"]) for s in emulator.sessions(KEY)] == [
        (created["session_id"], "ended")
    ]


def test_a_create_refused_by_the_server_leaves_no_intent(db: Path) -> None:
    with Emulator(valid_keys=["only-this-key"]) as strict:

        async def body(client: AsyncPdffillrClient) -> None:
            async with AsyncSession(client, cache=db):
                pytest.fail("the block must not run")

        with pytest.raises(AuthenticationError):
            run(strict, body)
    with HistoryCache(db) as cache:
        assert cache.create_intents() == [] and cache.sessions() == []
    assert list(lock_dir(db).iterdir()) == []


def test_a_closed_client_raises_a_typed_error_and_leaves_no_intent(
    emulator: Emulator, db: Path
) -> None:
    async def main() -> None:
        async with AsyncPdffillrClient(KEY, base_url=emulator.url) as client:
            pass
        async with AsyncSession(client, cache=db):
            pytest.fail("the block must not run")

    with pytest.raises(ClientClosedError):
        asyncio.run(main())
    with HistoryCache(db) as cache:
        assert cache.create_intents() == []
    assert emulator.request_log == []


def test_resume_neither_creates_nor_ends(emulator: Emulator, db: Path) -> None:
    async def body(client: AsyncPdffillrClient) -> None:
        existing = await client.sessions.create(title="multi-day review")
        async with await AsyncSession.resume(client, existing.session_id, cache=db) as s:
            assert s.title == "multi-day review" and not s.ended
            await s.send("continue")
        assert upstream(emulator, existing.session_id)["status"] == "active"
        assert not any(r.path.endswith("/end") for r in emulator.request_log)
        resumed = await AsyncSession.resume(client, existing.session_id, cache=db)
        await resumed.end()
        assert resumed.ended
        with pytest.raises(SessionEndedError):
            await resumed.send("after end")
        await resumed.aclose()
        assert resumed.cache is None
        with pytest.raises(NotFoundError):
            await AsyncSession.resume(client, "sess_missing", cache=False)

    run(emulator, body)
    [only] = emulator.sessions(KEY)
    assert only["status"] == "ended"
    with HistoryCache(db) as cache:
        row = cache.session(only["session_id"])
        assert row is not None and row.status == "ended"
        assert len(cache.history(only["session_id"])) == 2


def test_a_session_ended_by_someone_else_is_recorded_ended_with_its_history(
    emulator: Emulator, db: Path
) -> None:
    async def body(client: AsyncPdffillrClient) -> str:
        async with AsyncSession(client, cache=db) as s:
            await s.send("one")
            await client.sessions.end(s.session_id)  # another script ends it
            with pytest.raises(SessionEndedError):
                await s.send("two")
            assert s.ended
        return s.session_id

    sid = run(emulator, body)
    assert_ended_and_recorded(emulator, db, sid)


# -- cancellation is an exit like any other ------------------------------------------------------


def test_task_cancel_ends_the_session_and_the_cancellation_propagates(
    emulator: Emulator, db: Path
) -> None:
    sessions: list[AsyncSession] = []

    async def body(client: AsyncPdffillrClient) -> None:
        working = asyncio.Event()

        async def worker() -> None:
            async with AsyncSession(client, title="cancelled", cache=db) as s:
                sessions.append(s)
                await s.send("working")
                working.set()
                await asyncio.Event().wait()  # until cancelled
            pytest.fail("the cancellation must propagate out of the block")

        task = asyncio.create_task(worker())
        await working.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    run(emulator, body)
    assert_ended_and_recorded(emulator, db, sessions[0].session_id)


def test_asyncio_timeout_around_the_block_ends_the_session(emulator: Emulator, db: Path) -> None:
    sessions: list[AsyncSession] = []

    async def body(client: AsyncPdffillrClient) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                async with AsyncSession(client, title="timed out", cache=db) as s:
                    sessions.append(s)
                    await s.send("working")
                    await asyncio.sleep(30)
        # Structured concurrency still works: the timeout recognised its own cancellation and
        # no cancellation request is left on the task.
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0

    run(emulator, body)
    assert_ended_and_recorded(emulator, db, sessions[0].session_id)


def test_a_failing_taskgroup_sibling_ends_the_session(emulator: Emulator, db: Path) -> None:
    sessions: list[AsyncSession] = []
    sibling_error = LookupError("a sibling failed")

    async def body(client: AsyncPdffillrClient) -> None:
        working = asyncio.Event()

        async def block() -> None:
            async with AsyncSession(client, title="sibling failed", cache=db) as s:
                sessions.append(s)
                await s.send("working")
                working.set()
                await asyncio.sleep(30)

        async def sibling() -> None:
            await working.wait()
            raise sibling_error

        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.TaskGroup() as group:
                group.create_task(block())
                group.create_task(sibling())
        # Only the sibling's error: the block's task was cancelled, not failed.
        assert info.value.exceptions == (sibling_error,)

    run(emulator, body)
    assert_ended_and_recorded(emulator, db, sessions[0].session_id)


def test_a_cancellation_during_the_exit_waits_for_the_end_then_propagates(
    emulator: Emulator, db: Path
) -> None:
    """The block succeeded; the task is cancelled while its exit is ending the session (the
    end is slow upstream). The end is not cut short: it completes, is recorded, and then the
    task ends cancelled."""
    emulator.add_fault(Fault("delay", method="POST", path="/end$", seconds=0.5))
    sessions: list[AsyncSession] = []

    async def body(client: AsyncPdffillrClient) -> None:
        async def worker() -> None:
            async with AsyncSession(client, cache=db) as s:
                sessions.append(s)
                await s.send("working")
            pytest.fail("the cancellation must propagate")

        task = asyncio.create_task(worker())
        while emulator.pending_faults:
            await asyncio.sleep(0.01)  # until the end is in flight (it took the delay)
        task.cancel()
        task.cancel()  # twice: a second request waits for the end as well
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    run(emulator, body)
    assert_ended_and_recorded(emulator, db, sessions[0].session_id)


def test_a_hung_end_during_a_cancellation_is_bounded_and_kept_end_pending(
    emulator: Emulator, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "END_DEADLINE", 0.5)
    emulator.add_fault(Fault("delay", method="POST", path="/end$", seconds=20, times=5))
    sessions: list[AsyncSession] = []

    async def body(client: AsyncPdffillrClient) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                async with AsyncSession(client, cache=db) as s:
                    sessions.append(s)
                    await asyncio.sleep(30)

    loop_time = asyncio.run(_elapsed(lambda: asyncio.to_thread(run, emulator, body)))
    assert loop_time < 0.3 + 0.5 + 2.0  # not the server's 20 s
    emulator.clear_faults()
    with HistoryCache(db) as cache:
        [pending] = cache.pending_ends()
        assert pending.session_id == sessions[0].session_id
        assert "APITimeoutError" in (pending.local_error or "")
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        (outcome,) = reap(client, db).outcomes
    assert outcome.action == "ended" and outcome.owner == "dead"


async def _elapsed(make: Callable[[], Awaitable[Any]]) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await make()
    return loop.time() - started


def test_a_cancellation_during_the_create_leaves_an_intent_default_reap_resolves(
    emulator: Emulator, db: Path
) -> None:
    """As with Ctrl-C during ``Session.__enter__``: the create may have reached the server, so
    the intent stays, and the block's lock is released: reap replays and ends it at once."""
    emulator.add_fault(Fault("delay", method="POST", path="/sessions$", seconds=0.5))

    async def body(client: AsyncPdffillrClient) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                async with AsyncSession(client, title="cut short", cache=db):
                    pytest.fail("the block must not run")

    run(emulator, body)
    with HistoryCache(db) as cache:
        [intent] = cache.create_intents()
        with Probe(db, intent.owner_lock) as probe:
            assert probe.liveness == "dead"
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        report = reap(client, db)
    assert report.ok and [o.action for o in report.outcomes] == ["ended"]
    [created] = emulator.sessions(KEY)  # the replay found the one the server made
    assert created["status"] == "ended" and created["title"] == "cut short"
    with HistoryCache(db) as cache:
        assert cache.create_intents() == [] and cache.pending_ends() == []


# -- the event loop never waits on SQLite -----------------------------------------------------


def test_a_cache_write_held_up_by_sqlite_never_blocks_the_event_loop(
    emulator: Emulator, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds the cache's write lock, so the session's write of a send's
    entries waits (SQLite's busy timeout is 30 s). Meanwhile a ticker task must keep ticking:
    the test lets the lock go only after it ticked 100 times while the write was waiting. Were
    the write on the loop, nothing could tick until it gave up, and the test would fail (the
    send would be done before the lock was released). No clock is read."""
    started = threading.Event()
    writers: list[int] = []
    append = HistoryCache.append_entries

    def spying_append(self: HistoryCache, session_id: str, entries: Any) -> int:
        writers.append(threading.get_ident())
        started.set()
        return append(self, session_id, entries)

    monkeypatch.setattr(HistoryCache, "append_entries", spying_append)

    async def body(client: AsyncPdffillrClient) -> str:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        async with AsyncSession(client, cache=db) as s:
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held
            try:
                ticking = asyncio.create_task(ticker())
                sending = asyncio.create_task(s.send("while the cache is locked"))
                while not started.is_set():
                    await asyncio.sleep(0.001)
                first = ticks
                while ticks < first + 100:
                    await asyncio.sleep(0)
                assert not sending.done()  # the write is still waiting for the lock
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            entries = await sending
            ticking.cancel()
            with HistoryCache(db) as cache:  # mirrored, once the lock was free
                assert [e.id for e in cache.history(s.session_id)] == [e.id for e in entries]
            assert writers and threading.get_ident() not in writers
        return s.session_id

    sid = run(emulator, body)
    assert_ended_and_recorded(emulator, db, sid)


def test_a_send_cancelled_during_its_cache_write_leaves_its_entries_on_disk(
    emulator: Emulator, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write of a send's entries is held up by another connection's write lock; the task
    is cancelled meanwhile. The cancellation waits for the write (it is never abandoned
    halfway), then propagates: the entries the server appended are on disk."""
    started = threading.Event()
    append = HistoryCache.append_entries

    def spying_append(self: HistoryCache, session_id: str, entries: Any) -> int:
        started.set()
        return append(self, session_id, entries)

    monkeypatch.setattr(HistoryCache, "append_entries", spying_append)
    sessions: list[AsyncSession] = []
    seen: list[str] = []

    async def body(client: AsyncPdffillrClient) -> None:
        holder = None

        async def worker() -> None:
            nonlocal holder
            async with AsyncSession(client, cache=db) as s:
                sessions.append(s)
                holder = sqlite3.connect(db, isolation_level=None)
                holder.execute("BEGIN IMMEDIATE")
                try:
                    await s.send("cancelled while mirrored")
                except asyncio.CancelledError:  # the cache as the cancellation leaves the send
                    with HistoryCache(db) as cache:
                        seen.extend(e.content for e in cache.history(s.session_id))
                    raise

        task = asyncio.create_task(worker())
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        for _ in range(50):
            await asyncio.sleep(0)
        assert not task.done()  # waiting for its write, which waits for the lock
        assert holder is not None
        holder.execute("ROLLBACK")
        holder.close()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(emulator, body)
    assert seen[:1] == ["cancelled while mirrored"] and len(seen) == 2  # the message, the reply
    assert_ended_and_recorded(emulator, db, sessions[0].session_id)


@pytest.mark.parametrize("cache", ["per_session", "shared", "none"])
def test_fifty_blocks_at_once_each_cache_the_servers_history_in_order(
    emulator: Emulator,
    db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cache: str,
) -> None:
    """50 blocks in one loop, against a server with latency (every request waits 20 ms), each
    sending four messages (every fifth also attaching): each cached history equals the
    server's, in the server's order, and no cache method ever ran on the loop's thread, so the
    cache cannot have blocked the loop. Each block has its cache file open (``per_session``), or
    all share one ``HistoryCache`` (``shared``); ``none`` mirrors nothing, as a baseline.

    The loop's lag is measured and printed, next to the baseline's, not asserted: it is mostly
    the loop's own HTTP work and the in-process emulator's threads, and a shared CI machine's
    scheduling is no property of this library."""
    emulator.add_fault(Fault("delay", seconds=0.02, times=100_000))
    loop_threads: set[int] = set()
    on_loop: list[str] = []
    for name in SPIED:
        monkeypatch.setattr(
            HistoryCache, name, _spy(getattr(HistoryCache, name), on_loop, loop_threads)
        )
    for name in ("check", "release"):  # the owner lock's file (a PostgreSQL one asks a server)
        monkeypatch.setattr(OwnerLock, name, _spy(getattr(OwnerLock, name), on_loop, loop_threads))

    async def body(client: AsyncPdffillrClient) -> tuple[list[str], list[float]]:
        loop = asyncio.get_running_loop()
        loop_threads.add(threading.get_ident())
        lags: list[float] = []

        async def probe() -> None:
            while True:
                before = loop.time()
                await asyncio.sleep(0.001)
                lags.append(loop.time() - before - 0.001)

        async def block(i: int, where: Any) -> str:
            async with AsyncSession(client, title=f"block {i}", cache=where) as s:
                for j in range(4):
                    await s.send(f"block {i} message {j}")
                if i % 5 == 0:
                    await s.attach(file=b"%PDF-1.7 x", filename=f"doc-{i}.pdf")
            return s.session_id

        probing = asyncio.create_task(probe())
        # (a shared cache is opened and closed off the loop too, as an asyncio program should)
        one = await asyncio.to_thread(HistoryCache, db, api_key=KEY) if cache == "shared" else None
        where = {"per_session": db, "shared": one, "none": False}[cache]
        try:
            sids = await asyncio.gather(*(block(i, where) for i in range(50)))
        finally:
            if one is not None:
                await asyncio.to_thread(one.close)
            probing.cancel()
        loop_threads.clear()
        return sids, lags

    sids, lags = run(emulator, body)
    assert len(set(sids)) == 50
    assert on_loop == []
    assert [s["status"] for s in emulator.sessions(KEY)] == ["ended"] * 50
    if cache != "none":
        assert_ended_and_recorded(emulator, db, *sids)
        with HistoryCache(db, api_key=KEY) as opened:
            for i, sid in enumerate(sids):
                sent = [e.content for e in opened.history(sid) if e.role == "user"]
                assert sent == [f"block {i} message {j}" for j in range(4)]
    lags.sort()
    with capsys.disabled():
        print(
            f"\n50 AsyncSession blocks, cache {cache}: loop lag p50 "
            f"{lags[len(lags) // 2] * 1000:.1f} ms, p99 {lags[int(len(lags) * 0.99)] * 1000:.1f}"
            f" ms, max {lags[-1] * 1000:.1f} ms over {len(lags)} probes; cache calls on the "
            "loop's thread: 0"
        )


#: Every HistoryCache method a session calls.
SPIED = (
    "__init__",
    "for_scope",
    "acquire_owner",
    "record_create_intent",
    "forget_create_intent",
    "record_opened",
    "upsert_sessions",
    "append_entries",
    "mirror_history",
    "mark_end_pending",
    "mark_ended",
    "close",
)


def _spy(method: Any, on_loop: list[str], loop_threads: set[int]) -> Any:
    def spy(self: HistoryCache, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() in loop_threads:
            on_loop.append(method.__name__)
        return method(self, *args, **kwargs)

    return spy


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0) as emu:
        yield emu
