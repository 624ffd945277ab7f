"""SIGTERM and SIGHUP inside a with-block: the block ends its session, then the process dies of the
signal, with the status its parent expects. Real subprocesses, real signals, a real emulator.
The same for ``AsyncSession`` blocks (the signal cancels their tasks), and Ctrl-C under
``asyncio.run``.

Also: the program's own handler is kept, the opt-out, nested blocks, a signal arriving while the
block's exit is ending the session (it waits), blocks in other threads (handlers untouched),
handlers put back after the last block, and a forked child that leaves the block (it neither
ends nor reaps its parent's session).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pdffillr_sessions import HistoryCache, PdffillrClient, Session, Terminated
from pdffillr_sessions._owner import lock_dir
from pdffillr_sessions._signals import HANDLED_SIGNALS
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_signals_tests_SECRET_5d4c"
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")

SCRIPT = textwrap.dedent(
    """
    import signal, sys
    from pdffillr_sessions import PdffillrClient, Session

    key, url, db, mode = sys.argv[1:5]

    def mine(signum, frame):
        print("my handler ran", flush=True)
        raise SystemExit(3)

    with PdffillrClient(key, base_url=url, sleep=lambda s: None) as client:
        if mode == "own_handler":
            signal.signal(signal.SIGTERM, mine)
        with Session(client, title=mode, cache=db, handle_signals=mode != "opt_out") as s:
            s.send("working")
            if mode == "own_handler":
                print("kept" if signal.getsignal(signal.SIGTERM) is mine else "replaced")
            if mode == "nested":
                with Session(client, title="inner", cache=db) as inner:
                    print(s.session_id, inner.session_id, flush=True)
                    sys.stdin.readline()
            else:
                print(s.session_id, flush=True)
                if mode != "slow_end":
                    sys.stdin.readline()  # wait here for the signal
    print("after the block", flush=True)
    """
)


def start(emulator: Emulator, db: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, KEY, emulator.url, str(db), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "history.db"


@pytest.fixture
def proc_cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def status_of(emulator: Emulator, sid: str) -> str:
    return next(str(s["status"]) for s in emulator.sessions(KEY) if s["session_id"] == sid)


def assert_ended_by_the_block(emulator: Emulator, db: Path, *sids: str) -> None:
    """Ended upstream and recorded ended, with no reap: nothing pending, no lock file left."""
    for sid in sids:
        assert status_of(emulator, sid) == "ended"
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.pending_ends() == [] and cache.create_intents() == []
        rows = [cache.session(sid) for sid in sids]
        assert [r.local_state if r else None for r in rows] == ["ended"] * len(sids)
    assert list(lock_dir(db).iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_inside_a_block_ends_the_session_then_kills_the_process(
    emulator: Emulator, db: Path, sig: signal.Signals, proc_cleanup: list[Any]
) -> None:
    proc = start(emulator, db, "plain")
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    sid = proc.stdout.readline().strip()
    assert status_of(emulator, sid) == "active"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -sig, err  # the signal's own status, as without the library
    assert "after the block" not in out and "Traceback" not in err
    assert_ended_by_the_block(emulator, db, sid)


def test_nested_blocks_both_end_their_sessions(
    emulator: Emulator, db: Path, proc_cleanup: list[Any]
) -> None:
    proc = start(emulator, db, "nested")
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    outer, inner = proc.stdout.readline().split()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err
    assert "after the block" not in out
    assert_ended_by_the_block(emulator, db, outer, inner)


def test_a_signal_during_the_blocks_exit_waits_for_the_end(
    emulator: Emulator, db: Path, proc_cleanup: list[Any]
) -> None:
    # The end request is slow: SIGTERM lands while __exit__ is ending the session.
    emulator.add_fault(Fault("delay", method="POST", path="/end$", seconds=1.0))
    proc = start(emulator, db, "slow_end")
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    sid = proc.stdout.readline().strip()
    deadline = time.monotonic() + 20
    while emulator.stats["requests"] < 4:  # create, send, the final mirror, the end
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err
    assert "after the block" not in out
    assert_ended_by_the_block(emulator, db, sid)


def test_a_programs_own_handler_is_kept_and_its_exit_still_ends_the_session(
    emulator: Emulator, db: Path, proc_cleanup: list[Any]
) -> None:
    proc = start(emulator, db, "own_handler")
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "kept"
    sid = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err  # its handler decided: sys.exit(3)
    assert "my handler ran" in out
    assert_ended_by_the_block(emulator, db, sid)  # SystemExit unwound the block


def test_the_opt_out_dies_at_once_and_default_reap_ends_the_session_at_once(
    emulator: Emulator, db: Path, proc_cleanup: list[Any]
) -> None:
    proc = start(emulator, db, "opt_out")
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    sid = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert status_of(emulator, sid) == "active"  # handle_signals=False: no __exit__ ran
    env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emulator.url}
    result = CliRunner().invoke(main, ["reap", "--db", str(db), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [(r["action"], r["owner"]) for r in json.loads(result.stdout)["results"]] == [
        ("ended", "dead")
    ]
    assert status_of(emulator, sid) == "ended"


# -- AsyncSession: the signal cancels the blocks' tasks, then the process dies of it -----------

ASYNC_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pdffillr_sessions import AsyncPdffillrClient, AsyncSession

    key, url, db, mode = sys.argv[1:5]

    async def main():
        async def no_sleep(seconds):
            pass

        ready = []
        async with AsyncPdffillrClient(key, base_url=url, sleep=no_sleep) as client:

            async def block(title, nested):
                async with AsyncSession(
                    client, title=title, cache=db, handle_signals=mode != "opt_out"
                ) as s:
                    await s.send("working")
                    if nested:
                        async with AsyncSession(client, title="inner", cache=db) as inner:
                            ready.extend([s.session_id, inner.session_id])
                            await asyncio.Event().wait()
                    ready.append(s.session_id)
                    if mode != "slow_end":
                        await asyncio.Event().wait()  # here until the signal

            several = mode == "several"
            async with asyncio.TaskGroup() as group:  # the client outlives every block
                for i in range(3 if several else 1):
                    group.create_task(block(f"{mode} {i}", several and i == 0))
                while len(ready) < (4 if several else 1):
                    await asyncio.sleep(0.01)
                print(*ready, flush=True)

    asyncio.run(main())
    print("after the blocks", flush=True)
    """
)


