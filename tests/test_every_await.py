"""A cancellation at EVERY step where an ``AsyncSession`` block awaits its I/O, then default
``reap``: ``test_every_line.py``'s promise for asyncio programs.

The path is create + two sends + the block's exit (final mirror, end, the cache told), against
the emulator. Every call the lifecycle makes to its port (``_AsyncIO``: a request, or a cache or
lock operation in the session's worker thread) is a point; at each point the test cancels:

* ``block`` task, ``before`` the call: what an outside canceller (``task.cancel()``, a timeout,
  a ``TaskGroup``) does at that moment. During the exit, which runs in a task of its own, the
  cancellation waits for the exit and is re-raised after it;
* ``block`` task, ``during`` the call (one loop iteration after it started: a request on the
  wire, an operation running in the worker thread);
* the ``current`` task, ``before`` and ``during``: during the exit, that is the exit's own task,
  which nothing but a loop shutting down cancels: the worst case.

After each run the test stands in for the process exit (any owner lock still held is released,
as the kernel would), runs ``reap`` with its defaults, and requires: no session active upstream,
nothing pending, no create intent, no block left registered for signals. And, stronger, that the
library let go of every lock by itself (no run needed the exit to drop one).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdffillr_sessions import (
    AsyncPdffillrClient,
    AsyncSession,
    HistoryCache,
    PdffillrClient,
    PdffillrError,
    _signals,
    reap,
)
from pdffillr_sessions._async_session import _AsyncIO
from pdffillr_sessions._owner import release_all_held_in_this_process
from pdffillr_sessions.emulator import Emulator

KEY = "sk_every_await_SECRET_5a6b"
PORT_CALLS = ("create", "send", "messages", "end", "local")
MODES = [("block", "before"), ("block", "during"), ("current", "before"), ("current", "during")]


class Injector:
    """Counts the port's calls; at call ``at``, cancels ``target``'s task ``when`` asked."""

    def __init__(self, at: int | None, target: str = "block", when: str = "before") -> None:
        self.at, self.target, self.when = at, target, when
        self.count = 0
        self.fired = False
        self.block_task: asyncio.Task[Any] | None = None

    def wrap(self, method: Any) -> Any:
        async def wrapper(io: Any, *args: Any, **kwargs: Any) -> Any:
            if self.count == self.at:
                self.fired = True
                task = self.block_task if self.target == "block" else asyncio.current_task()
                assert task is not None
                if self.when == "before":
                    task.cancel()
                else:
                    asyncio.get_running_loop().call_soon(task.cancel)
            self.count += 1
            return await method(io, *args, **kwargs)

        return wrapper


def scenario(emu: Emulator, db: Path, injector: Injector) -> None:
    async def block(client: AsyncPdffillrClient) -> None:
        async with AsyncSession(client, title="every await", cache=db) as s:
            await s.send("one")
            await s.send("two")

    async def main() -> None:
        async def no_sleep(seconds: float) -> None:
            return None

        async with AsyncPdffillrClient(KEY, base_url=emu.url, sleep=no_sleep) as client:
            task = asyncio.create_task(block(client))
            injector.block_task = task
            # the injected cancellation, or what an end cut short raised
            with contextlib.suppress(asyncio.CancelledError, PdffillrError):
                await task

    asyncio.run(main())


def check_after(emu: Emulator, db: Path, where: str) -> bool:
    """Stand in for the process exit, run default reap, require that nothing is left. Returns
    whether the exit had to drop a lock the library still held."""
    gc.collect()
    needed_exit = release_all_held_in_this_process() > 0
    with PdffillrClient(KEY, base_url=emu.url, sleep=lambda s: None) as client:
        report = reap(client, db)
    assert report.ok, (where, report)
    active = [s["session_id"] for s in emu.sessions(KEY) if s["status"] == "active"]
    assert active == [], (where, report)
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.pending_ends() == [], where
        assert cache.create_intents() == [], where
    assert not _signals._state.blocks and not _signals._state.tasks, where
    return needed_exit


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(port=0) as e:
        yield e


def test_a_cancellation_at_every_await_leaves_nothing_that_default_reap_does_not_end(
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "history.db"
    current = Injector(None)
    for name in PORT_CALLS:
        original = getattr(_AsyncIO, name)
        monkeypatch.setattr(
            _AsyncIO, name, lambda io, *a, __o=original, **k: current.wrap(__o)(io, *a, **k)
        )
    scenario(emu, db, current)  # a clean run: how many port calls
    total = current.count
    assert not check_after(emu, db, "clean run")
    assert [s["status"] for s in emu.sessions(KEY)] == ["ended"]
    points = needed_exit = 0
    for target, when in MODES:
        for at in range(total):
            current = Injector(at, target, when)
            scenario(emu, db, current)
            assert current.fired, (target, when, at)
            points += 1
            needed = check_after(emu, db, f"cancel {target} {when} port call {at}")
            if needed:
                print("NEEDED", target, when, at)
            needed_exit += needed
    with capsys.disabled():
        print(
            f"\nevery-await: {points} cancellation points ({total} port calls in create + 2 "
            f"sends + exit, x {len(MODES)} ways); a lock left for the process exit to drop: "
            f"{needed_exit}; {len(emu.sessions(KEY))} sessions, all ended"
        )
    assert total >= 10  # the hook really saw the lifecycle's calls
    assert needed_exit == 0
    assert all(s["status"] == "ended" for s in emu.sessions(KEY))
