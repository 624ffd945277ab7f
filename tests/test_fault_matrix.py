"""The fault matrix: every endpoint crossed with every fault, over a real socket.

Endpoints: create, list, end, messages (GET history), send, attach. Faults: 429 with
``Retry-After``, 500, 502 with an HTML body, 503, a connection dropped before the server acts
(``drop_before``), a reply dropped AFTER the server acted (``drop_after``), a delay longer than
the client's timeout (the server acts late), and a truncated body (the server acted).

Each cell runs twice with ``max_retries=2`` (three attempts):

* transient: the fault fires twice, the third attempt succeeds: the call returns the right thing;
* persistent: the fault fires three times: the right typed error surfaces.

and checks the upstream state from the emulator: exactly as many attempts as expected, one
``Idempotency-Key`` reused by every attempt of a create/send/attach, no duplicate session,
message or document whatever happened (a retry after an acted-but-unanswered request is a
replay), and the retry waits recorded, never slept (``Retry-After`` wins over backoff).

Then the with-block cells: a ``with Session(...)`` block, and an ``async with AsyncSession(...)``
block (``tests/_blocks.py``), whose create, send, attach, final mirror or end fails for good
under each fault. Afterwards nothing is active upstream, or the cache holds what
``reap`` needs (an end-pending session, a create intent) and ``pdffillr-sessions reap`` ends it.
The cache's history always equals the server's after the block.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pdffillr_sessions import (
    APIConnectionError,
    APITimeoutError,
    HistoryCache,
    InternalServerError,
    PdffillrClient,
    PdffillrError,
    RateLimitError,
)
from pdffillr_sessions._client import Timeout
from pdffillr_sessions._lifecycle import FINAL_MIRROR_DEADLINE
from pdffillr_sessions._owner import Probe
from pdffillr_sessions.cli import main
from pdffillr_sessions.emulator import Emulator, Fault
from tests._blocks import KINDS, Block, run_block

KEY = "sk_fault_matrix_SECRET_1a2b3c"
MAX_RETRIES = 2
DELAY_TIMEOUT = 0.15  # the client's per-attempt limit in the delay cells
DELAY = 0.22  # the delay fault: slightly longer than that
RETRY_AFTER = "7"
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


# -- the faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultCase:
    name: str
    make: Callable[..., Fault]
    error: type[PdffillrError]
    acts: bool  # the server performs the action although the client never hears of it
    status: int | None = None

    def fault(self, method: str, path: str, times: int) -> Fault:
        return self.make(method=method, path=path, times=times)


def _status(status: int, **extra: Any) -> Callable[..., Fault]:
    return lambda **kw: Fault("status", status=status, **extra, **kw)


FAULTS = [
    FaultCase(
        "429",
        _status(429, headers={"Retry-After": RETRY_AFTER}),
        RateLimitError,
        acts=False,
        status=429,
    ),
    FaultCase("500", _status(500), InternalServerError, acts=False, status=500),
    FaultCase("502_html", _status(502, body=HTML_502), InternalServerError, acts=False, status=502),
    FaultCase("503", _status(503), InternalServerError, acts=False, status=503),
    FaultCase("drop_before", lambda **kw: Fault("drop_before", **kw), APIConnectionError, False),
    FaultCase("drop_after", lambda **kw: Fault("drop_after", **kw), APIConnectionError, True),
    FaultCase("delay", lambda **kw: Fault("delay", seconds=DELAY, **kw), APITimeoutError, True),
    FaultCase("truncate", lambda **kw: Fault("truncate", **kw), APIConnectionError, True),
]
FAULT_IDS = [f.name for f in FAULTS]


# -- the endpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # regex searched in the raw path, as the emulator's fault matcher does
    mutating: bool  # non-idempotent: carries an Idempotency-Key

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and re.search(self.path, path) is not None


ENDPOINTS = [
    Endpoint("create", "POST", r"/sessions$", True),
    Endpoint("list", "GET", r"/sessions$", False),
    Endpoint("end", "POST", r"/end$", False),
    Endpoint("messages", "GET", r"/messages$", False),
    Endpoint("send", "POST", r"/messages$", True),
    Endpoint("attach", "POST", r"/documents$", True),
]
BY_NAME = {e.name: e for e in ENDPOINTS}


def settle(emu: Emulator, timeout: float = 5.0) -> None:
    """Wait until every request the emulator received has been handled (delayed ones too)."""
    deadline = time.monotonic() + timeout
    while len(emu.request_log) < emu.stats["requests"]:
        assert time.monotonic() < deadline, "the emulator never finished a request"
        time.sleep(0.01)


def make_client(emu: Emulator, fault: FaultCase, sleeps: list[float]) -> PdffillrClient:
    timeout = Timeout(DELAY_TIMEOUT, connect=DELAY_TIMEOUT) if fault.name == "delay" else 10.0
    return PdffillrClient(
        KEY, base_url=emu.url, max_retries=MAX_RETRIES, timeout=timeout, sleep=sleeps.append
    )


def user_messages(emu: Emulator, sid: str, content: str) -> int:
    return sum(1 for e in emu.history(KEY, sid) if e["role"] == "user" and e["content"] == content)


def documents(emu: Emulator, sid: str) -> int:
    return sum(1 for e in emu.history(KEY, sid) if e["type"] == "document")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(port=0) as e:
        yield e


# -- endpoint x fault x {transient, persistent} ------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_cell(emu: Emulator, endpoint: Endpoint, fault: FaultCase, persistent: bool) -> None:
    with PdffillrClient(KEY, base_url=emu.url, sleep=lambda s: None) as setup:
        sid: str | None = None
        if endpoint.name != "create":
            sid = setup.sessions.create("pre").session_id
        if endpoint.name == "messages":
            setup.sessions.send(sid, "seed")  # type: ignore[arg-type]
    before_log = len(emu.request_log)
    before_sessions = emu.sessions(KEY)
    times = MAX_RETRIES + 1 if persistent else MAX_RETRIES
    emu.add_fault(fault.fault(endpoint.method, endpoint.path, times))
    sleeps: list[float] = []

    calls: dict[str, Callable[[PdffillrClient], Any]] = {
        "create": lambda c: c.sessions.create("matrix"),
        "list": lambda c: c.sessions.list(),
        "end": lambda c: c.sessions.end(sid),  # type: ignore[arg-type]
        "messages": lambda c: c.sessions.messages(sid),  # type: ignore[arg-type]
        "send": lambda c: c.sessions.send(sid, "hello"),  # type: ignore[arg-type]
        "attach": lambda c: c.sessions.attach(sid, file=b"%PDF-1.7 x", filename="nda.pdf"),  # type: ignore[arg-type]
    }
    result: Any = None
    error: BaseException | None = None
    with make_client(emu, fault, sleeps) as client:
        try:
            result = calls[endpoint.name](client)
        except PdffillrError as exc:
            error = exc
    settle(emu)

    # The outcome.
    if persistent:
        assert isinstance(error, fault.error), repr(error)
        if fault.error is APIConnectionError:
            assert not isinstance(error, APITimeoutError)
        if fault.status is not None:
            assert getattr(error, "status_code", None) == fault.status
        if fault.name == "502_html":  # an HTML page from a proxy: kept as text, still typed
            assert getattr(error, "body", None) == HTML_502
    else:
        assert error is None, repr(error)

    # Every attempt reached the server, no more; the waits were recorded, never slept.
    attempts = [r for r in emu.request_log[before_log:] if endpoint.matches(r.method, r.path)]
    assert len(attempts) == MAX_RETRIES + 1
    # (logged as they complete: a delayed attempt may finish after the next one)
    assert sorted(str(r.fault) for r in attempts) == sorted(
        [fault.make().kind] * times + ["None"] * (MAX_RETRIES + 1 - times)
    )
    assert len(emu.request_log) == before_log + MAX_RETRIES + 1  # nothing else was sent
    assert len(sleeps) == MAX_RETRIES
    if fault.name == "429":
        assert sleeps == [float(RETRY_AFTER)] * MAX_RETRIES
    else:
        assert all(0 < s <= 8.0 for s in sleeps)
    keys = {r.idempotency_key for r in attempts}
    if endpoint.mutating:
        assert len(keys) == 1 and None not in keys  # one key, reused by every retry
    else:
        assert keys == {None}

    # The upstream state: the action happened at most once, and exactly once if it succeeded
    # or if any attempt reached the action.
    happened = 1 if (not persistent or fault.acts) else 0
    after = emu.sessions(KEY)
    if endpoint.name == "create":
        assert len(after) == happened
        if not persistent:
            assert after[0]["session_id"] == result.session_id and after[0]["title"] == "matrix"
        if happened:
            assert (
                sum(1 for r in attempts if r.replayed)
                == sum(1 for r in attempts if r.fault in (None, "drop_after", "delay", "truncate"))
                - 1
            )
        return
    assert [s["session_id"] for s in after] == [s["session_id"] for s in before_sessions]
    assert sid is not None
    if endpoint.name == "end":
        assert after[0]["status"] == ("ended" if happened else "active")
    elif endpoint.name == "send":
        assert user_messages(emu, sid, "hello") == happened
        assert len(emu.history(KEY, sid)) == 2 * happened
        if result is not None:
            assert [e.id for e in result] == [e["id"] for e in emu.history(KEY, sid)]
    elif endpoint.name == "attach":
        assert documents(emu, sid) == happened
        assert len(emu.history(KEY, sid)) == 2 * happened
        if result is not None:
            assert [e.type for e in result] == ["document", "activity"]
    else:  # reads change nothing
        assert after == before_sessions
        assert emu.history(KEY, sid) == [] or endpoint.name == "messages"
        if result is not None and endpoint.name == "list":
            assert [s.session_id for s in result] == [sid]
        if result is not None and endpoint.name == "messages":
            assert [e.id for e in result] == [e["id"] for e in emu.history(KEY, sid)]
            assert [e.content for e in result] == ["seed", emu.history(KEY, sid)[1]["content"]]


# -- with-blocks ---------------------------------------------------------------------------------

BLOCK_CALLS = {
    "create": BY_NAME["create"],
    "send": BY_NAME["send"],
    "attach": BY_NAME["attach"],
    "final_mirror": BY_NAME["messages"],
    "end": BY_NAME["end"],
}


def run_reap(emu: Emulator, db: Path) -> dict[str, Any]:
    import json

    env = {"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emu.url, "PDFFILLR_SESSIONS_DB": str(db)}
    result = CliRunner().invoke(main, ["reap", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
@pytest.mark.parametrize("call", list(BLOCK_CALLS), ids=list(BLOCK_CALLS))
def test_with_block_cell(
    emu: Emulator, tmp_path: Path, call: str, fault: FaultCase, kind: str
) -> None:
    db = tmp_path / "history.db"
    endpoint = BLOCK_CALLS[call]
    emu.add_fault(fault.fault(endpoint.method, endpoint.path, MAX_RETRIES + 1))
    timeout = Timeout(DELAY_TIMEOUT, connect=DELAY_TIMEOUT) if fault.name == "delay" else 10.0
    outcome = run_block(
        kind,
        Block(title="block", sends=["hello"], attach=(b"%PDF-1.7 y", "lpa.pdf")),
        api_key=KEY,
        base_url=emu.url,
        cache=db,
        catch=PdffillrError,
        max_retries=MAX_RETRIES,
        timeout=timeout,
    )
    ran, error, sleeps = outcome.ran, outcome.error, outcome.sleeps
    session_id = outcome.session.session_id if outcome.ran and outcome.session else None
    settle(emu)
    # The final mirror has a deadline of its own: a server asking it to wait longer (429 with
    # Retry-After 7 s) is not retried, so that the end is sent at once.
    gives_up = call == "final_mirror" and fault.name == "429"
    assert float(RETRY_AFTER) > FINAL_MIRROR_DEADLINE
    assert len(emu.pending_faults) == (1 if gives_up else 0)  # else it fired all its times
    emu.clear_faults()

    # What the block saw.
    if call == "final_mirror":
        assert error is None  # the final mirror is best effort: the block still succeeds
    else:
        assert isinstance(error, fault.error), repr(error)
    assert ran == (call != "create")
    # Only the faulted call was retried, and never slept.
    assert len(sleeps) == (0 if gives_up else MAX_RETRIES)

    # Upstream right after the block: at most one session; "hello" and the document at most once.
    upstream = emu.sessions(KEY)
    assert len(upstream) <= 1
    with HistoryCache(db, api_key=KEY) as cache:
        pending = [p.session_id for p in cache.pending_ends()]
        intents = cache.create_intents()
        if call == "create":
            assert session_id is None
            # The intent is kept whenever the server may have acted (it did, or cannot be known).
            assert len(upstream) == (1 if fault.acts else 0)
            assert len(intents) == (0 if fault.name == "429" else 1)
            # The block has exited: its owner lock is free, reap need not wait for us to exit.
            for i in intents:
                with Probe(db, i.owner_lock) as probe:
                    assert probe.liveness == "dead"
            assert pending == []
        else:
            assert session_id is not None and [u["session_id"] for u in upstream] == [session_id]
            assert intents == []
            assert user_messages(emu, session_id, "hello") == (
                0 if call == "send" and not fault.acts else 1
            )
            # (a failed send ends the block: the attach never runs)
            attached = call != "send" and (call != "attach" or fault.acts)
            assert documents(emu, session_id) == (1 if attached else 0)
            # The mirror: everything the server holds is on disk (a send whose reply was lost
            # included, caught by the final mirror), unless the final mirror itself failed.
            cached = [e.id for e in cache.history(session_id)]
            server = [e["id"] for e in emu.history(KEY, session_id)]
            assert cached == server
            if call == "end":
                assert pending == [session_id]
                row = cache.session(session_id)
                assert row is not None and row.local_state == "end_pending"
                assert fault.error.__name__ in (row.local_error or "")
                assert upstream[0]["status"] == ("ended" if fault.acts else "active")
            else:
                assert pending == [] and upstream[0]["status"] == "ended"

    # Recovery: reap ends whatever is left, and afterwards nothing is active or pending.
    report = run_reap(emu, db)
    left_over = call == "end" or (call == "create" and fault.name != "429")
    assert bool(report["results"]) == left_over
    assert all(r["action"] == "ended" for r in report["results"])
    upstream = emu.sessions(KEY)
    assert [s["status"] for s in upstream] == ["ended"] * len(upstream)
    assert len(upstream) <= 1
    with HistoryCache(db, api_key=KEY) as cache:
        assert cache.pending_ends() == [] and cache.create_intents() == []
        for u in upstream:
            row = cache.session(u["session_id"])
            assert row is not None and row.local_state == "ended"
