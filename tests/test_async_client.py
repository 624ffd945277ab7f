"""The async twin: same calls, same retry decisions, same errors, against a live emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from pdffillr_sessions import (
    AsyncPdffillrClient,
    BadRequestError,
    ClientClosedError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    SessionEndedError,
)
from pdffillr_sessions.emulator import Emulator, Fault

KEY = "sk_async_tests_abcdef012345"
T = TypeVar("T")


def run(factory: Callable[[AsyncPdffillrClient], Awaitable[T]], emu: Emulator, **kw: Any) -> T:
    async def main() -> T:
        async with AsyncPdffillrClient(KEY, base_url=emu.url, **kw) as client:
            return await factory(client)

    return asyncio.run(main())


async def no_sleep(seconds: float) -> None:
    return None


def test_async_lifecycle(emulator: Emulator) -> None:
    async def scenario(client: AsyncPdffillrClient) -> tuple[str, int, bool]:
        info = await client.sessions.create(title="async review")
        sent = await client.sessions.send(info.session_id, "hello")
        history = await client.sessions.messages(info.session_id)
        assert [e.id for e in history] == [e.id for e in sent]
        docs = await client.sessions.attach(info.session_id, file=b"%PDF", filename="a.pdf")
        assert any(e.type == "document" for e in docs)
        await client.sessions.end(info.session_id)
        await client.sessions.end(info.session_id)  # twice is fine
        with pytest.raises(SessionEndedError):
            await client.sessions.send(info.session_id, "late")
        [listed] = await client.sessions.list()
        return info.session_id, listed.message_count, listed.ended

    session_id, count, ended = run(scenario, emulator)
    assert ended and count == len(emulator.history(KEY, session_id))


def test_async_retries_reuse_the_idempotency_key_and_never_duplicate(emulator: Emulator) -> None:
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario(client: AsyncPdffillrClient) -> str:
        info = await client.sessions.create()
        emulator.add_fault(Fault("drop_after", method="POST", path="/messages$"))
        emulator.add_fault(
            Fault(
                "status",
                status=503,
                method="POST",
                path="/messages$",
                headers={"Retry-After": "0.25"},
            )
        )
        await client.sessions.send(info.session_id, "exactly once")
        return info.session_id

    session_id = run(scenario, emulator, sleep=record)
    users = [e for e in emulator.history(KEY, session_id) if e["role"] == "user"]
    assert [e["content"] for e in users] == ["exactly once"]
    sends = [r for r in emulator.request_log if r.path.endswith("/messages") and r.method == "POST"]
    assert len(sends) == 3 and len({r.idempotency_key for r in sends}) == 1
    assert sleeps[1] == 0.25 and len(sleeps) == 2


def test_async_errors_are_the_same_classes(emulator: Emulator) -> None:
    async def scenario(client: AsyncPdffillrClient) -> None:
        with pytest.raises(NotFoundError):
            await client.sessions.messages("sess_missing")
        with pytest.raises(InvalidInputError):
            await client.sessions.messages("..")
        emulator.add_fault(Fault("status", status=500, times=3))
        with pytest.raises(InternalServerError):
            await client.sessions.list()

    run(scenario, emulator, sleep=no_sleep)
    assert sum(1 for r in emulator.request_log if r.fault == "500") == 3


def test_async_client_repr_hides_the_key(emulator: Emulator) -> None:
    async def scenario(client: AsyncPdffillrClient) -> str:
        return repr(client)

    assert KEY not in run(scenario, emulator)


def test_async_request_is_the_one_loop_like_the_sync_client(emulator: Emulator) -> None:
    """``request()`` sends one given Idempotency-Key on every attempt and returns the 2xx."""

    async def scenario(client: AsyncPdffillrClient) -> str:
        emulator.add_fault(Fault("status", status=503, method="POST", path="/sessions$"))
        response = await client.request(
            "POST",
            "/v1/sdk/chat/sessions",
            json={"title": "raw"},
            idempotent=False,
            idempotency_key="pfs_async_raw_request",
        )
        assert response.is_success
        session_id: str = response.json()["session_id"]
        with pytest.raises(BadRequestError):
            await client.request(
                "POST", f"/v1/sdk/chat/sessions/{session_id}/messages", json={"content": ""}
            )
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await client.request("GET", "/v1/sdk/chat/sessions")
        return session_id

    run(scenario, emulator, sleep=no_sleep)
    log = emulator.request_log
    creates = [r for r in log if r.method == "POST" and r.path.endswith("/sessions")]
    assert [r.fault for r in creates] == ["503", None] and creates[1].status == 200
    assert {r.idempotency_key for r in creates} == {"pfs_async_raw_request"}
