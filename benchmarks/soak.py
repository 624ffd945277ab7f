"""Chaos soak: many with-blocks against the emulator under a seeded random fault rate.

    python benchmarks/soak.py                        # 200 blocks, 3 messages each, 20 % faults
    python benchmarks/soak.py --blocks 2000 --fault-rate 0.3 --seed 7 --json
    python benchmarks/soak.py --async --concurrency 8  # AsyncSession blocks, 8 at a time

Every request the emulator receives has a ``--fault-rate`` chance of a random fault (429, 500,
502, 503, a connection dropped before or after the server acted, a truncated body). Each block
opens a session, sends ``--messages`` messages (every ``--attach-every``-th block also attaches
a document, every ``--raise-every``-th block raises an exception of its own after its sends),
then the with-block ends it. The client retries up to ``--max-retries`` times and never sleeps.
The blocks are ``with Session(...)`` blocks, one after another, or with ``--async``
``async with AsyncSession(...)`` blocks, ``--concurrency`` of them at a time in one event loop.

A block that still fails is counted, then a reap-equivalent step (``pdffillr-sessions reap
--older-than 0 --include-live`` with the faults switched off) ends whatever is left. The
figures printed at the end compare the server with the cache:

* leaked: sessions still active upstream after the reap (must be 0);
* duplicates: sessions created twice for one block, messages or documents sent twice (0);
* missing: history entries the server holds that the cache does not (0); extra: the reverse.
  With ``--sync-after`` (for runs with few retries, where blocks fail for good) a ``sync`` runs
  after the reap, as the next run would, and missing is counted after it (and before it).

Exit status 1 if any of leaked, duplicates, missing, extra is not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

KEY = "sk_soak_SECRET_0d1e2f"


class _BlockError(Exception):
    """The block's own failure (a script bug): the session must still be ended."""


def run_soak(
    *,
    blocks: int = 200,
    messages: int = 3,
    fault_rate: float = 0.2,
    seed: int = 1,
    max_retries: int = 10,
    attach_every: int = 10,
    raise_every: int = 25,
    db: Path | str | None = None,
    sync_after: bool = False,
    kind: str = "sync",
    concurrency: int = 1,
) -> dict[str, Any]:
    """Run the soak and return its figures (see the module docstring)."""
    from click.testing import CliRunner

    from pdffillr_sessions import HistoryCache
    from pdffillr_sessions.cli import main
    from pdffillr_sessions.emulator import Emulator

    if kind not in ("sync", "async") or (kind == "sync" and concurrency != 1):
        raise ValueError("kind is sync (one block at a time) or async (any concurrency)")
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="pdffillr-soak-")
        db = Path(tmp.name) / "history.db"
    started = time.perf_counter()
    plans = [_plan(i, messages, attach_every, raise_every) for i in range(blocks)]
    try:
        with Emulator(port=0, fault_rate=fault_rate, seed=seed) as emu:
            with HistoryCache(db, api_key=KEY) as cache:
                if kind == "sync":
                    outcomes = _sync_blocks(emu.url, cache, plans, max_retries)
                else:
                    outcomes = asyncio.run(
                        _async_blocks(emu.url, cache, plans, max_retries, concurrency)
                    )
            block_errors = outcomes.count(None)
            failed_blocks = [o for o in outcomes if o]
            stats_before_reap = emu.stats
            active_before_reap = stats_before_reap["sessions_active"]

            # The reap-equivalent step, on a quiet server (its client sleeps for real).
            emu.fault_rate = 0.0
            env = {
                "PDFFILLR_API_KEY": KEY,
                "PDFFILLR_BASE_URL": emu.url,
                "PDFFILLR_SESSIONS_DB": str(db),
            }
            result = CliRunner().invoke(
                main,
                ["reap", "--older-than", "0", "--include-live", "--json"],
                env=env,
                catch_exceptions=False,
            )
            reaped = json.loads(result.stdout)["results"] if result.exit_code == 0 else None
            missing_before_sync = _missing(emu, db) if sync_after else None
            if sync_after:  # the next run: a sync catches up what failed blocks did not mirror
                synced = CliRunner().invoke(main, ["sync", "--json"], env=env)
                if synced.exit_code != 0:
                    raise RuntimeError(f"sync failed: {synced.output}")

            upstream = emu.sessions(KEY)
            titles = Counter(s["title"] for s in upstream)
            duplicate_sessions = sum(n - 1 for n in titles.values() if n > 1)
            duplicate_entries = missing = extra = 0
            with HistoryCache(db, api_key=KEY) as cache:
                for u in upstream:
                    server = emu.history(KEY, u["session_id"])
                    sent = Counter(
                        e["content"] if e["type"] == "message" else e["document"]["filename"]
                        for e in server
                        if e["role"] == "user" or e["type"] == "document"
                    )
                    duplicate_entries += sum(n - 1 for n in sent.values() if n > 1)
                    cached_ids = {e.id for e in cache.history(u["session_id"])}
                    server_ids = {e["id"] for e in server}
                    missing += len(server_ids - cached_ids)
                    extra += len(cached_ids - server_ids)
                pending_after = len(cache.pending_ends())
                intents_after = len(cache.create_intents())
                integrity = cache.integrity_check()
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "kind": kind,
        "concurrency": concurrency,
        "seed": seed,
        "blocks": blocks,
        "messages_per_block": messages,
        "fault_rate": fault_rate,
        "max_retries": max_retries,
        "requests": stats_before_reap["requests"],
        "faults_injected": stats_before_reap["faults_injected"],
        "faults_by_kind": dict(sorted(stats_before_reap["faults_by_kind"].items())),
        "idempotent_replays": stats_before_reap["idempotent_replays"],
        "sessions_opened": len(upstream),
        "sessions_ended": sum(1 for s in upstream if s["status"] == "ended"),
        "blocks_raising_their_own_error": block_errors,
        "blocks_failed": len(failed_blocks),
        "failures": failed_blocks[:10],
        "active_before_reap": active_before_reap,
        "reaped": None if reaped is None else len(reaped),
        "reap_ok": reaped is not None,
        "leaked": sum(1 for s in upstream if s["status"] != "ended"),
        "duplicates": duplicate_sessions + duplicate_entries,
        "missing": missing,
        "extra": extra,
        "missing_before_sync": missing_before_sync,
        "pending_in_cache": pending_after,
        "intents_in_cache": intents_after,
        "cache_integrity": integrity or "ok",
        "seconds": round(time.perf_counter() - started, 2),
    }


