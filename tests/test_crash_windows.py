"""Crash windows: a with-block's process killed (SIGKILL) at each point of its life, then reaped.

Each window runs twice, as ``with Session(...)`` and as ``async with AsyncSession(...)`` (whose
cache writes run in its worker thread: a kill there kills the process all the same). Each test
runs a real script in a subprocess that SIGKILLs itself at one point (the kill points
are library methods wrapped by the script: nothing in the library knows about them), then looks
at what the cache and the server hold, runs ``pdffillr-sessions reap`` with no options and
``sync`` (the "next run"), and checks that everything is recovered at once (the dead script's
owner lock was released by the kernel, so reap does not wait for ``--older-than``): nothing
active upstream, no pending end, no create intent left, exactly as many sessions upstream as
the script opened, and a cached history equal to the server's. (Every line of the same path,
interrupted in process, is ``test_every_line.py``.)

======================================  ===================================  ===================
window (killed ...)                     cache / upstream afterwards          recovered by reap
======================================  ===================================  ===================
before_intent: before the create        nothing / nothing                    nothing to do
intent is written
before_create_request: intent written,  intent / nothing                     replays the create
create not sent                                                              (makes it now) and
                                                                             ends it
create_reply: the server created it,    intent / 1 active session            replays the create:
killed before the cache write                                                same key, same
                                                                             session; ends it
inside_block: after a send              open + entries / active              ends it
final_mirror: during the final mirror   open + entries / active              ends it
end_before_request: end not sent        open / active                        ends it
end_after_request: end sent, reply      open / ended                         ends it again
not processed                                                                (harmless), marks
                                                                             it ended
before_mark_ended: end confirmed,       open / ended                         same
cache not told
======================================  ===================================  ===================

Every window is closed. What remains open (not closable on the client side):

* A create intent is replayed with its recorded Idempotency-Key. A real server that EXPIRES
  idempotency keys (Stripe keeps them 24 h) turns a late replay into a NEW session: reap then
  ends that fresh one, and the session the dead script created stays active upstream, invisible
  to the cache. Run ``reap`` soon after a crash (it no longer waits an hour to do so).
* ``before_create_request``: reap cannot know the create was never sent, so its replay makes a
  session only to end it at once (harmless, but one create is spent).
* ``before_intent`` leaves an empty, unlocked lock file in ``<cache>.locks/`` that no record
  names (harmless; nothing reads it).
* Entries appended upstream by a send whose reply was lost AND whose process then died are not in
  the cache until the next ``sync`` (shown below): reap ends sessions, it does not mirror them.
* A disk that loses the last committed transactions (``synchronous=NORMAL`` in WAL mode keeps the
  database consistent on power loss, but may roll back the last commits) can lose an intent or
  an "open" row written just before the power cut.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pdffillr_sessions import HistoryCache
from pdffillr_sessions._owner import lock_dir
from pdffillr_sessions._scope import server_id
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator

KEY = "sk_crash_windows_SECRET_5e6f7a"
ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pdffillr_sessions import (
        AsyncPdffillrClient, AsyncSession, HistoryCache, PdffillrClient, Session, _contract
    )

    key, url, db, window, kind = sys.argv[1:6]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)  # from any thread: the whole process

    def kill_before(cls, name):
        original = getattr(cls, name)
        def wrapper(*args, **kwargs):
            die()
            return original(*args, **kwargs)
        setattr(cls, name, wrapper)

    def kill_points(method, path):
        is_create = method == "POST" and path == _contract.SESSIONS_PATH
        is_end = method == "POST" and path.endswith("/end")
        if (window == "before_create_request" and is_create) or (
            window == "end_before_request" and is_end
        ):
            die()
        return window == "end_after_request" and is_end

    if kind == "sync":
        original_request = PdffillrClient.request

        def request(self, method, path, **kwargs):
            after = kill_points(method, path)
            response = original_request(self, method, path, **kwargs)
            if after:
                die()
            return response

        PdffillrClient.request = request
    else:
        original_async_request = AsyncPdffillrClient.request

        async def async_request(self, method, path, **kwargs):
            after = kill_points(method, path)
            response = await original_async_request(self, method, path, **kwargs)
            if after:
                die()
            return response

        AsyncPdffillrClient.request = async_request

    # (an AsyncSession runs these in its worker thread: the kill is the same)
    if window == "before_intent":
        kill_before(HistoryCache, "record_create_intent")
    elif window == "create_reply":
        kill_before(HistoryCache, "record_opened")
    elif window == "final_mirror":
        kill_before(HistoryCache, "mirror_history")
    elif window == "before_mark_ended":
        kill_before(HistoryCache, "mark_ended")

    if kind == "sync":
        with PdffillrClient(key, base_url=url, sleep=lambda s: None) as client:
            with Session(client, title="crash " + window, cache=db) as s:
                s.send("working")
                if window == "inside_block":
                    die()
    else:
        async def main():
            async def no_sleep(seconds):
                pass

            async with AsyncPdffillrClient(key, base_url=url, sleep=no_sleep) as client:
                async with AsyncSession(client, title="crash " + window, cache=db) as s:
                    await s.send("working")
                    if window == "inside_block":
                        die()

        asyncio.run(main())
    print("survived", flush=True)
    """
)

