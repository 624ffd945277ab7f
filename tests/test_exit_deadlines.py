"""A block's exit has deadlines of its own: a hung history fetch cannot keep the end from being
sent, and a hung end cannot keep the block from exiting (it is recorded end-pending). Both for
``Session`` and ``AsyncSession`` (``tests/_blocks.py``).

The client here has the default ``Timeout`` (60 s per attempt, no total): without the exit's own
deadlines, each of these blocks would sit in its exit for the server's whole 20 s delay. The
deadlines are shortened for the test (``FINAL_MIRROR_DEADLINE`` and ``END_DEADLINE`` are 5 s
and 15 s).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from pdffillr_sessions import APITimeoutError, HistoryCache, PdffillrClient, reap
from pdffillr_sessions import _lifecycle as lifecycle
from pdffillr_sessions.emulator import Emulator, Fault
from tests._blocks import KINDS, Block, Handle, run_block

KEY = "sk_exit_deadlines_SECRET_31f0"
HANG = 20.0  # the server's delay: far beyond every deadline below
DEADLINE = 0.5


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


def timed_block(
    kind: str, emulator: Emulator, db: Path, title: str
) -> tuple[Handle, float, object]:
    """A block that sends once; returns its handle, the seconds its exit took, and its error."""
    leaving: list[float] = []
    outcome = run_block(  # the client's default Timeout: 60 s per attempt, no total
        kind,
        Block(
            title=title, sends=["before the exit"], after=lambda s: leaving.append(time.monotonic())
        ),
        api_key=KEY,
        base_url=emulator.url,
        cache=db,
        catch=APITimeoutError,
    )
    took = time.monotonic() - leaving[0]
    assert outcome.session is not None
    return outcome.session, took, outcome.error


@pytest.mark.parametrize("kind", KINDS)
def test_a_hung_final_history_fetch_cannot_hold_the_exit_and_the_end_is_sent(
    kind: str,
    emulator: Emulator,
    db: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(lifecycle, "FINAL_MIRROR_DEADLINE", DEADLINE)
    emulator.add_fault(Fault("delay", method="GET", path="/messages$", seconds=HANG, times=5))
    s, took, error = timed_block(kind, emulator, db, "hung history")
    assert error is None
    assert took < DEADLINE + 2.0, took  # not the server's 20 s
    [upstream] = emulator.sessions(KEY)
    assert upstream["status"] == "ended"  # the end was sent, and confirmed
    with HistoryCache(db, api_key=KEY) as cache:
        row = cache.session(s.session_id)
        assert row is not None and row.local_state == "ended"
        assert [e.role for e in cache.history(s.session_id)] == ["user", "assistant"]
    assert any("could not mirror the final history" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", KINDS)
def test_a_hung_end_cannot_hold_the_exit_and_is_kept_end_pending(
    kind: str,
    emulator: Emulator,
    db: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)
    monkeypatch.setattr(lifecycle, "END_DEADLINE", DEADLINE)
    emulator.add_fault(Fault("delay", method="POST", path="/end$", seconds=HANG, times=5))
    s, took, error = timed_block(kind, emulator, db, "hung end")
    assert isinstance(error, APITimeoutError)
    assert took < DEADLINE + 2.0, took
    with HistoryCache(db, api_key=KEY) as cache:
        assert [p.session_id for p in cache.pending_ends()] == [s.session_id]
        row = cache.session(s.session_id)
        assert row is not None and row.local_state == "end_pending"
    emulator.clear_faults()
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        (outcome,) = reap(client, db).outcomes  # its block has exited: reaped at once
    assert outcome.action == "ended" and outcome.session_id == s.session_id
