"""Many machines, one PostgreSQL history: exact liveness from advisory locks, against a real server.

Workers are separate processes running with-blocks; some are SIGKILLed. A reaper in another
process ends exactly the dead ones, at once (default options: no ``--older-than`` wait), and
never one whose block still runs, even with ``--older-than 0``. Two reapers at once never both
replay an intent. A worker whose lock connection is cut stops sending. What every worker said is
readable and searchable afterwards from a fresh process with the API server gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pdffillr_sessions import (
    HistoryCache,
    OwnerLockLostError,
    PdffillrClient,
    Session,
    _contract,
    reap,
)
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_fleet_tests_SECRET_9f8e7d"
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pdffillr_sessions import PdffillrClient, Session

    key, url, db, title = sys.argv[1:5]
    with PdffillrClient(key, base_url=url, sleep=lambda s: None) as client:
        with Session(client, title=title, cache=db) as s:
            s.send(f"{title}: the capital call notice")
            s.send(f"{title}: the side letter")
            print(s.session_id, flush=True)
            sys.stdin.readline()  # the block runs until told to finish
            s.send(f"{title}: finishing")
    print("done", flush=True)
    """
)

STUCK_CREATE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pdffillr_sessions import PdffillrClient, Session, _contract

    original = PdffillrClient.request

    def request(self, method, path, **kwargs):
        if method == "POST" and path == _contract.SESSIONS_PATH:
            print("creating", flush=True)
            sys.stdin.readline()  # as if the create were slow, or retrying with backoff
        return original(self, method, path, **kwargs)

    PdffillrClient.request = request
    with PdffillrClient(sys.argv[1], base_url=sys.argv[2]) as client:
        with Session(client, title=sys.argv[4], cache=sys.argv[3]) as s:
            s.send("after the create")
    print(s.session_id, flush=True)
    """
)


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def wait_until_free(url: str, owner_lock: str | None, timeout: float = 5.0) -> float:
    """Seconds until the server has released ``owner_lock`` (its connection ended)."""
    started = time.monotonic()
    with HistoryCache(url, readonly=True) as cache:
        while True:
            with cache.probe_owner(owner_lock) as probe:
                if probe.liveness == "dead":
                    return time.monotonic() - started
            assert time.monotonic() - started < timeout, "the lock was never released"
            time.sleep(0.01)


def reap_cli(url: str, emulator: Emulator, *args: str) -> dict[str, Any]:
    env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emulator.url}
    result: Result = CliRunner().invoke(
        main_cli(), ["reap", "--json", "--db", url, *args], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def main_cli() -> Any:
    from pdffillr_sessions.cli import main

    return main


def statuses(emulator: Emulator) -> dict[str, str]:
    return {s["session_id"]: s["status"] for s in emulator.sessions(KEY)}


@pytest.mark.slow
def test_workers_killed_are_reaped_at_once_and_running_ones_never(
    pg_url: str, emulator: Emulator
) -> None:
    """Six worker processes on one database; three SIGKILLed. A reaper (defaults: no age
    wait) ends exactly those three at once, leaves the three running ones alone, even with
    --older-than 0, and the histories of all six are readable and searchable from a fresh
    process once the API server is gone."""
    workers = [start(WORKER_SCRIPT, KEY, emulator.url, pg_url, f"worker-{i}") for i in range(6)]
    try:
        sids = [w.stdout.readline().strip() for w in workers if w.stdout is not None]
        assert all(sids) and len(set(sids)) == 6
        dead, alive = workers[:3], workers[3:]
        for w in dead:
            kill(w)
        with HistoryCache(pg_url, readonly=True) as cache:
            locks = {sid: cache.session(sid).owner_lock for sid in sids}  # type: ignore[union-attr]
        assert all(locks.values()) and len(set(locks.values())) == 6
        # The server drops a killed process's connection (and its locks) at once.
        assert max(wait_until_free(pg_url, locks[sid]) for sid in sids[:3]) < 2.0

        first = reap_cli(pg_url, emulator)  # no --older-than: the locks decide
        by_sid = {r["session_id"]: r for r in first["results"]}
        assert {sid: by_sid[sid]["action"] for sid in sids} == {
            **{sid: "ended" for sid in sids[:3]},
            **{sid: "skipped" for sid in sids[3:]},
        }
        assert {by_sid[sid]["owner"] for sid in sids[:3]} == {"dead"}
        assert {(by_sid[sid]["owner"], by_sid[sid]["live"]) for sid in sids[3:]} == {
            ("alive", True)
        }
        forced = reap_cli(pg_url, emulator, "--older-than", "0")
        assert sorted((r["session_id"], r["owner"], r["action"]) for r in forced["results"]) == (
            sorted((sid, "alive", "skipped") for sid in sids[3:])
        )
        upstream = statuses(emulator)
        assert [upstream[sid] for sid in sids] == ["ended"] * 3 + ["active"] * 3

        for w in alive:  # the running blocks were never disturbed: they send and end
            assert finish(w).strip().endswith("done")
        assert set(statuses(emulator).values()) == {"ended"}
        assert reap_cli(pg_url, emulator)["results"] == []
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    emulator.stop()  # no network to the API from here on
    read = textwrap.dedent(
        """
        import json, sys
        from pdffillr_sessions import HistoryCache
        with HistoryCache(sys.argv[1], readonly=True) as cache:
            out = {
                "histories": {s.session_id: [e.content for e in cache.history(s.session_id)]
                              for s in cache.sessions()},
                "hits": sorted(h.entry.session_id for h in cache.search("capital call", limit=50)),
                "hosts": cache.stats().sessions_by_host,
                "pending": len(cache.pending_ends()),
            }
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", read, pg_url], capture_output=True, text=True, env=ENV, check=True
    )
    seen = json.loads(done.stdout)
    assert set(seen["hits"]) == set(sids)
    assert seen["pending"] == 0 and sum(seen["hosts"].values()) == 6
    for i, sid in enumerate(sids):
        user = [c for c in seen["histories"][sid] if c.startswith(f"worker-{i}:")]
        finished = [f"worker-{i}: finishing"] if i >= 3 else []
        assert user == [
            f"worker-{i}: the capital call notice",
            f"worker-{i}: the side letter",
            *finished,
        ]


