"""A KeyboardInterrupt at EVERY line the library executes in a with-block, then default ``reap``.

The path is a real one against the emulator: create, two sends, the block's exit (final mirror,
end, the cache told). A ``sys.settrace`` hook first counts the line events in the library's own
files (the emulator excluded: it runs in other threads, which the hook does not see), then the
block is run again once per line event N, with a KeyboardInterrupt raised at event N. After
each run the test stands in for the process exiting (what the kernel does at exit: every owner
lock this process holds is released, the cache connection the block left is closed), runs
``reap`` with its defaults, and requires: no session active upstream, no session still pending
in the cache, no create intent left, and the SIGTERM/SIGHUP handlers as they were.

A second pass is the "second Ctrl-C": the block's body is interrupted (the first Ctrl-C) and
then a KeyboardInterrupt lands at every line of the block's exit.

It runs in process, with no backoff (``sleep`` is a no-op): a few seconds per thousand points.
The numbers are printed (``-s``) and checked against a floor, so that a harness that silently
stops injecting fails.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import pdffillr_sessions
from pdffillr_sessions import HistoryCache, PdffillrClient, Session, _owner, _signals, reap
from pdffillr_sessions._owner import release_all_held_in_this_process
from pdffillr_sessions._signals import HANDLED_SIGNALS
from pdffillr_sessions.emulator import Emulator

KEY = "sk_every_line_SECRET_77aa"
BEFORE = [signal.getsignal(s) for s in HANDLED_SIGNALS]
PACKAGE = str(Path(pdffillr_sessions.__file__).resolve().parent)
EMULATOR = str(Path(PACKAGE) / "emulator")


def _ours(frame: FrameType) -> bool:
    name = frame.f_code.co_filename
    return name.startswith(PACKAGE) and not name.startswith(EMULATOR)


class Injector:
    """Counts line events in the library (from when ``armed``); raises at event ``at``."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.count = 0
        self.armed = True
        self.fired = False

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        return self.local_trace if _ours(frame) else None

    def local_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and self.armed:
            if self.count == self.at:
                self.fired = True
                raise KeyboardInterrupt(f"injected at line event {self.at}")
            self.count += 1
        return self.local_trace


class BodyInterrupt(KeyboardInterrupt):
    """The first Ctrl-C, in the block's body (the second pass)."""


def scenario(client: PdffillrClient, db: Path, injector: Injector, body_interrupt: bool) -> None:
    injector.armed = not body_interrupt
    # No automatic collection during the run: a finalizer it triggered (an earlier abandoned
    # block's lock closing) would add line events at random, and the count must be exact.
    gc.disable()
    sys.settrace(injector.global_trace)
    try:
        with Session(client, title="every line", cache=db) as s:
            s.send("one")
            s.send("two")
            if body_interrupt:
                injector.armed = True  # count (and inject) from the block's exit on
                raise BodyInterrupt
    finally:
        sys.settrace(None)
        gc.enable()


def handlers() -> list[Any]:
    return [signal.getsignal(s) for s in HANDLED_SIGNALS]


def check_after(client: PdffillrClient, emu: Emulator, db: Path, where: str) -> bool:
    """Stand in for the process exit, run default reap, require that nothing is left.

    Returns whether the exit was needed: False when the library had let go of everything
    itself (the abandoned ``Session`` collected) and no lock had to be dropped.
    """
    if list(_owner._held) or _signals._state.blocks:
        # The interrupted block's Session is in a reference cycle (its traceback): collected,
        # its owner lock and cache connection close. (Only then: a full collection per point
        # would be most of this test's time.)
        gc.collect()
    needed_exit = release_all_held_in_this_process() > 0
    report = reap(client, db)
    assert report.ok, (where, report)
    active = [s["session_id"] for s in emu.sessions(KEY) if s["status"] == "active"]
    assert active == [], (where, report)
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.pending_ends() == [], where
        assert cache.create_intents() == [], where
    # The signal handlers: put back, or (a block abandoned on its first line) ours with no
    # block left, which puts them back at the next block or signal.
    assert not _signals._state.blocks, where
    assert handlers() in (BEFORE, [_signals._handler] * len(HANDLED_SIGNALS)), where
    return needed_exit


def run_points(
    client: PdffillrClient, emu: Emulator, db: Path, body_interrupt: bool
) -> tuple[int, int, int]:
    """Inject at every line event of the path; returns (points, line events of a clean run,
    points after which a lock had to be dropped as the process exit would)."""
    counter = Injector(None)
    if body_interrupt:
        with pytest.raises(BodyInterrupt):
            scenario(client, db, counter, body_interrupt)
    else:
        scenario(client, db, counter, body_interrupt)
    total = counter.count
    assert not check_after(client, emu, db, "clean run")
    points = needed_exit = 0
    for at in range(total):
        injector = Injector(at)
        with contextlib.suppress(KeyboardInterrupt):  # the injected one, or the body's
            scenario(client, db, injector, body_interrupt)
        if not injector.fired:
            continue  # this run took a shorter path (it did not reach event `at`)
        points += 1
        where = f"{'second Ctrl-C' if body_interrupt else 'interrupt'} at line event {at}"
        needed_exit += check_after(client, emu, db, where)
    return points, total, needed_exit


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(port=0) as e:
        yield e


def test_an_interrupt_at_every_line_leaves_nothing_that_default_reap_does_not_end(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "history.db"
    assert handlers() == BEFORE
    started = time.monotonic()
    with PdffillrClient(KEY, base_url=emu.url, sleep=lambda s: None) as client:
        # Warm-up: lazy imports and first-use caches run once, outside the count.
        with Session(client, title="warm-up", cache=db) as s:
            s.send("warm")
        single, single_total, single_exit = run_points(client, emu, db, False)
        double, double_total, double_exit = run_points(client, emu, db, True)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nevery-line: {single} interrupt points (of {single_total} line events in "
            f"create + 2 sends + exit), {double} second-Ctrl-C points in the exit (of "
            f"{double_total}); a lock left held for the process exit to drop: {single_exit} "
            f"and {double_exit}; {elapsed:.1f} s"
        )
    assert single == single_total and double == double_total  # every line was reached
    assert single > 500 and double > 100  # the hook really saw the library's lines
    # Stronger than the promise: the library let go of every owner lock by itself (the
    # abandoned Session once collected); no run needed the process exit to drop one.
    assert single_exit == double_exit == 0
    assert all(s["status"] == "ended" for s in emu.sessions(KEY))