def start_async(emulator: Emulator, db: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", ASYNC_SCRIPT, KEY, emulator.url, str(db), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("sig", "mode"),
    [
        (signal.SIGTERM, "plain"),
        (signal.SIGHUP, "plain"),
        (signal.SIGTERM, "several"),  # three blocks at once, one with a nested block
        (signal.SIGINT, "plain"),  # asyncio.run's own Ctrl-C: it cancels the main task
    ],
    ids=["SIGTERM", "SIGHUP", "SIGTERM-several-and-nested", "SIGINT-asyncio-run"],
)
def test_a_signal_inside_async_blocks_ends_their_sessions_then_kills_the_process(
    emulator: Emulator, db: Path, sig: signal.Signals, mode: str, proc_cleanup: list[Any]
) -> None:
    proc = start_async(emulator, db, mode)
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    sids = proc.stdout.readline().split()
    assert len(sids) == (4 if mode == "several" else 1)
    assert {status_of(emulator, sid) for sid in sids} == {"active"}
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -sig, err  # the signal's own status, as without the library
    assert "after the blocks" not in out
    if sig != signal.SIGINT:  # (asyncio.run re-raises KeyboardInterrupt: a traceback)
        assert "Traceback" not in err
    assert_ended_by_the_block(emulator, db, *sids)


