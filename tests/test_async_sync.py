"""``async_sync``: ``sync``'s twin for asyncio programs. Same arguments, same report, same rows;
the fetches run as tasks (at most ``concurrency`` at once) and the cache work in a thread of its
own, never on the event loop."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import pdffillr_sessions as pfs
from pdffillr_sessions import (
    AsyncPdffillrClient,
    ConfigurationError,
    HistoryCache,
    NotFoundError,
    PdffillrClient,
    SyncReport,
    async_sync,
    sync,
)
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_async_sync_SECRET_77d1e2"
T = TypeVar("T")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


def run(emulator: Emulator, body: Callable[[AsyncPdffillrClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async def no_sleep(seconds: float) -> None:
            return None

        async with AsyncPdffillrClient(KEY, base_url=emulator.url, sleep=no_sleep) as client:
            return await body(client)

    return asyncio.run(main())


def populate(emulator: Emulator, n: int = 12) -> list[str]:
    """``n`` sessions with 0, 1 or 2 exchanges each; the first one ended."""
    sids = []
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        for i in range(n):
            sid = client.sessions.create(f"review {i}").session_id
            for j in range(i % 3):
                client.sessions.send(sid, f"message {j} of {i}")
            sids.append(sid)
        client.sessions.end(sids[0])
    return sids


def rows(db: Path) -> dict[str, Any]:
    with HistoryCache(db, readonly=True) as cache:
        return {
            s.session_id: (s.title, s.status, [dict(e.raw) for e in cache.history(s.session_id)])
            for s in cache.sessions()
        }


def finished_threads(prefix: str) -> list[threading.Thread]:
    """Threads whose name starts with ``prefix``, once each has ended (joined, bounded)."""
    threads = [t for t in threading.enumerate() if t.name.startswith(prefix)]
    for t in threads:
        t.join(timeout=10)
    return [t for t in threads if t.is_alive()]


def test_the_same_report_and_the_same_rows_as_sync(emulator: Emulator, tmp_path: Path) -> None:
    sids = populate(emulator)
    seen: list[tuple[int, int, str]] = []
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        expected = sync(client, tmp_path / "sync.db", concurrency=4)

    report = run(
        emulator,
        lambda c: async_sync(
            c, tmp_path / "async.db", concurrency=4, progress=lambda *a: seen.append(a)
        ),
    )

    assert isinstance(report, SyncReport) and report == expected
    assert report.sessions == report.histories_fetched == 12 and report.ok
    assert rows(tmp_path / "async.db") == rows(tmp_path / "sync.db")
    assert set(rows(tmp_path / "async.db")) == set(sids)
    # One progress call per fetched history, counting up, each naming its session.
    assert [d for d, _, _ in seen] == list(range(1, 13))
    assert {t for _, t, _ in seen} == {12}
    assert sorted(s for _, _, s in seen) == sorted(sids)
    again = run(emulator, lambda c: async_sync(c, tmp_path / "async.db"))
    assert again.new == again.changed == again.histories_fetched == again.entries_added == 0
    assert again.unchanged == 12
    assert finished_threads("pdffillr-async-sync") == []


def test_unknown_ids_raise_before_anything_is_written(emulator: Emulator, db: Path) -> None:
    populate(emulator, 2)
    with pytest.raises(NotFoundError, match=r"sess_nope.*and 1 more"):
        run(emulator, lambda c: async_sync(c, db, session_ids=["sess_nope", "sess_nope2"]))
    assert not db.exists()


def test_chosen_ids_only(emulator: Emulator, db: Path) -> None:
    a, *_ = populate(emulator, 3)
    report = run(emulator, lambda c: async_sync(c, db, session_ids=[a, a]))
    assert report.sessions == 1 and set(rows(db)) == {a}


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_arguments_are_refused_before_any_request(
    emulator: Emulator, db: Path, bad: Any
) -> None:
    with pytest.raises(ConfigurationError):
        run(emulator, lambda c: async_sync(c, db, concurrency=bad))
    with pytest.raises(ConfigurationError):
        run(emulator, lambda c: async_sync(c, False))
    assert emulator.request_log == [] and not db.exists()


def test_at_most_concurrency_fetches_at_once(emulator: Emulator, db: Path) -> None:
    populate(emulator, 9)
    emulator.add_fault(Fault("delay", method="GET", path=r"/messages$", seconds=0.3, times=9))
    counting = CountingTransport()

    async def main() -> SyncReport:
        async with AsyncPdffillrClient(KEY, base_url=emulator.url, transport=counting) as client:
            return await async_sync(client, db, concurrency=3)

    report = asyncio.run(main())
    assert report.histories_fetched == 9
    assert counting.peak == 3  # three started together (each takes 0.3 s), never a fourth


class CountingTransport(httpx.AsyncHTTPTransport):
    """A real transport that counts the history requests in flight (the peak)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        counted = request.url.path.endswith("/messages")
        if counted:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            response = await super().handle_async_request(request)
            await response.aread()
            return response
        finally:
            if counted:
                self.in_flight -= 1