@pytest.mark.slow
def test_a_create_intent_is_left_to_its_running_block_and_replayed_once_it_dies(
    pg_url: str, emulator: Emulator
) -> None:
    stuck = start(STUCK_CREATE_SCRIPT, KEY, emulator.url, pg_url, "slow create")
    doomed = start(STUCK_CREATE_SCRIPT, KEY, emulator.url, pg_url, "killed in its create")
    try:
        for proc in (stuck, doomed):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "creating"
        with HistoryCache(pg_url, readonly=True) as cache:
            intents = {i.title: i for i in cache.create_intents()}
        assert set(intents) == {"slow create", "killed in its create"}
        kill(doomed)
        wait_until_free(pg_url, intents["killed in its create"].owner_lock)
        data = reap_cli(pg_url, emulator, "--older-than", "0")
        by_title = {r["title"]: r for r in data["results"]}
        assert by_title["slow create"]["action"] == "skipped"
        assert by_title["slow create"]["owner"] == "alive"
        assert by_title["killed in its create"]["action"] == "ended"  # replayed, then ended
        assert [s["title"] for s in emulator.sessions(KEY)] == ["killed in its create"]
        sid = finish(stuck).strip()
    finally:
        for proc in (stuck, doomed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert statuses(emulator) == {s: "ended" for s in statuses(emulator)}
    assert sid in statuses(emulator)
    assert reap_cli(pg_url, emulator)["results"] == []


REAPER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pdffillr_sessions import PdffillrClient, reap
    with PdffillrClient(sys.argv[1], base_url=sys.argv[2], sleep=lambda s: None) as client:
        report = reap(client, sys.argv[3])
    print(json.dumps([[o.kind, o.idempotency_key, o.action, o.detail] for o in report.outcomes]))
    """
)


@pytest.mark.slow
def test_two_reapers_at_once_never_double_replay_an_intent(pg_url: str, emulator: Emulator) -> None:
    """Twelve intents whose blocks died (their locks free); two reaper processes started
    together, each create slowed down so that they overlap. Every intent is replayed exactly
    once (one create request per Idempotency-Key), and every session is ended."""
    keys = [f"idem-{i:02d}" for i in range(12)]
    with HistoryCache(pg_url, api_key=KEY) as cache:
        for key in keys:
            owner = cache.acquire_owner()
            assert owner is not None
            cache.record_create_intent(key, f"title {key}", owner_lock=owner.name)
            owner.release(resolved=False)  # as the server does when its process dies
    emulator.add_fault(
        Fault(
            "delay", method="POST", path="^" + _contract.SESSIONS_PATH + "$", seconds=0.15, times=50
        )
    )
    reapers = [
        subprocess.Popen(
            [sys.executable, "-c", REAPER_SCRIPT, KEY, emulator.url, pg_url],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(2)
    ]
    reports = []
    for proc in reapers:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        reports.append(json.loads(out))
    creates = Counter(
        r.idempotency_key
        for r in emulator.request_log
        if r.method == "POST" and r.path == _contract.SESSIONS_PATH
    )
    assert creates == Counter(dict.fromkeys(keys, 1))  # each intent replayed exactly once
    ended = Counter(key for report in reports for _, key, action, _ in report if action == "ended")
    assert ended == Counter(dict.fromkeys(keys, 1))
    # They overlapped: one found an intent the other was replaying (its lock held) or had just
    # replayed (gone when re-read under the lock).
    assert any(action == "skipped" for report in reports for _, _, action, _ in report)
    assert set(statuses(emulator).values()) == {"ended"} and len(statuses(emulator)) == 12
    with HistoryCache(pg_url, api_key=KEY) as cache:
        assert cache.create_intents() == [] and cache.pending_ends() == []


def test_a_block_that_loses_its_lock_connection_stops_sending(
    pg_url: str, pg_server: Any, emulator: Emulator
) -> None:
    """The partition rule: the lock connection is cut (here by the server: as after a network
    partition outlasting the keepalives). A reaper may then end the session, and does; the
    block's next send raises OwnerLockLostError without sending; its exit still ends it."""
    dbname = pg_url.split("/")[3].split("?")[0]
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        with pytest.raises(OwnerLockLostError):
            with Session(client, title="partitioned", cache=pg_url) as s:
                s.send("before the partition")
                with pg_server.admin() as admin:
                    cut = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'pdffillr-owner-lock' AND datname = %s",
                        (dbname,),
                    ).fetchall()
                assert cut == [(True,)]
                with HistoryCache(pg_url, readonly=True) as cache:
                    wait_until_free(pg_url, cache.session(s.session_id).owner_lock)  # type: ignore[union-attr]
                (outcome,) = reap(client, pg_url).outcomes  # another machine's reaper
                assert (outcome.session_id, outcome.action) == (s.session_id, "ended")
                s.send("after the partition")
    messages = [e["content"] for e in emulator.history(KEY, s.session_id) if e["role"] == "user"]
    assert messages == ["before the partition"]  # nothing was sent once the lock was lost
    assert statuses(emulator) == {s.session_id: "ended"}