def test_a_signal_during_an_async_blocks_exit_waits_for_the_end(
    emulator: Emulator, db: Path, proc_cleanup: list[Any]
) -> None:
    emulator.add_fault(Fault("delay", method="POST", path="/end$", seconds=1.0))
    proc = start_async(emulator, db, "slow_end")
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    sid = proc.stdout.readline().strip()
    deadline = time.monotonic() + 20
    while emulator.pending_faults:  # until the end request is in flight (it took the delay)
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err
    assert "after the blocks" not in out
    assert_ended_by_the_block(emulator, db, sid)


def test_the_async_opt_out_dies_at_once_and_default_reap_ends_the_session_at_once(
    emulator: Emulator, db: Path, proc_cleanup: list[Any]
) -> None:
    proc = start_async(emulator, db, "opt_out")
    proc_cleanup.append(proc)
    assert proc.stdout is not None
    sid = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert status_of(emulator, sid) == "active"  # handle_signals=False: no __aexit__ ran
    env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emulator.url}
    result = CliRunner().invoke(main, ["reap", "--db", str(db), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [(r["action"], r["owner"]) for r in json.loads(result.stdout)["results"]] == [
        ("ended", "dead")
    ]


# -- in process: which handlers are in place, when -------------------------------------------


def current() -> list[Any]:
    return [signal.getsignal(s) for s in HANDLED_SIGNALS]


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


def test_handlers_go_in_with_the_first_main_thread_block_and_out_with_the_last(
    client: PdffillrClient, db: Path
) -> None:
    before = current()
    assert before == [signal.SIG_DFL] * len(HANDLED_SIGNALS)
    in_thread: list[list[Any]] = []
    worker_in_block = threading.Event()
    main_done = threading.Event()

    def worker() -> None:
        with Session(client, title="thread", cache=db):  # no ValueError: not the main thread
            worker_in_block.set()
            main_done.wait(10)
            in_thread.append(current())

    with Session(client, title="outer", cache=db):
        ours = current()
        assert ours != before
        t = threading.Thread(target=worker)
        t.start()
        assert worker_in_block.wait(10)
        with Session(client, title="inner", cache=db):
            assert current() == ours
        assert current() == ours  # the outer block still runs
    assert current() == before  # the last main-thread block has exited
    main_done.set()
    t.join(10)
    assert in_thread == [before]  # the thread's block changed nothing
    with Session(client, title="opted out", cache=db, handle_signals=False):
        assert current() == before


def test_terminated_is_not_an_exception_subclass() -> None:
    assert not issubclass(Terminated, Exception)  # `except Exception` does not swallow it
    assert Terminated(signal.SIGTERM).signum == signal.SIGTERM


def test_a_forked_child_leaving_the_block_neither_ends_nor_reaps_the_parents_session(
    emulator: Emulator, db: Path
) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from pdffillr_sessions import PdffillrClient, Session, reap

        key, url, db = sys.argv[1:4]
        with PdffillrClient(key, base_url=url, sleep=lambda s: None) as client:
            with Session(client, title="parent", cache=db) as s:
                pid = os.fork()
                if pid == 0:
                    os.environ["CHILD"] = "1"
                if os.environ.get("CHILD"):
                    pass  # the child leaves its copy of the block
                else:
                    os.waitpid(pid, 0)  # the child has left the block, and reaped
                    print("parent sees", client.sessions.list()[0].status, flush=True)
                    s.send("still mine")
        if os.environ.get("CHILD"):
            with PdffillrClient(key, base_url=url) as own:
                report = reap(own, db)
                status = own.sessions.list()[0].status
            print("child", [(o.action, o.owner) for o in report.outcomes], status, flush=True)
            os._exit(0)
        print("parent done", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, KEY, emulator.url, str(db)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "child [('skipped', 'alive')] active",  # the child ended nothing, reaped nothing
        "parent sees active",
        "parent done",
    ]
    [upstream] = emulator.sessions(KEY)
    assert upstream["status"] == "ended"  # by the parent's exit
    sid = str(upstream["session_id"])
    assert [e["content"] for e in emulator.history(KEY, sid) if e["role"] == "user"] == [
        "still mine"
    ]
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.pending_ends() == []