# window -> (intents, cache session local_state or None, upstream status or None,
#            cached entries, upstream sessions after reap)
EXPECTED: dict[str, tuple[int, str | None, str | None, int, int]] = {
    "before_intent": (0, None, None, 0, 0),
    "before_create_request": (1, None, None, 0, 1),
    "create_reply": (1, None, "active", 0, 1),
    "inside_block": (0, "open", "active", 2, 1),
    "final_mirror": (0, "open", "active", 2, 1),
    "end_before_request": (0, "open", "active", 2, 1),
    "end_after_request": (0, "open", "ended", 2, 1),
    "before_mark_ended": (0, "open", "ended", 2, 1),
}


def cli(emu: Emulator, db: Path, *args: str) -> Any:
    env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emu.url, "PDFFILLR_SESSIONS_DB": str(db)}
    result = CliRunner().invoke(main, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("window", list(EXPECTED))
def test_crash_window(emulator: Emulator, tmp_path: Path, window: str, kind: str) -> None:
    db = tmp_path / "cache" / "history.db"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, KEY, emulator.url, str(db), window, kind],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.stdout, proc.stderr)
    assert "survived" not in proc.stdout
    n_intents, local_state, status, n_entries, n_after = EXPECTED[window]
    server = server_id(emulator.url)

    # What the crash left behind.
    upstream = emulator.sessions(KEY)
    assert [s["status"] for s in upstream] == ([status] if status else [])
    with HistoryCache(db, api_key=KEY) as cache:
        intents = cache.create_intents()
        assert len(intents) == n_intents
        if n_intents:
            assert intents[0].title == f"crash {window}"
            assert intents[0].opened_pid not in (None, os.getpid())  # the dead script's
            assert intents[0].server == server and intents[0].owner_lock is not None
        rows = cache.sessions()
        if local_state is None:
            assert rows == []
        else:
            [row] = rows
            assert row.session_id == upstream[0]["session_id"]
            assert row.local_state == local_state and row.opened_pid is not None
            assert row.server == server and row.owner_lock is not None
            assert len(cache.history(row.session_id)) == n_entries
            assert row.opened_pid != os.getpid()
    if window == "create_reply":  # the create's key was sent and is what the intent recorded
        [create] = [r for r in emulator.request_log if r.method == "POST" and r.status == 200]
        assert create.idempotency_key == intents[0].idempotency_key

    # Recovery: reap with its defaults (the owner is dead: at once), then the next run's sync.
    report = cli(emulator, db, "reap")
    assert all(r["action"] == "ended" for r in report["results"])
    assert len(report["results"]) == (0 if window == "before_intent" else 1)
    assert all(r["owner"] == "dead" for r in report["results"])  # the kernel released its lock
    cli(emulator, db, "sync")
    upstream = emulator.sessions(KEY)
    assert len(upstream) == n_after  # a replayed create never made a second session
    assert [s["status"] for s in upstream] == ["ended"] * n_after
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.pending_ends() == [] and cache.create_intents() == []
        for s in upstream:
            after = cache.session(s["session_id"])
            assert after is not None and after.local_state == "ended" and after.status == "ended"
            cached = [dict(e.raw) for e in cache.history(s["session_id"])]
            assert cached == emulator.history(KEY, s["session_id"])
        assert cache.integrity_check() == []
    # Resolved records leave no lock file behind (before_intent: one no record names).
    assert len(list(lock_dir(db).iterdir())) == (1 if window == "before_intent" else 0)
    # And a second reap finds nothing left.
    assert cli(emulator, db, "reap", "--older-than", "0")["results"] == []