def test_a_block_in_the_reapers_own_process_is_live(pg_url: str, emulator: Emulator) -> None:
    """Advisory locks are re-entrant per connection: the probe runs on the reaper's own
    connection, so a block of the same process is still seen as running."""
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        with Session(client, cache=pg_url) as s:
            (outcome,) = reap(client, pg_url, include_live=False).outcomes
            assert (outcome.session_id, outcome.owner, outcome.action) == (
                s.session_id,
                "alive",
                "skipped",
            )
    assert statuses(emulator) == {s.session_id: "ended"}
    assert reap(client_for(emulator), pg_url).outcomes == ()


def client_for(emulator: Emulator) -> PdffillrClient:
    return PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None)


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pdffillr_sessions import HistoryCache, PdffillrClient, Session
    with PdffillrClient(sys.argv[1], base_url=sys.argv[2], sleep=lambda s: None) as client:
        with Session(client, title="parent", cache=sys.argv[3]) as s:
            pid = os.fork()
            if pid == 0:  # a child that exits normally: its copies of the connections are closed
                os._exit(0) if len(sys.argv) > 4 else sys.exit(0)
            os.waitpid(pid, 0)
            print(s.session_id, flush=True)
            sys.stdin.readline()
    """
)


@pytest.mark.parametrize("exit_kind", ["sys.exit", "os._exit"])
def test_a_forked_child_never_releases_its_parents_lock(
    pg_url: str, emulator: Emulator, exit_kind: str
) -> None:
    extra = ["fast"] if exit_kind == "os._exit" else []
    proc = start(FORK_SCRIPT, KEY, emulator.url, pg_url, *extra)
    try:
        assert proc.stdout is not None
        sid = proc.stdout.readline().strip()
        data = reap_cli(pg_url, emulator, "--older-than", "0")
        assert [(r["session_id"], r["owner"], r["action"]) for r in data["results"]] == [
            (sid, "alive", "skipped")
        ]
        finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert statuses(emulator) == {sid: "ended"}


@pytest.mark.slow
def test_the_soak_on_postgres_leaks_nothing(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reliability soak (``benchmarks/soak.py``: 200 with-blocks at a 20 % fault rate) with
    the PostgreSQL store: the same zero counts as on SQLite."""
    from test_soak import BLOCKS, MESSAGES, load_soak

    soak = load_soak()
    f: dict[str, Any] = soak.run_soak(
        blocks=BLOCKS, messages=MESSAGES, fault_rate=0.2, seed=11, db=pg_url
    )
    with capsys.disabled():
        print("\n[postgres] " + soak.format_figures(f))
    assert f["faults_injected"] > 0.1 * f["requests"] and f["idempotent_replays"] > 0
    assert f["sessions_opened"] == BLOCKS and f["sessions_ended"] == BLOCKS
    assert f["reap_ok"]
    assert f["leaked"] == 0 and f["duplicates"] == 0
    assert f["missing"] == 0 and f["extra"] == 0
    assert f["pending_in_cache"] == 0 and f["intents_in_cache"] == 0
    assert f["cache_integrity"] == "ok"
    assert soak.ok(f)


