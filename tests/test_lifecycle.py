"""The decisions ``Session`` and ``AsyncSession`` share (``_lifecycle``), tested on their own, and
the one that a soak of ``AsyncSession`` blocks showed wrong for both: a create whose reply was
lost and whose retry was then refused had been taken for "definitely not created"."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pdffillr_sessions import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    ClientClosedError,
    HistoryCache,
    InternalServerError,
    InvalidInputError,
    PdffillrClient,
    ProtocolError,
    RateLimitError,
    Timeout,
    reap,
)
from pdffillr_sessions._lifecycle import (
    definitely_not_created,
    exit_error,
    exit_timeout,
    run_now,
)
from pdffillr_sessions.emulator import Emulator, Fault
from tests._blocks import KINDS, Block, run_block

KEY = "sk_lifecycle_SECRET_c0ffee"


def status(cls: type[Any], code: int, *, acted_before: bool = False) -> Any:
    exc = cls("refused", status_code=code)
    exc.may_have_acted = exc.may_have_acted or acted_before
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (APIConnectionError("refused", request_sent=False), True),
        (APIConnectionError("reset", request_sent=True), False),
        (APITimeoutError("slow", request_sent=True), False),
        (status(RateLimitError, 429), True),
        (status(BadRequestError, 400), True),
        (status(RateLimitError, 429, acted_before=True), False),  # the lost reply, then a 429
        (status(InternalServerError, 503), False),
        (ProtocolError("a 2xx we could not read: the server did create it"), False),
        (InvalidInputError("bad title"), True),
        (ClientClosedError("closed"), True),
        (KeyboardInterrupt(), False),
        (asyncio.CancelledError(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_what_counts_as_definitely_not_created(exc: BaseException, expected: bool) -> None:
    assert definitely_not_created(exc) is expected


def test_the_blocks_exception_is_never_replaced() -> None:
    block, end, interrupt = ValueError("block"), APITimeoutError("end"), KeyboardInterrupt()
    assert exit_error(block, end, interrupt, "sess_1") is None
    assert any("sess_1" in n and "APITimeoutError" in n for n in block.__notes__)
    assert not getattr(interrupt, "__notes__", None)


def test_an_interruption_during_the_exit_propagates_with_a_failed_end_noted() -> None:
    end, cancel = APITimeoutError("end"), asyncio.CancelledError()
    assert exit_error(None, end, cancel, "sess_2") is cancel
    assert any("sess_2" in n and "end-pending" in n for n in cancel.__notes__)
    assert exit_error(None, None, cancel, "sess_2") is cancel


def test_a_failed_end_after_a_successful_block_is_raised() -> None:
    end = APITimeoutError("end")
    assert exit_error(None, end, None, "sess_3") is end
    assert not getattr(end, "__notes__", None)
    assert exit_error(None, None, None, "sess_3") is None
    assert exit_error(None, end, end, "sess_3") is end  # the end interrupted: said once


def test_the_exits_deadlines_never_lengthen_the_clients_total() -> None:
    assert exit_timeout(Timeout(60), 5.0).total == 5.0
    assert exit_timeout(Timeout(60, total=2.0), 5.0).total == 2.0
    assert exit_timeout(Timeout(60, connect=3), 5.0).connect == 3


def test_run_now_refuses_a_step_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_now(suspends)

    async def returns(x: int) -> int:
        return x + 1

    assert run_now(returns, 1) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_create_whose_reply_was_lost_then_refused_keeps_its_intent(
    kind: str, emulator: Emulator, tmp_path: Path
) -> None:
    """Attempt 1 creates the session and its reply is lost; attempt 2 (the replay, same key)
    is refused with 429; no attempt is left. The session exists upstream: the intent must stay,
    and default reap must end it (before the fix it was forgotten, and the session leaked)."""
    db = tmp_path / "history.db"
    emulator.add_fault(Fault("drop_after", method="POST", path="/sessions$"))
    emulator.add_fault(Fault("status", status=429, method="POST", path="/sessions$"))
    outcome = run_block(
        kind,
        Block(title="lost then refused"),
        api_key=KEY,
        base_url=emulator.url,
        cache=db,
        catch=RateLimitError,
        max_retries=1,
    )
    assert isinstance(outcome.error, RateLimitError) and outcome.error.may_have_acted
    assert not outcome.ran
    [made] = emulator.sessions(KEY)
    assert made["status"] == "active"
    with HistoryCache(db, api_key=KEY) as cache:
        assert [i.title for i in cache.create_intents()] == ["lost then refused"]
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        report = reap(client, db)
    assert [(o.action, o.session_id) for o in report.outcomes] == [("ended", made["session_id"])]
    assert [s["status"] for s in emulator.sessions(KEY)] == ["ended"]
