"""One with-block, run as ``Session`` (the sync client) or as ``AsyncSession`` (the async client,
in a fresh event loop): the tests that hold both classes to the same promises describe the block
once, as data, and run it either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pdffillr_sessions import AsyncPdffillrClient, AsyncSession, PdffillrClient, Session
from pdffillr_sessions._secret import Secret

KINDS = ["sync", "async"]

Handle = Session | AsyncSession


@dataclass
class Block:
    """What the block does: ``inside(s)`` right after entry, then the sends, then the attach
    (``(bytes, filename)``), then ``after(s)``, then raises ``raises`` if given."""

    title: str | None = None
    sends: Sequence[str] = ()
    attach: tuple[bytes, str] | None = None
    inside: Callable[[Handle], None] | None = None
    after: Callable[[Handle], None] | None = None
    raises: BaseException | None = None


@dataclass
class Outcome:
    ran: bool = False
    session: Handle | None = None
    error: BaseException | None = None
    sleeps: list[float] = field(default_factory=list)


def run_block(
    kind: str,
    block: Block,
    *,
    api_key: str | Secret,
    base_url: str,
    cache: Any,
    catch: type[BaseException] | tuple[type[BaseException], ...] = (),
    **client_options: Any,
) -> Outcome:
    """Run ``block`` with a client of ``kind`` whose retry waits are recorded, never slept;
    an exception of ``catch`` leaving the block is kept in ``Outcome.error``."""
    outcome = Outcome()
    if kind == "sync":
        with PdffillrClient(
            api_key, base_url=base_url, sleep=outcome.sleeps.append, **client_options
        ) as client:
            try:
                with Session(client, title=block.title, cache=cache) as s:
                    _entered(outcome, block, s)
                    for text in block.sends:
                        s.send(text)
                    if block.attach is not None:
                        s.attach(file=block.attach[0], filename=block.attach[1])
                    _leaving(block, s)
            except catch as exc:
                outcome.error = exc
        return outcome

    async def main() -> None:
        async def record(seconds: float) -> None:
            outcome.sleeps.append(seconds)

        async with AsyncPdffillrClient(
            api_key, base_url=base_url, sleep=record, **client_options
        ) as client:
            try:
                async with AsyncSession(client, title=block.title, cache=cache) as s:
                    _entered(outcome, block, s)
                    for text in block.sends:
                        await s.send(text)
                    if block.attach is not None:
                        await s.attach(file=block.attach[0], filename=block.attach[1])
                    _leaving(block, s)
            except catch as exc:
                outcome.error = exc

    assert kind == "async", kind
    asyncio.run(main())
    return outcome


def _entered(outcome: Outcome, block: Block, s: Handle) -> None:
    outcome.ran = True
    outcome.session = s
    if block.inside is not None:
        block.inside(s)


def _leaving(block: Block, s: Handle) -> None:
    if block.after is not None:
        block.after(s)
    if block.raises is not None:
        raise block.raises