def test_the_cache_is_never_touched_on_the_event_loop(
    emulator: Emulator, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(emulator, 6)
    loop_thread: list[int] = []
    on_loop: list[str] = []
    for name in (
        "__init__",
        "other_servers_session_ids",
        "sessions",
        "upsert_sessions",
        "mirror_history",
        "close",
    ):
        method = getattr(HistoryCache, name)

        def spy(self: HistoryCache, *a: Any, __m: Any = method, **k: Any) -> Any:
            if threading.get_ident() in loop_thread:
                on_loop.append(__m.__name__)
            return __m(self, *a, **k)

        monkeypatch.setattr(HistoryCache, name, spy)

    async def body(client: AsyncPdffillrClient) -> SyncReport:
        loop_thread.append(threading.get_ident())
        try:
            return await async_sync(client, db)
        finally:
            loop_thread.clear()

    assert run(emulator, body).histories_fetched == 6
    assert on_loop == []


def test_a_failed_fetch_is_reported_and_the_others_are_mirrored_as_by_sync(
    emulator: Emulator, tmp_path: Path
) -> None:
    populate(emulator, 6)
    emulator.add_fault(Fault("status", status=404, method="GET", path=r"/messages$", times=2))
    report = run(emulator, lambda c: async_sync(c, tmp_path / "async.db", concurrency=3))
    assert not report.ok and report.histories_fetched == 4
    assert [(f.stage, f.error_type) for f in report.failures] == [("fetch", "NotFoundError")] * 2
    failed = {f.session_id for f in report.failures}
    for sid, (_, _, cached) in rows(tmp_path / "async.db").items():
        assert cached == ([] if sid in failed else emulator.history(KEY, sid))
    # sync, on the same server with the same faults, reports the same shape.
    emulator.add_fault(Fault("status", status=404, method="GET", path=r"/messages$", times=2))
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        expected = sync(client, tmp_path / "sync.db", concurrency=3)
    assert (expected.histories_fetched, len(expected.failures)) == (4, 2)
    assert finished_threads("pdffillr-async-sync") == []


def test_a_cancelled_sync_leaves_a_sound_cache(emulator: Emulator, db: Path) -> None:
    populate(emulator, 9)
    emulator.add_fault(Fault("delay", method="GET", path=r"/messages$", seconds=5, times=100))

    async def body(client: AsyncPdffillrClient) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await async_sync(client, db, concurrency=2)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        assert [t for t in asyncio.all_tasks() if t is not task] == []  # no fetch left behind

    run(emulator, body)
    assert len(rows(db)) == 9
    with HistoryCache(db, api_key=KEY) as cache:  # closed: writable again, and sound
        assert cache.integrity_check() == []


def test_a_shared_cache_object_works_as_for_sync(emulator: Emulator, db: Path) -> None:
    populate(emulator, 4)

    async def body(client: AsyncPdffillrClient) -> SyncReport:
        cache = await asyncio.to_thread(HistoryCache, db, api_key=KEY)
        try:
            return await async_sync(client, cache)
        finally:
            await asyncio.to_thread(cache.close)

    assert run(emulator, body).histories_fetched == 4


def test_the_same_signature_as_sync_and_exported() -> None:
    assert inspect.iscoroutinefunction(async_sync)
    ours, theirs = inspect.signature(async_sync), inspect.signature(sync)
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]
    assert ours.parameters["client"].annotation == "AsyncPdffillrClient"
    assert ours.return_annotation == theirs.return_annotation == "SyncReport"
    assert "async_sync" in pfs.__all__ and "AsyncSession" in pfs.__all__