class _Plan(NamedTuple):
    """One block: its title, what it sends and attaches, and whether it raises its own error."""

    title: str
    sends: list[str]
    attach: str | None
    raises: bool


def _plan(i: int, messages: int, attach_every: int, raise_every: int) -> _Plan:
    return _Plan(
        title=f"soak-{i}",
        sends=[f"soak-{i}-m{j}" for j in range(messages)],
        attach=f"soak-{i}.pdf" if attach_every and i % attach_every == 0 else None,
        raises=bool(raise_every) and i % raise_every == raise_every - 1,
    )


def _sync_blocks(url: str, cache: Any, plans: list[_Plan], max_retries: int) -> list[str | None]:
    """Each block with ``Session``; per block: None (it raised its own error), "" (it
    succeeded) or the library error that stopped it."""
    from pdffillr_sessions import PdffillrClient, PdffillrError, Session

    outcomes: list[str | None] = []
    with PdffillrClient(KEY, base_url=url, max_retries=max_retries, sleep=lambda s: None) as client:
        for plan in plans:
            try:
                with Session(client, title=plan.title, cache=cache) as s:
                    for text in plan.sends:
                        s.send(text)
                    if plan.attach:
                        s.attach(file=b"%PDF-1.7 soak", filename=plan.attach)
                    if plan.raises:
                        raise _BlockError(f"{plan.title} failed on its own")
            except _BlockError:
                outcomes.append(None)
            except PdffillrError as exc:
                outcomes.append(f"{plan.title}: {type(exc).__name__}: {exc}")
            else:
                outcomes.append("")
    return outcomes


async def _async_blocks(
    url: str, cache: Any, plans: list[_Plan], max_retries: int, concurrency: int
) -> list[str | None]:
    """The same blocks with ``AsyncSession``, ``concurrency`` at a time in one event loop."""
    from pdffillr_sessions import AsyncPdffillrClient, AsyncSession, PdffillrError

    async def no_sleep(seconds: float) -> None:
        return None

    slots = asyncio.Semaphore(concurrency)
    async with AsyncPdffillrClient(
        KEY, base_url=url, max_retries=max_retries, sleep=no_sleep
    ) as client:

        async def one(plan: _Plan) -> str | None:
            async with slots:
                try:
                    async with AsyncSession(client, title=plan.title, cache=cache) as s:
                        for text in plan.sends:
                            await s.send(text)
                        if plan.attach:
                            await s.attach(file=b"%PDF-1.7 soak", filename=plan.attach)
                        if plan.raises:
                            raise _BlockError(f"{plan.title} failed on its own")
                except _BlockError:
                    return None
                except PdffillrError as exc:
                    return f"{plan.title}: {type(exc).__name__}: {exc}"
                return ""

        return list(await asyncio.gather(*(one(plan) for plan in plans)))