@pytest.mark.slow
def test_the_postgres_benchmark_runs_and_writes_its_section(pg_server: Any, tmp_path: Path) -> None:
    """Smoke test of ``benchmarks/postgres.py --quick`` (no timing asserted: only that it runs,
    checks its own results and writes its rows into the results file, keeping the rest)."""
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n| 1 | sqlite rows |\n", encoding="utf-8")
    script = str(ROOT / "benchmarks" / "postgres.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--url", pg_server.url(), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark results\n\n| 1 | sqlite rows |")
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| P")]
    assert rows == ["P1a", "P1b", "P2", "P3"]


def test_an_abandoned_block_releases_its_lock_when_collected(
    pg_url: str, emulator: Emulator
) -> None:
    """A block whose exit never ran (its Session collected, as after an interrupt on the very
    first line of ``__exit__``): its advisory lock goes with it, and reap ends it at once."""
    import gc

    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        s = Session(client, title="abandoned", cache=pg_url, handle_signals=False)
        s.__enter__()
        sid = s.session_id
        with HistoryCache(pg_url, readonly=True) as cache:
            lock = cache.session(sid).owner_lock  # type: ignore[union-attr]
        del s
        gc.collect()
        wait_until_free(pg_url, lock, timeout=2.0)
        (outcome,) = reap(client, pg_url).outcomes
        assert (outcome.session_id, outcome.owner, outcome.action) == (sid, "dead", "ended")
    assert statuses(emulator) == {sid: "ended"}
