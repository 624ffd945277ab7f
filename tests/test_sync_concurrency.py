"""``sync`` with many fetches in flight (issue 12): the same mirror as one at a time, under random
faults; a 429 pauses the whole pool once; progress as sessions complete; the emulator's latency.

No timing of speed here (that is ``benchmarks/run.py``): the pause test only checks that no
request *starts* while the pool is paused, with margins that a slow machine cannot break.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pdffillr_sessions import HistoryCache, PdffillrClient, RetryPolicy, sync
from pdffillr_sessions._pause import SharedPause
from pdffillr_sessions.emulator import Emulator
from pdffillr_sessions.emulator._cli import emulator_command, parse_latency

KEY = "sk_sync_concurrency_SECRET_0a1b2c"


@pytest.fixture(params=["sqlite", "postgres"])
def new_location(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A fresh place to mirror to, on each backend: a file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return lambda name: str(tmp_path / f"{name}.db")
    server = request.getfixturevalue("pg_server")
    return lambda name: str(server.url(server.new_database()))


def mirror_of(where: str) -> tuple[list[Any], dict[str, list[Any]]]:
    """Everything a mirror holds that must not depend on how it was fetched: each session's
    server fields and counts, and each history's rows in order (timestamps of our own left
    out: when it was synced is not what was synced)."""
    with HistoryCache(where, readonly=True) as cache:
        sessions = [
            (s.session_id, s.title, s.status, s.message_count, s.entry_count, dict(s.raw))
            for s in cache.sessions()
        ]
        histories = {
            s[0]: [(e.id, e.type, e.role, e.content, dict(e.raw)) for e in cache.history(s[0])]
            for s in sessions
        }
    return sessions, histories


def test_a_concurrent_sync_mirrors_what_a_sequential_one_does_under_random_faults(
    new_location: Callable[[str], str],
) -> None:
    with Emulator(fault_rate=0.3, seed=12) as emu:
        for i in range(40):  # made behind the faults' back (they would hit the sends too)
            sid = emu.state.create(KEY, f"session {i}")["session_id"]
            for j in range(i % 5):
                emu.state.send(KEY, sid, f"message {j} of {i}")
            if i % 4 == 0:
                emu.state.end(KEY, sid)
        expected = {
            s["session_id"]: [e["id"] for e in emu.history(KEY, s["session_id"])]
            for s in emu.sessions(KEY)
        }
        mirrors = {}
        for name, concurrency in (("sequential", 1), ("concurrent", 8)):
            where = new_location(name)
            with PdffillrClient(
                KEY, base_url=emu.url, sleep=lambda s: None, max_retries=4
            ) as client:
                for _ in range(12):  # faults make some sessions fail; the next sync mends
                    report = sync(client, where, concurrency=concurrency)
                    if report.ok:
                        break
                assert report.ok, report.failures
            mirrors[name] = mirror_of(where)
        assert emu.stats["faults_injected"] >= 15  # the faults were really there
    assert mirrors["concurrent"] == mirrors["sequential"]
    histories = mirrors["concurrent"][1]
    assert {sid: [e[0] for e in rows] for sid, rows in histories.items()} == expected


def test_progress_reports_each_session_as_it_completes(tmp_path: Path) -> None:
    with Emulator() as emu, PdffillrClient(KEY, base_url=emu.url) as client:
        sids = []
        for i in range(10):
            sids.append(client.sessions.create(f"s{i}").session_id)
            client.sessions.send(sids[-1], "hello")
        calls: list[tuple[int, int, str]] = []
        seen_by_then: list[int] = []
        db = tmp_path / "h.db"

        def progress(done: int, total: int, sid: str) -> None:
            calls.append((done, total, sid))
            conn = sqlite3.connect(db)  # written (committed) before it is reported
            seen_by_then.append(
                conn.execute(
                    "SELECT count(*) FROM history WHERE session_id = ?", (sid,)
                ).fetchone()[0]
            )
            conn.close()

        sync(client, db, concurrency=4, progress=progress)
    assert [c[0] for c in calls] == list(range(1, 11)) and {c[1] for c in calls} == {10}
    assert sorted(c[2] for c in calls) == sorted(sids)
    assert seen_by_then == [2] * 10


# -- 429: one pause for the whole pool ----------------------------------------------------------


class Overloaded:
    """A server that lists ``n`` sessions (each with one entry) and answers the history request
    number ``at`` with a 429 asking for ``retry_after`` seconds; records when each starts."""

    def __init__(self, n: int, at: int, retry_after: float) -> None:
        self.n, self.at, self.retry_after = n, at, retry_after
        self.lock = threading.Lock()
        self.histories = 0
        self.started: list[float] = []
        self.limited_at: float | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/sdk/chat/sessions":
            return httpx.Response(200, json=[self.session(i) for i in range(self.n)])
        sid = path.split("/")[-2]
        with self.lock:
            self.started.append(time.monotonic())
            self.histories += 1
            if self.histories == self.at:
                self.limited_at = time.monotonic()
                return httpx.Response(
                    429,
                    json={"error": {"type": "rate_limited", "message": "slow down"}},
                    headers={"Retry-After": str(self.retry_after)},
                )
        entry = {
            "id": f"e-{sid}",
            "type": "message",
            "role": "user",
            "content": "hi",
            "created_at": "2026-01-01T00:00:00Z",
        }
        return httpx.Response(200, json=[entry])

    @staticmethod
    def session(i: int) -> dict[str, Any]:
        return {
            "session_id": f"sess_{i:04d}",
            "title": None,
            "status": "active",
            "message_count": 1,
            "created_at": "2026-01-01T00:00:00Z",
        }


def test_a_429_pauses_every_fetch_of_the_pool_once(tmp_path: Path) -> None:
    server = Overloaded(n=400, at=20, retry_after=0.5)
    with PdffillrClient(
        KEY, base_url="http://api.test", transport=httpx.MockTransport(server)
    ) as client:
        report = sync(client, tmp_path / "h.db", concurrency=8)
    assert report.ok and report.histories_fetched == 400
    assert server.histories == 401  # one 429, retried once: no other fetch met the limit
    assert server.limited_at is not None
    # While paused, no fetch starts: at most the 7 others already past the gate when the 429
    # arrived (a thread preempted between the gate and the send). Without the shared pause the
    # seven others go on at full speed: hundreds of requests in this window.
    paused = [t for t in server.started if server.limited_at + 0.05 < t < server.limited_at + 0.4]
    assert len(paused) <= 7, len(paused)
    resumed = [t for t in server.started if t >= server.limited_at + 0.45]
    assert len(resumed) > 100  # and then it goes on


def test_a_429_pauses_every_fetch_of_async_sync_once(tmp_path: Path) -> None:
    import asyncio

    from pdffillr_sessions import AsyncPdffillrClient, async_sync

    server = Overloaded(n=200, at=20, retry_after=0.5)

    async def main() -> Any:
        async with AsyncPdffillrClient(
            KEY, base_url="http://api.test", transport=httpx.MockTransport(server)
        ) as client:
            return await async_sync(client, tmp_path / "h.db", concurrency=8)

    report = asyncio.run(main())
    assert report.ok and report.histories_fetched == 200
    assert server.histories == 201 and server.limited_at is not None
    paused = [t for t in server.started if server.limited_at + 0.05 < t < server.limited_at + 0.4]
    assert len(paused) <= 7, len(paused)


def test_the_shared_pause_waits_once_and_again_only_when_extended() -> None:
    now = [100.0]
    slept: list[float] = []
    pause = SharedPause(clock=lambda: now[0])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pause.wait(sleep)
    assert slept == []  # nothing held: no wait
    pause.hold(2.0)
    pause.hold(1.0)  # shorter than what is held: changes nothing
    assert pause.holds == 1
    pause.wait(sleep)
    assert slept == [2.0]

    def extend_while_sleeping(seconds: float) -> None:
        sleep(seconds)
        if len(slept) == 2:
            pause.hold(3.0)  # another fetch got a 429 meanwhile

    pause.hold(1.0)
    pause.wait(extend_while_sleeping)
    assert slept == [2.0, 1.0, 3.0]
    pause.wait(lambda s: None)  # a sleep that does not sleep (tests) returns at once
    pause.hold(5.0)
    pause.wait(lambda s: None)


def test_the_pause_follows_the_retry_policy() -> None:
    """A 429 without Retry-After holds the policy's backoff; a Retry-After longer than the
    policy allows is not retried, and holds nothing."""
    from pdffillr_sessions import RateLimitError
    from pdffillr_sessions._pause import hold_for

    policy = RetryPolicy(initial_delay=0.5, max_retry_after=10)
    for retry_after, number, held in ((None, 1, 0.5), (None, 2, 1.0), (3.0, 1, 3.0), (30, 1, 0)):
        pause = SharedPause(clock=lambda: 0.0)
        exc = RateLimitError("slow down", status_code=429, retry_after=retry_after)
        hold_for(pause, exc, number, policy)
        slept: list[float] = []
        pause.wait(slept.append)
        assert slept == ([held] if held else [])


# -- the emulator's latency ---------------------------------------------------------------------


def test_the_emulator_answers_after_its_latency_and_in_parallel() -> None:
    with Emulator(latency=0.3) as emu:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=emu.url, headers=headers) as http:
            started = time.monotonic()
            assert http.get("/_emulator/stats").status_code == 200  # control: at once
            control = time.monotonic() - started
            started = time.monotonic()
            assert http.get("/v1/sdk/chat/sessions").status_code == 200
            assert time.monotonic() - started >= 0.3
        assert control < 0.3

        def get(_: int) -> int:
            with httpx.Client(base_url=emu.url, headers=headers) as own:
                return own.get("/v1/sdk/chat/sessions").status_code

        from concurrent.futures import ThreadPoolExecutor

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(get, range(8))) == [200] * 8
        assert time.monotonic() - started < 8 * 0.3  # waited together, not in turn
    with pytest.raises(ValueError):
        Emulator(latency=-1)


def test_the_latency_option_reads_as_people_type_it() -> None:
    assert parse_latency("50ms") == pytest.approx(0.05)
    assert parse_latency("0.2s") == pytest.approx(0.2)
    assert parse_latency(" 1.5 ") == 1.5
    for bad in ("fast", "-1ms", "nan", "100s", "1e400"):
        with pytest.raises(ValueError):
            parse_latency(bad)
    result = CliRunner().invoke(emulator_command, ["--latency", "soon"])
    assert result.exit_code == 2 and "latency like 50ms" in result.output
    assert "--latency DURATION" in CliRunner().invoke(emulator_command, ["--help"]).output


def test_the_emulator_command_serves_with_its_latency(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "pdffillr_sessions.emulator", "--port", "0", "--latency", "200ms"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        started = time.monotonic()
        answer = httpx.get(f"{url}/v1/sdk/chat/sessions", headers={"Authorization": "Bearer k"})
        assert answer.status_code == 200 and json.loads(answer.text) == []
        assert time.monotonic() - started >= 0.2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