def _missing(emu: Any, db: Path | str) -> int:
    from pdffillr_sessions import HistoryCache

    total = 0
    with HistoryCache(db, api_key=KEY) as cache:
        for s in emu.sessions(KEY):
            cached = {e.id for e in cache.history(s["session_id"])}
            total += sum(1 for e in emu.history(KEY, s["session_id"]) if e["id"] not in cached)
    return total


_KIND_NAMES = {"sync": "Session", "async": "AsyncSession"}


def format_figures(f: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k}: {n}" for k, n in f["faults_by_kind"].items())
    lines = [
        f"soak seed={f['seed']}: {f['blocks']} {_KIND_NAMES[f['kind']]} blocks"
        + (f" ({f['concurrency']} at a time)" if f["concurrency"] > 1 else "")
        + f" x {f['messages_per_block']} messages, "
        f"fault rate {f['fault_rate']:.0%}, max_retries {f['max_retries']}, {f['seconds']} s",
        f"  requests made        {f['requests']}",
        f"  faults injected      {f['faults_injected']} ({kinds})",
        f"  idempotent replays   {f['idempotent_replays']}",
        f"  sessions opened      {f['sessions_opened']}",
        f"  sessions ended       {f['sessions_ended']}",
        f"  blocks failed        {f['blocks_failed']} (reaped afterwards: {f['reaped']}; "
        f"active before the reap: {f['active_before_reap']})",
        f"  blocks raising       {f['blocks_raising_their_own_error']} (their own error)",
        f"  leaked               {f['leaked']}",
        f"  duplicates           {f['duplicates']}",
        f"  missing from cache   {f['missing']} (extra: {f['extra']})"
        + (
            ""
            if f["missing_before_sync"] is None
            else f" after a sync; {f['missing_before_sync']} before it"
        ),
        f"  cache                pending {f['pending_in_cache']}, intents "
        f"{f['intents_in_cache']}, integrity {f['cache_integrity']}",
    ]
    lines.extend(f"  failure: {x}" for x in f["failures"])
    return "\n".join(lines)


def ok(f: dict[str, Any]) -> bool:
    return bool(
        f["reap_ok"]
        and f["leaked"] == 0
        and f["duplicates"] == 0
        and f["missing"] == 0
        and f["extra"] == 0
        and f["pending_in_cache"] == 0
        and f["intents_in_cache"] == 0
        and f["cache_integrity"] == "ok"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=200)
    p.add_argument("--messages", type=int, default=3)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--seed", type=int, action="append", help="repeatable: one run per seed")
    p.add_argument("--max-retries", type=int, default=10)
    p.add_argument("--attach-every", type=int, default=10)
    p.add_argument("--raise-every", type=int, default=25)
    p.add_argument(
        "--sync-after", action="store_true", help="run a sync after the reap (low retries)"
    )
    p.add_argument(
        "--db",
        default=None,
        help="keep the cache here: a file, or a postgresql:// URL (default: a temporary file)",
    )
    p.add_argument("--async", dest="kind", action="store_const", const="async", default="sync")
    p.add_argument(
        "--concurrency", type=int, default=1, help="with --async: blocks at a time (default 1)"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="log every retry (stderr)")
    args = p.parse_args(argv)
    if not args.verbose:  # thousands of retry warnings otherwise
        logging.getLogger("pdffillr_sessions").addHandler(logging.NullHandler())
        logging.getLogger("pdffillr_sessions").propagate = False
    all_ok = True
    for seed in args.seed or [1]:
        figures = run_soak(
            blocks=args.blocks,
            messages=args.messages,
            fault_rate=args.fault_rate,
            seed=seed,
            max_retries=args.max_retries,
            attach_every=args.attach_every,
            raise_every=args.raise_every,
            db=args.db,
            sync_after=args.sync_after,
            kind=args.kind,
            concurrency=args.concurrency,
        )
        print(json.dumps(figures) if args.json else format_figures(figures), flush=True)
        all_ok = all_ok and ok(figures)
    return 0 if all_ok else 1


if __name__ == "__main__":
    # Run from a checkout without installing: the package is next to benchmarks/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
