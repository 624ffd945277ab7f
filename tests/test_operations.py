"""The library's operations (``sync``, ``reap``, ``end_sessions``) called from Python, and the
pure decisions they share with the CLI (``plan_sync``, ``decide_session``, ``decide_intent``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

import pdffillr_sessions as pfs
from pdffillr_sessions import (
    CachedSession,
    EndReport,
    HistoryCache,
    NotFoundError,
    PdffillrClient,
    ReapReport,
    Session,
    SyncReport,
    end_sessions,
    reap,
    sync,
)
from pdffillr_sessions._owner import Liveness, OwnerLock, lock_dir
from pdffillr_sessions._reap import decide_intent, decide_session
from pdffillr_sessions._sync import plan_sync
from pdffillr_sessions.cache import CreateIntent
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Fault

KEY = "sk_operations_0123456789SECRET"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(emulator: Any) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


def _cached(db: Path) -> dict[str, CachedSession]:
    with HistoryCache(db, readonly=True) as cache:
        return {s.session_id: s for s in cache.sessions()}


# -- sync --------------------------------------------------------------------------------------


def test_sync_returns_a_typed_report_and_mirrors_every_history(
    client: PdffillrClient, db: Path
) -> None:
    sids = []
    for i in range(12):
        sid = client.sessions.create(f"review {i}").session_id
        for j in range(i % 3):
            client.sessions.send(sid, f"message {j} of {i}")
        sids.append(sid)
    client.sessions.end(sids[0])
    seen: list[tuple[int, int, str]] = []

    report = sync(client, db, concurrency=4, progress=lambda *a: seen.append(a))

    assert isinstance(report, SyncReport)
    assert report == SyncReport(
        sessions=12,
        new=12,
        changed=0,
        unchanged=0,
        histories_fetched=12,  # every new session: a count of 0 is not taken on trust
        entries_added=sum(2 * (i % 3) for i in range(12)),
        not_listed_upstream=(),
    )
    assert report.ok
    # One progress call per fetched history, counting up, each naming its session.
    assert [d for d, _, _ in seen] == list(range(1, 13))
    assert {t for _, t, _ in seen} == {12}
    assert sorted(s for _, _, s in seen) == sorted(sids)
    cached = _cached(db)
    assert cached[sids[0]].status == "ended"
    with HistoryCache(db, readonly=True) as cache:
        for sid in sids:
            assert [e.id for e in cache.history(sid)] == [
                e.id for e in client.sessions.messages(sid)
            ]

    again = sync(client, db)
    assert again.new == again.changed == again.histories_fetched == again.entries_added == 0
    assert again.unchanged == 12


def test_concurrent_and_sequential_sync_mirror_the_same_rows(
    client: PdffillrClient, tmp_path: Path
) -> None:
    for i in range(9):
        sid = client.sessions.create(f"s{i}").session_id
        for j in range(i):
            client.sessions.send(sid, f"m{j}")
    one, many = tmp_path / "one.db", tmp_path / "many.db"
    assert sync(client, one, concurrency=1) == sync(client, many, concurrency=8)
    for path_a, path_b in [(one, many)]:
        with HistoryCache(path_a, readonly=True) as a, HistoryCache(path_b, readonly=True) as b:
            for s in a.sessions():
                assert a.history(s.session_id) == b.history(s.session_id)
            assert len(a.sessions()) == len(b.sessions()) == 9


def test_sync_fetches_in_parallel(client: PdffillrClient, emulator: Any, db: Path) -> None:
    """With 8 in flight, 8 histories that each take 0.3 s are fetched together, not in turn."""
    for i in range(8):
        sid = client.sessions.create(f"slow {i}").session_id
        client.sessions.send(sid, "hello")
    emulator.add_fault(Fault("delay", method="GET", path=r"/messages$", seconds=0.3, times=8))
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    messages = client.sessions.messages

    def counting(session_id: str) -> list[pfs.HistoryEntry]:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return messages(session_id)
        finally:
            with lock:
                in_flight -= 1

    client.sessions.messages = counting  # type: ignore[method-assign]
    report = sync(client, db, concurrency=8)
    assert report.histories_fetched == 8
    assert peak >= 4  # sequential fetching would never exceed 1


def test_sync_of_unknown_ids_raises_before_writing(client: PdffillrClient, db: Path) -> None:
    client.sessions.create("known")
    with pytest.raises(NotFoundError, match=r"sess_nope.*and 1 more"):
        sync(client, db, session_ids=["sess_nope", "sess_nope2"])
    assert not db.exists()


def test_sync_of_chosen_ids_only(client: PdffillrClient, db: Path) -> None:
    a = client.sessions.create("a").session_id
    client.sessions.create("b")
    report = sync(client, db, session_ids=[a, a])
    assert report.sessions == 1 and set(_cached(db)) == {a}


def test_a_failed_fetch_is_reported_and_every_other_session_is_still_mirrored(
    client: PdffillrClient, emulator: Any, db: Path
) -> None:
    sids = [client.sessions.create(f"s{i}").session_id for i in range(5)]
    for sid in sids:
        client.sessions.send(sid, "hi")
    emulator.add_fault(
        Fault("status", status=404, method="GET", path=f"{sids[2]}/messages$", times=100)
    )
    report = sync(client, db, concurrency=3)
    assert [(f.session_id, f.stage, f.error_type) for f in report.failures] == [
        (sids[2], "fetch", "NotFoundError")
    ]
    assert not report.ok and report.histories_fetched == 4
    cached = _cached(db)
    assert len(cached) == 5
    assert {sid: cached[sid].entry_count for sid in sids} == {
        sid: 0 if sid == sids[2] else 2 for sid in sids
    }
    assert not [t for t in threading.enumerate() if t.name.startswith("pdffillr-sync")]
    # The next sync, with the server mended, fetches what it could not (its row is unmirrored).
    emulator.clear_faults()
    again = sync(client, db)
    assert again.ok and again.histories_fetched == 1 and _cached(db)[sids[2]].entry_count == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_sync_refuses_a_bad_concurrency(client: PdffillrClient, db: Path, bad: Any) -> None:
    with pytest.raises(pfs.ConfigurationError):
        sync(client, db, concurrency=bad)
    with pytest.raises(pfs.ConfigurationError):
        sync(client, False)


def test_plan_sync_fetches_what_the_cache_cannot_prove_it_holds() -> None:
    def info(sid: str, count: int, status: str = "active", title: str = "t", **raw: Any) -> Any:
        return pfs.SessionInfo(
            session_id=sid,
            title=title,
            status=status,  # type: ignore[arg-type]
            message_count=count,
            created_at=NOW,
            raw={
                "session_id": sid,
                "title": title,
                "message_count": count,
                "status": status,
                **raw,
            },
        )

    def cached(
        sid: str,
        count: int,
        status: str = "active",
        title: str = "t",
        *,
        entries: int | None = None,
        synced: bool = True,
        provisional: bool = False,
        **raw: Any,
    ) -> CachedSession:
        return CachedSession(
            session_id=sid,
            scope="s",
            title=title,
            status=status,  # type: ignore[arg-type]
            message_count=count,
            created_at=NOW,
            ended_at=None,
            entry_count=count if entries is None else entries,
            local_state=None,
            local_error=None,
            opened_at=None,
            synced_at=NOW if synced else None,
            raw={
                "session_id": sid,
                "title": title,
                "message_count": count,
                "status": status,
                **raw,
            },
            provisional_order=provisional,
        )

    before = {
        "same": cached("same", 2),
        "more": cached("more", 2),
        "ended": cached("ended", 2),
        "renamed": cached("renamed", 0),
        "never_mirrored": cached("never_mirrored", 0, synced=False),
        "count_lies": cached("count_lies", 0, entries=3),
        "sent_here": cached("sent_here", 4, provisional=True),
        "touched": cached("touched", 1, updated_at="2026-01-01"),
    }
    listed = [
        info("same", 2),
        info("more", 4),
        info("ended", 2, status="ended"),
        info("renamed", 0, title="new title"),
        info("never_mirrored", 0),
        info("count_lies", 0),
        info("sent_here", 4),
        info("touched", 1, updated_at="2026-02-02"),
        info("new_empty", 0),
        info("new_full", 3),
    ]
    plan = plan_sync(before, listed)
    assert [i.session_id for i in plan.new] == ["new_empty", "new_full"]
    assert [i.session_id for i in plan.changed] == ["more", "ended", "renamed"]
    # Only "same" is proved unchanged: same object, mirrored since, dense, as many entries.
    assert {i.session_id for i in plan.stale} == {i.session_id for i in listed} - {"same"}


# -- reap --------------------------------------------------------------------------------------


def _leave_open(
    client: PdffillrClient, db: Path, title: str, *, owner: str = "dead"
) -> tuple[str, OwnerLock | None]:
    """A session recorded as opened here and never ended: by a with-block that died (``dead``:
    its lock released, as after a SIGKILL), still runs (``alive``: the lock is returned, held),
    or by an older version (``unknown``: no lock)."""
    info = client.sessions.create(title)
    with HistoryCache(db, scope=client.key_scope, server=client.server) as cache:
        lock = None if owner == "unknown" else OwnerLock.acquire(cache.path)
        cache.record_opened(info, owner_lock=None if lock is None else lock.name)
    if lock is not None and owner == "dead":
        lock.release(resolved=False)
    return info.session_id, lock


def test_reap_from_python_ends_at_once_what_a_dead_block_left_open(
    client: PdffillrClient, emulator: Any, db: Path
) -> None:
    sid, _ = _leave_open(client, db, "left open", owner="dead")

    dry = reap(client, db, dry_run=True)  # defaults: no older_than needed for a dead owner
    assert isinstance(dry, ReapReport) and dry.dry_run and dry.ok
    assert [(o.kind, o.action, o.session_id, o.owner) for o in dry.outcomes] == [
        ("session", "would_end", sid, "dead")
    ]
    assert emulator.sessions(KEY)[0]["status"] == "active"  # a dry run sends nothing

    done = reap(client, db)
    (outcome,) = done.outcomes
    assert outcome.action == "ended" and outcome.local_state == "open" and not outcome.live
    assert done.count("ended") == 1 and done.ok
    assert emulator.sessions(KEY)[0]["status"] == "ended"
    assert _cached(db)[sid].local_state == "ended"
    assert list(lock_dir(db).iterdir()) == []  # resolved: its lock file is gone too
    assert reap(client, db, older_than=timedelta(0)).outcomes == ()


def test_reap_never_ends_a_live_block_and_waits_for_lockless_records(
    client: PdffillrClient, db: Path
) -> None:
    live_sid, lock = _leave_open(client, db, "running", owner="alive")
    old_sid, _ = _leave_open(client, db, "older version", owner="unknown")

    outcomes = {o.session_id: o for o in reap(client, db, older_than=timedelta(0)).outcomes}
    assert outcomes[live_sid].action == "skipped" and outcomes[live_sid].live
    assert outcomes[old_sid].action == "ended"  # no lock: by age, and 0 means now
    (young,) = reap(client, db).outcomes  # the live one again, even by default
    assert young.action == "skipped" and young.owner == "alive"
    assert lock is not None and lock.held
    (forced,) = reap(client, db, include_live=True).outcomes
    assert forced.action == "ended" and forced.session_id == live_sid
    lock.release(resolved=True)


def test_a_lockless_record_waits_for_older_than(client: PdffillrClient, db: Path) -> None:
    _leave_open(client, db, "older version", owner="unknown")
    (young,) = reap(client, db).outcomes  # default: 1 h
    assert young.action == "skipped" and young.owner == "unknown"
    assert "too recent" in (young.detail or "")


def test_reap_with_no_cache_file_creates_nothing(client: PdffillrClient, db: Path) -> None:
    report = reap(client, db)
    assert report.outcomes == () and report.note is not None and str(db) in report.note
    assert not db.exists()


def test_reap_replays_a_create_intent_with_its_key(
    client: PdffillrClient, emulator: Any, db: Path
) -> None:
    with HistoryCache(db, scope=client.key_scope, server=client.server) as cache:
        lock = OwnerLock.acquire(cache.path)
        assert lock is not None
        cache.record_create_intent("pfs_lost_reply_key", "lost reply", owner_lock=lock.name)
    client.sessions.create("lost reply", idempotency_key="pfs_lost_reply_key")  # the lost create
    (live,) = reap(client, db).outcomes
    assert live.action == "skipped" and live.live  # its block may still be inside the create
    lock.release(resolved=False)  # the block exits (or dies)

    (outcome,) = reap(client, db).outcomes
    assert outcome.kind == "create_intent" and outcome.action == "ended"
    assert outcome.idempotency_key == "pfs_lost_reply_key"
    assert [s["status"] for s in emulator.sessions(KEY)] == ["ended"]  # replayed, not duplicated
    with HistoryCache(db, readonly=True) as cache:
        assert cache.create_intents() == []


def test_decisions_are_pure_and_end_pending_is_always_ended() -> None:
    base = CachedSession(
        session_id="s",
        scope="x",
        title=None,
        status="active",
        message_count=0,
        created_at=NOW,
        ended_at=None,
        entry_count=0,
        local_state="open",
        local_error=None,
        opened_at=NOW,
        synced_at=None,
        opened_pid=42,
    )
    before, after = NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)

    def decide(s: CachedSession, owner: Liveness, cutoff: datetime, live_too: bool = False) -> str:
        return decide_session(s, owner=owner, cutoff=cutoff, include_live=live_too).action

    assert decide(base, "unknown", after) == "would_end"  # no lock: by age
    assert decide(base, "unknown", before) == "skipped"
    assert decide(base, "dead", before) == "would_end"  # a dead owner: whatever its age
    assert decide(base, "alive", after) == "skipped"  # a live one: never, whatever its age
    assert decide(base, "alive", after, live_too=True) == "would_end"
    pending = attrs.evolve(base, local_state="end_pending")
    assert decide(pending, "alive", before) == "would_end"

    intent = CreateIntent(scope="x", idempotency_key="k", title=None, recorded_at=NOW)
    cases: list[tuple[Liveness, datetime, str]] = [
        ("unknown", before, "skipped"),
        ("unknown", after, "would_replay_and_end"),
        ("dead", before, "would_replay_and_end"),
        ("alive", after, "skipped"),
    ]
    for owner, cutoff, expected in cases:
        got = decide_intent(intent, owner=owner, cutoff=cutoff, include_live=False)
        assert got.action == expected, (owner, cutoff)


# -- end ---------------------------------------------------------------------------------------


def test_end_sessions_ends_each_records_it_and_reports_unknown_ids(
    client: PdffillrClient, emulator: Any, db: Path
) -> None:
    opened_here, _ = _leave_open(client, db, "opened here")
    made_elsewhere = client.sessions.create("made by another tool").session_id

    report = end_sessions(client, [opened_here, "sess_unknown", made_elsewhere], db)

    assert isinstance(report, EndReport) and not report.ok
    assert [(o.session_id, o.action) for o in report.outcomes] == [
        (opened_here, "ended"),
        ("sess_unknown", "not_found"),
        (made_elsewhere, "ended"),
    ]
    assert {s["status"] for s in emulator.sessions(KEY)} == {"ended"}
    cached = _cached(db)
    assert cached[opened_here].local_state == "ended"
    assert cached[made_elsewhere].status == "ended"  # added from the server's list
    assert "sess_unknown" not in cached


def test_end_sessions_keeps_a_failed_end_pending_for_reap(
    client: PdffillrClient, emulator: Any, db: Path
) -> None:
    sid, _ = _leave_open(client, db, "end fails")
    emulator.add_fault(Fault("status", status=503, method="POST", path=r"/end$", times=10))
    (outcome,) = end_sessions(client, [sid], db).outcomes
    assert outcome.action == "failed" and "503" in (outcome.detail or "")
    assert _cached(db)[sid].local_state == "end_pending"


def test_cli_end_prints_one_error_line_per_unknown_id_and_ends_the_others(
    client: PdffillrClient, emulator: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    monkeypatch.setenv("PDFFILLR_BASE_URL", emulator.url)
    a = client.sessions.create("a").session_id
    b = client.sessions.create("b").session_id
    result = CliRunner().invoke(main, ["end", a, "sess_typo", b, "--db", str(db)])
    assert result.exit_code == 1
    assert result.stderr == "Error: no session 'sess_typo' under this API key\n"
    assert result.stdout == f"ended  {a}\nended  {b}\n"
    assert {s["status"] for s in emulator.sessions(KEY)} == {"ended"}

    again = CliRunner().invoke(main, ["end", a, "--db", str(db), "--json"])
    assert again.exit_code == 0  # ending an ended session is not an error
    assert json.loads(again.stdout)["results"] == [
        {"session_id": a, "action": "ended", "detail": None}
    ]


def test_cli_end_needs_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    result = CliRunner().invoke(main, ["end"])
    assert result.exit_code == 2 and "Missing argument" in result.stderr


# -- the public surface ------------------------------------------------------------------------


def test_operations_and_their_reports_are_exported() -> None:
    for name in (
        "sync",
        "reap",
        "end_sessions",
        "SyncReport",
        "ReapReport",
        "ReapOutcome",
        "EndReport",
        "EndOutcome",
        "CacheStats",
        "CachedSession",
        "SearchHit",
        "CreateIntent",
    ):
        assert name in pfs.__all__
        assert getattr(pfs, name) is not None
    for cls in (SyncReport, ReapReport, EndReport, pfs.CacheStats, CachedSession, pfs.SearchHit):
        assert attrs.has(cls)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            obj = object.__new__(cls)
            obj.x = 1  # type: ignore[attr-defined]


def test_a_session_then_sync_with_the_same_cache_object(client: PdffillrClient, db: Path) -> None:
    """``cache=`` takes a HistoryCache too, as for Session."""
    with HistoryCache(db, api_key=KEY) as cache:
        with Session(client, title="shared", cache=cache) as s:
            s.send("hello")
        report = sync(client, cache)
        # The block mirrored before it ended: the ended session's final history is fetched
        # once (the server's object changed), and then never again.
        assert report.sessions == 1 and report.histories_fetched == 1
        assert sync(client, cache).histories_fetched == 0
        assert cache.stats().entries == 2
