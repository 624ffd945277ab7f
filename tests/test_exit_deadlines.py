"""A block's exit has deadlines of its own: a hung history fetch cannot keep the end from being
sent, and a hung end cannot keep the block from exiting (it is recorded end-pending).

The client here has the default ``Timeout`` (60 s per attempt, no total): without the exit's own
deadlines, each of these blocks would sit in ``__exit__`` for the server's whole 20 s delay. The
deadlines are shortened for the test (``FINAL_MIRROR_DEADLINE`` and ``END_DEADLINE`` are 5 s
and 15 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdffillr_sessions import APITimeoutError, HistoryCache, PdffillrClient, Session, reap
from pdffillr_sessions import _lifecycle as session_module
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_exit_deadlines_SECRET_31f0"
HANG = 20.0  # the server's delay: far beyond every deadline below
DEADLINE = 0.5


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        assert c.timeout.total is None and c.timeout.request == 60  # the defaults
        yield c


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


def test_a_hung_final_history_fetch_cannot_hold_the_exit_and_the_end_is_sent(
    client: PdffillrClient,
    emulator: Emulator,
    db: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(session_module, "FINAL_MIRROR_DEADLINE", DEADLINE)
    emulator.add_fault(Fault("delay", method="GET", path="/messages$", seconds=HANG, times=5))
    with Session(client, title="hung history", cache=db) as s:
        s.send("before the exit")
        leaving = time.monotonic()
    took = time.monotonic() - leaving
    assert took < DEADLINE + 2.0, took  # not the server's 20 s
    [upstream] = emulator.sessions(KEY)
    assert upstream["status"] == "ended"  # the end was sent, and confirmed
    with HistoryCache(db, api_key=KEY) as cache:
        row = cache.session(s.session_id)
        assert row is not None and row.local_state == "ended"
        assert [e.role for e in cache.history(s.session_id)] == ["user", "assistant"]
    assert any("could not mirror the final history" in r.getMessage() for r in caplog.records)


def test_a_hung_end_cannot_hold_the_exit_and_is_kept_end_pending(
    client: PdffillrClient,
    emulator: Emulator,
    db: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)
    monkeypatch.setattr(session_module, "END_DEADLINE", DEADLINE)
    emulator.add_fault(Fault("delay", method="POST", path="/end$", seconds=HANG, times=5))
    with pytest.raises(APITimeoutError), Session(client, title="hung end", cache=db) as s:
        s.send("before the exit")
        leaving = time.monotonic()
    took = time.monotonic() - leaving
    assert took < DEADLINE + 2.0, took
    with HistoryCache(db, api_key=KEY) as cache:
        assert [p.session_id for p in cache.pending_ends()] == [s.session_id]
        row = cache.session(s.session_id)
        assert row is not None and row.local_state == "end_pending"
    emulator.clear_faults()
    (outcome,) = reap(client, db).outcomes  # its block has exited: reaped at once
    assert outcome.action == "ended" and outcome.session_id == s.session_id
