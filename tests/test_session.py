"""``with Session(...)``: always ended, mirrored, and recoverable, against a live emulator."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdffillr_sessions import (
    APIConnectionError,
    AuthenticationError,
    HistoryCache,
    InternalServerError,
    NotFoundError,
    PdffillrClient,
    Session,
    SessionEndedError,
    SessionStateError,
)
from pdffillr_sessions._client import SessionsResource
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_session_tests_SECRET_9f8e7d"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "history.db"


def upstream(emulator: Emulator, session_id: str) -> dict[str, Any]:
    return next(s for s in emulator.sessions(KEY) if s["session_id"] == session_id)


def requests_to(emulator: Emulator, suffix: str) -> int:
    return sum(1 for r in emulator.request_log if r.path.endswith(suffix))


def test_block_creates_sends_mirrors_and_ends(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    with Session(client, title="Q4 Contract Review", cache=db) as s:
        assert upstream(emulator, s.session_id)["status"] == "active"
        with HistoryCache(db) as cache:  # recorded before the block ran
            row = cache.session(s.session_id)
            assert row is not None and row.local_state == "open"
        appended = s.send("Summarise the side letter")
        assert appended[0].content == "Summarise the side letter"
        with HistoryCache(db) as cache:  # mirrored at once
            assert [e.id for e in cache.history(s.session_id)] == [e.id for e in appended]
    assert s.ended and s.info.status == "ended"
    assert upstream(emulator, s.session_id)["status"] == "ended"
    with HistoryCache(db) as cache:
        row = cache.session(s.session_id)
        assert row is not None and row.local_state == "ended" and row.status == "ended"
        assert cache.pending_ends() == []


def test_the_cache_holds_exactly_what_the_server_holds_after_it_stops(
    tmp_path: Path, db: Path
) -> None:
    with Emulator() as emu, PdffillrClient(KEY, base_url=emu.url) as client:
        with Session(client, title="audit", cache=db) as s:
            s.send("first question")
            s.attach(file=b"%PDF-1.7 fake", filename="side-letter.pdf")
            s.send("second question 🧾 with emoji")
        server_entries = emu.history(KEY, s.session_id)
    # The server is gone: read offline, with no key.
    with HistoryCache(db) as cache:
        offline = cache.history(s.session_id)
    assert [dict(e.raw) for e in offline] == server_entries
    assert {e.type for e in offline} >= {"message", "document", "activity"}
    result = subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "tables", str(db), "--counts"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"table": "sessions"' in result.stdout and '"table": "history"' in result.stdout


def test_an_exception_in_the_block_propagates_unchanged_and_the_session_ends(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    boom = ValueError("the script failed")
    with pytest.raises(ValueError) as info, Session(client, cache=db) as s:
        s.send("hello")
        raise boom
    assert info.value is boom
    assert upstream(emulator, s.session_id)["status"] == "ended"
    with HistoryCache(db) as cache:
        assert len(cache.history(s.session_id)) == upstream(emulator, s.session_id)["message_count"]


def test_keyboard_interrupt_still_ends_the_session(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    with pytest.raises(KeyboardInterrupt), Session(client, cache=db) as s:
        raise KeyboardInterrupt
    assert upstream(emulator, s.session_id)["status"] == "ended"


def test_a_failed_end_after_a_successful_block_is_raised_and_kept_pending(
    client: PdffillrClient, emulator: Emulator, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pdffillr_sessions")
    with pytest.raises(InternalServerError), Session(client, cache=db) as s:
        emulator.add_fault(Fault("status", status=500, path="/end$", times=3))
    assert upstream(emulator, s.session_id)["status"] == "active"
    with HistoryCache(db) as cache:
        [pending] = cache.pending_ends()
        assert pending.session_id == s.session_id and pending.local_state == "end_pending"
        assert "InternalServerError" in (pending.local_error or "")
    assert any("reap" in r.getMessage() for r in caplog.records)


def test_a_failed_end_never_hides_the_blocks_exception(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    with pytest.raises(RuntimeError) as info, Session(client, cache=db) as s:
        emulator.add_fault(Fault("drop_before", path="/end$", times=3))
        raise RuntimeError("block failed")
    assert str(info.value) == "block failed"
    notes = getattr(info.value, "__notes__", [])
    assert any(s.session_id in n and "APIConnectionError" in n for n in notes)
    with HistoryCache(db) as cache:
        assert [p.session_id for p in cache.pending_ends()] == [s.session_id]


def test_transient_end_failures_are_retried(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    with Session(client, cache=db) as s:
        emulator.add_fault(Fault("drop_after", path="/end$", times=2))
    assert upstream(emulator, s.session_id)["status"] == "ended"
    assert s.ended


def test_send_after_the_block_raises_without_a_request(
    client: PdffillrClient, emulator: Emulator
) -> None:
    with Session(client, cache=False) as s:
        pass
    before = len(emulator.request_log)
    with pytest.raises(SessionEndedError, match="no request was sent"):
        s.send("too late")
    assert len(emulator.request_log) == before
    assert s.history() == []  # an ended session stays readable


def test_a_session_cannot_be_entered_twice(client: PdffillrClient) -> None:
    s = Session(client, cache=False)
    with s, pytest.raises(SessionStateError):
        s.__enter__()
    with pytest.raises(SessionStateError):
        s.__enter__()


def test_using_a_session_before_its_block_is_refused(client: PdffillrClient) -> None:
    s = Session(client, cache=False)
    with pytest.raises(SessionStateError):
        s.send("hi")
    with pytest.raises(SessionStateError):
        _ = s.session_id


def test_create_is_never_duplicated_when_its_reply_is_lost(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    emulator.add_fault(Fault("drop_after", method="POST", path="/sessions$", times=2))
    with Session(client, cache=db) as s:
        s.send("once")
    assert [x["session_id"] for x in emulator.sessions(KEY)] == [s.session_id]
    with HistoryCache(db) as cache:
        assert cache.create_intents() == []  # resolved by record_opened


def test_send_is_never_duplicated_when_its_reply_is_lost(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    with Session(client, cache=db) as s:
        emulator.add_fault(Fault("drop_after", method="POST", path="/messages$", times=1))
        s.send("exactly once")
        history = s.history()
    assert [e.content for e in history if e.role == "user"] == ["exactly once"]


def test_a_create_whose_every_reply_is_lost_leaves_a_recoverable_intent(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    emulator.add_fault(Fault("drop_after", method="POST", path="/sessions$", times=3))
    with pytest.raises(APIConnectionError), Session(client, title="lost", cache=db):
        pytest.fail("the block must not run")
    [created] = emulator.sessions(KEY)  # the server did create it, once
    with HistoryCache(db) as cache:
        [intent] = cache.create_intents()
        assert intent.title == "lost"
    # Replaying the create with the recorded key returns the same session, not a new one.
    again = client.sessions.create("lost", idempotency_key=intent.idempotency_key)
    assert again.session_id == created["session_id"]
    assert len(emulator.sessions(KEY)) == 1


def test_a_create_refused_by_the_server_leaves_no_intent(emulator: Emulator, db: Path) -> None:
    with Emulator(valid_keys=["only-this-key"]) as strict:
        with PdffillrClient(KEY, base_url=strict.url) as client:
            with pytest.raises(AuthenticationError), Session(client, cache=db):
                pytest.fail("the block must not run")
    with HistoryCache(db) as cache:
        assert cache.create_intents() == [] and cache.sessions() == []


def test_resume_neither_creates_nor_ends(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    existing = client.sessions.create(title="multi-day review")
    with Session.resume(client, existing.session_id, cache=db) as s:
        assert s.title == "multi-day review" and not s.ended
        s.send("continue")
    assert requests_to(emulator, "/end") == 0
    assert upstream(emulator, existing.session_id)["status"] == "active"
    assert len(emulator.sessions(KEY)) == 1
    resumed = Session.resume(client, existing.session_id, cache=False)
    resumed.end()
    assert resumed.ended and upstream(emulator, existing.session_id)["status"] == "ended"
    with pytest.raises(SessionEndedError):
        resumed.send("after end")


def test_resume_of_an_unknown_session_is_not_found(client: PdffillrClient) -> None:
    with pytest.raises(NotFoundError):
        Session.resume(client, "sess_missing", cache=False)


def test_cache_false_writes_nothing(
    client: PdffillrClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "default" / "history.db"
    monkeypatch.setenv("PDFFILLR_SESSIONS_DB", str(default))
    with Session(client, cache=False) as s:
        s.send("no mirror")
        assert s.cache is None
    assert not default.exists()


def test_cache_none_uses_the_default_path(
    client: PdffillrClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "default" / "history.db"
    monkeypatch.setenv("PDFFILLR_SESSIONS_DB", str(default))
    with Session(client) as s:
        s.send("mirrored by default")
    with HistoryCache(default) as cache:
        assert cache.session(s.session_id) is not None


def test_the_cache_is_private_and_holds_no_byte_of_the_key(
    client: PdffillrClient, db: Path
) -> None:
    with Session(client, title="secret check", cache=db) as s:
        s.send("hello")
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    locks = db.parent / "history.db.locks"  # owner locks: private, and empty once ended
    assert stat.S_IMODE(locks.stat().st_mode) == 0o700 and list(locks.iterdir()) == []
    for f in db.parent.rglob("*"):
        assert f.is_dir() or KEY.encode() not in f.read_bytes(), f


def test_a_cache_scoped_to_another_key_is_refused(client: PdffillrClient, db: Path) -> None:
    from pdffillr_sessions import ConfigurationError

    with HistoryCache(db, api_key="sk_someone_else") as other:
        with pytest.raises(ConfigurationError), Session(client, cache=other):
            pass


SIGKILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pdffillr_sessions import PdffillrClient, Session
    client = PdffillrClient(sys.argv[1], base_url=sys.argv[2])
    with Session(client, title="killed", cache=sys.argv[3]) as s:
        s.send("working")
        print(s.session_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_sigkill_inside_the_block_leaves_a_pending_end(emulator: Emulator, db: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SIGKILL_SCRIPT, KEY, emulator.url, str(db)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    session_id = proc.stdout.strip()
    assert upstream(emulator, session_id)["status"] == "active"
    with HistoryCache(db) as cache:
        assert [p.session_id for p in cache.pending_ends()] == [session_id]
        assert len(cache.history(session_id)) == 2


def test_the_cached_message_count_follows_the_mirrored_history(
    client: PdffillrClient, emulator: Emulator, db: Path
) -> None:
    with Session(client, cache=db) as s:
        s.send("one")
        with HistoryCache(db) as cache:
            row = cache.session(s.session_id)
            assert row is not None and row.message_count == row.entry_count == 2
        s.send("two")
    with HistoryCache(db) as cache:
        row = cache.session(s.session_id)
        assert row is not None
        assert (
            row.message_count
            == row.entry_count
            == upstream(emulator, s.session_id)["message_count"]
        )


def test_an_interrupt_during_the_final_mirror_still_ends_the_session(
    client: PdffillrClient, emulator: Emulator, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: Any, session_id: str) -> list[Any]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), Session(client, cache=db) as s:
        s.send("hello")
        monkeypatch.setattr(SessionsResource, "messages", interrupted)
    assert upstream(emulator, s.session_id)["status"] == "ended"
    with HistoryCache(db) as cache:
        assert cache.pending_ends() == []
