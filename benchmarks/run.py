"""The pdffillr-sessions benchmark suite (issue 6): eight figures, each against a baseline.

    python benchmarks/run.py            # the full suite (a few minutes)
    python benchmarks/run.py --quick    # small N, a few seconds (the CI smoke test runs this)

Every figure is a ratio against a baseline measured in the same run, on the same machine, with
the same data; each time is the median of several repetitions (baseline and library interleaved,
so that noise from the shared machine hits both alike). Every timed operation is checked for
correctness afterwards (row counts, equality with the baseline's result); a wrong result aborts
the run. Results go to stdout and to ``benchmarks/RESULTS.md`` (``--out`` elsewhere).

Large caches are generated synthetically through the library's own write path
(``HistoryEntry`` objects -> ``HistoryCache.mirror_history``), not over HTTP.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere: benchmark the working tree's library
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from pdffillr_sessions import HistoryEntry, PdffillrClient, Session, SessionInfo  # noqa: E402
from pdffillr_sessions.cache import HistoryCache  # noqa: E402
from pdffillr_sessions.emulator import Emulator  # noqa: E402

SCOPE = "bench-scope"
API_KEY = "sk_bench_0123456789abcdef"

# --------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    mirror_entries: int  # figures 1-3, 6
    mirror_sessions: int
    big_entries: int  # figure 5 (figure 4 reads one of its sessions)
    big_sessions: int
    list_requests: int  # figure 7
    sends: int  # figure 8
    repeat: int  # repetitions of each timed measurement (median taken)
    cli_repeat: int


FULL = Sizes(100_000, 10, 1_000_000, 10, 2_000, 50, 5, 9)
QUICK = Sizes(2_000, 10, 10_000, 5, 150, 10, 3, 3)

# --------------------------------------------------------------------------------------------
# Synthetic data: fund-administration chat text, a Zipf-like vocabulary (deterministic)


def _words(text: str) -> list[str]:
    return text.split()


_COMMON = _words(
    "the of and to a in for is on that with as by this be are from at or an it not which have "
    "has will should was were may any all its their our your per each under"
)
_DOMAIN = _words(
    "fund letter side capital call distribution investor limited partner agreement clause "
    "subscription commitment nav report quarter fee management carried interest waterfall "
    "hurdle clawback notice review document schedule amendment transfer redemption audit "
    "valuation portfolio allocation expense statement consent advisory committee reporting "
    "deadline signature register kyc aml custodian administrator reconciliation ledger "
    "accrual equalisation drawdown recallable preferred return catch-up vintage "
    "co-investment lpa ppm term sheet covenant warranty indemnity trustee"
)


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    rare = ["".join(rng.choice(letters) for _ in range(rng.randint(4, 10))) for _ in range(4000)]
    words = _COMMON + _DOMAIN + rare
    weights = [1.0 / (rank + 8) for rank in range(len(words))]  # Zipf-like
    return words, weights


class Corpus:
    """Deterministic history entries shaped like the emulator's (raw = the server's object)."""

    def __init__(self, seed: int = 6) -> None:
        rng = random.Random(seed)
        words, weights = _vocabulary(rng)
        # A pool of pre-drawn texts keeps generation fast; entries pick from it by index.
        self.texts = [
            " ".join(rng.choices(words, weights, k=rng.randint(20, 70))) for _ in range(5003)
        ]
        self.t0 = datetime(2025, 1, 1, tzinfo=UTC)

    def entries(self, session_id: str, start: int, count: int, salt: int) -> list[HistoryEntry]:
        out: list[HistoryEntry] = []
        texts = self.texts
        n_texts = len(texts)
        t0 = self.t0
        ids = random.Random(f"{session_id}/{start}")  # random hex ids, like the server's
        for i in range(start, start + count):
            eid = f"msg_{ids.getrandbits(96):024x}"
            created = t0 + timedelta(seconds=salt * 10_000_000 + i, microseconds=i % 997)
            role = "user" if i % 2 == 0 else "assistant"
            content = texts[(i * 7919 + salt * 104729) % n_texts]
            raw = {
                "id": eid,
                "type": "message",
                "role": role,
                "content": content,
                "created_at": created.isoformat().replace("+00:00", "Z"),
            }
            out.append(
                HistoryEntry(
                    id=eid,
                    session_id=session_id,
                    type="message",
                    role=role,
                    content=content,
                    created_at=created,
                    raw=raw,
                )
            )
        return out


def session_info(session_id: str, n: int, salt: int) -> SessionInfo:
    created = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=salt)
    raw = {
        "session_id": session_id,
        "title": f"Bench session {salt}",
        "status": "ended",
        "message_count": n,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }
    return SessionInfo(
        session_id=session_id,
        title=raw["title"],
        status="ended",
        message_count=n,
        created_at=created,
        raw=raw,
    )


@dataclass
class Dataset:
    """Sessions of history entries (full histories, oldest first)."""

    histories: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    infos: list[SessionInfo] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.histories.values())


def make_dataset(corpus: Corpus, total: int, sessions: int, prefix: str) -> Dataset:
    ds = Dataset()
    per = total // sessions
    for s in range(sessions):
        sid = f"{prefix}_{s:03d}"
        ds.histories[sid] = corpus.entries(sid, 0, per, s)
        ds.infos.append(session_info(sid, per, s))
    return ds


# --------------------------------------------------------------------------------------------
# Timing


def median_of(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()  # both sides start from the same heap state
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


class Failed(Exception):
    """A timed operation produced a wrong result: the benchmark is invalid."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


@dataclass
class Figure:
    number: int
    title: str
    baseline: str
    base_s: float
    ours_s: float
    ratio: float  # as the target states it
    ratio_label: str  # "throughput x" / "time x" / ...
    target: str
    met: bool
    detail: str = ""


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


# --------------------------------------------------------------------------------------------
# Helpers on files


def fresh_cache(path: Path) -> HistoryCache:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return HistoryCache(path, scope=SCOPE)


def checkpointed_copy(src: Path, dst: Path) -> None:
    """A standalone copy of a WAL database (checkpointed first, so one file is enough)."""
    conn = sqlite3.connect(src)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(src, dst)


def mirror_all(cache: HistoryCache, ds: Dataset) -> int:
    cache.upsert_sessions(ds.infos)
    inserted = 0
    for sid, entries in ds.histories.items():
        inserted += cache.mirror_history(sid, entries)
    return inserted


def count_rows(path: Path, sql: str = "SELECT count(*) FROM history") -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Figure 1: mirror into an empty cache, vs raw executemany


_BASE_SCHEMA = (
    "CREATE TABLE history (scope TEXT, session_id TEXT, id TEXT, seq INTEGER, type TEXT, "
    "role TEXT, content TEXT, created_at TEXT, raw TEXT)"
)


def raw_executemany(path: Path, ds: Dataset) -> float:
    """The baseline: the same HistoryEntry objects, tuples built (json.dumps of raw, ISO
    timestamps) in the timed region, one executemany per session into one plain table with
    no index, one transaction, default journal mode, on a fresh file."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(_BASE_SCHEMA)
    dumps = json.dumps
    gc.collect()
    t = time.perf_counter()
    conn.execute("BEGIN")
    for sid, entries in ds.histories.items():
        conn.executemany(
            "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    SCOPE,
                    sid,
                    e.id,
                    seq,
                    e.type,
                    e.role,
                    e.content,
                    e.created_at.isoformat(),
                    dumps(e.raw),
                )
                for seq, e in enumerate(entries)
            ),
        )
    conn.execute("COMMIT")
    conn.close()
    elapsed = time.perf_counter() - t
    conn = sqlite3.connect(path)
    n = conn.execute("SELECT count(*) FROM history").fetchone()[0]
    conn.close()
    check(n == ds.total, f"baseline wrote {n} rows, expected {ds.total}")
    return elapsed


def fig1(work: Path, ds: Dataset, repeat: int) -> tuple[Figure, Path]:
    base_times: list[float] = []
    our_times: list[float] = []
    cache_path = work / "fig1.db"
    for _ in range(repeat):
        base_times.append(raw_executemany(work / "fig1-base.db", ds))
        cache = fresh_cache(cache_path)

        def mirror_and_close(c: HistoryCache = cache) -> int:
            # close() is timed too: the WAL checkpoint it may do is part of the write's cost.
            try:
                return mirror_all(c, ds)
            finally:
                c.close()

        t, inserted = timed(mirror_and_close)
        our_times.append(t)
        check(inserted == ds.total, f"mirror inserted {inserted}, expected {ds.total}")
    # Correctness of the last run: every row, full-text index complete, a round trip equal.
    check(count_rows(cache_path) == ds.total, "history row count")
    check(count_rows(cache_path, "SELECT count(*) FROM history_fts") == ds.total, "fts rows")
    with HistoryCache(cache_path, scope=SCOPE) as cache:
        check(cache.integrity_check() == [], "integrity / FTS5 integrity check")
        sid = next(iter(ds.histories))
        check(cache.history(sid) == ds.histories[sid], "read-back equals what was mirrored")
        check(len(cache.search("capital call", limit=5)) == 5, "search works after mirror")
    b, o = statistics.median(base_times), statistics.median(our_times)
    ratio = b / o
    fig = Figure(
        1,
        f"mirror {ds.total:,} entries ({len(ds.histories)} sessions) into an empty cache, FTS on",
        "raw sqlite3 executemany of the same rows, one plain table, one transaction",
        b,
        o,
        ratio,
        "throughput",
        ">= 0.40",
        ratio >= 0.40,
        f"{ds.total / o:,.0f} rows/s vs {ds.total / b:,.0f} rows/s",
    )
    return fig, cache_path


# --------------------------------------------------------------------------------------------
# Figures 2 and 3: re-sync


def resync(cache: HistoryCache, ds: Dataset) -> int:
    """What `sync` does with the data (after fetching): upsert the listed sessions, mirror."""
    return mirror_all(cache, ds)


def fig2(work: Path, mirrored: Path, ds: Dataset, fig1_s: float, repeat: int) -> Figure:
    path = work / "fig2.db"
    checkpointed_copy(mirrored, path)
    times: list[float] = []
    with HistoryCache(path, scope=SCOPE) as cache:
        conn = cache._conn
        for _ in range(repeat):
            changes = conn.total_changes
            t, inserted = timed(lambda c=cache: resync(c, ds))
            times.append(t)
            check(inserted == 0, f"unchanged re-sync inserted {inserted} rows")
            check(conn.total_changes == changes, "unchanged re-sync wrote rows")
    check(count_rows(path) == ds.total, "row count after unchanged re-sync")
    o = statistics.median(times)
    ratio = o / fig1_s
    return Figure(
        2,
        f"re-sync an unchanged {ds.total:,}-entry cache",
        "figure 1's time",
        fig1_s,
        o,
        ratio,
        "time",
        "<= 0.02, 0 rows written",
        ratio <= 0.02,
        "0 rows written (total_changes unchanged)",
    )


def fig3(
    work: Path, mirrored: Path, ds: Dataset, corpus: Corpus, fig1_s: float, repeat: int
) -> Figure:
    grown = Dataset(infos=[])
    added = 0
    for salt, (sid, entries) in enumerate(ds.histories.items()):
        more = max(1, len(entries) // 100)
        grown.histories[sid] = entries + corpus.entries(sid, len(entries), more, salt)
        grown.infos.append(session_info(sid, len(entries) + more, salt))
        added += more
    path = work / "fig3.db"
    times: list[float] = []
    for _ in range(repeat):
        checkpointed_copy(mirrored, path)
        with HistoryCache(path, scope=SCOPE) as cache:
            t, inserted = timed(lambda c=cache: resync(c, grown))
        times.append(t)
        check(inserted == added, f"1% re-sync inserted {inserted}, expected {added}")
    check(count_rows(path) == ds.total + added, "row count after 1% re-sync")
    check(count_rows(path, "SELECT count(*) FROM history_fts") == ds.total + added, "fts rows")
    with HistoryCache(path, scope=SCOPE) as cache:
        sid = next(iter(grown.histories))
        check(cache.history(sid) == grown.histories[sid], "read-back after 1% re-sync")
    o = statistics.median(times)
    ratio = o / fig1_s
    return Figure(
        3,
        f"re-sync with 1% new entries ({added:,} new)",
        "figure 1's time",
        fig1_s,
        o,
        ratio,
        "time",
        "<= 0.05",
        ratio <= 0.05,
    )


# --------------------------------------------------------------------------------------------
# Figures 4 and 5: reads on the big cache


def build_big(work: Path, corpus: Corpus, sizes: Sizes) -> tuple[Path, Dataset]:
    """The big cache, one session at a time; only the first session's entries are kept (to
    check reads against). Holding a million entries in this process while timing reads would
    make every GC pass of both sides walk them: no real reader has that heap."""
    path = work / "big.db"
    per = sizes.big_entries // sizes.big_sessions
    kept = Dataset()
    with fresh_cache(path) as cache:
        for s in range(sizes.big_sessions):
            sid = f"big_{s:03d}"
            entries = corpus.entries(sid, 0, per, s)
            cache.upsert_sessions([session_info(sid, per, s)])
            check(cache.mirror_history(sid, entries) == per, "big cache build")
            if s == 0:
                kept.histories[sid] = entries
    check(count_rows(path) == sizes.big_entries, "big cache rows")
    return path, kept


def fig4(path: Path, ds: Dataset, repeat: int) -> Figure:
    sid = next(iter(ds.histories))
    expected = ds.histories[sid]
    sql = (
        "SELECT id, type, role, content, created_at, raw FROM history "
        "WHERE scope = ? AND session_id = ? ORDER BY seq"
    )
    raw_conn = sqlite3.connect(path)
    base_times: list[float] = []
    our_times: list[float] = []
    with HistoryCache(path, scope=SCOPE) as cache:
        for rep in range(repeat):
            t, rows = timed(lambda: raw_conn.execute(sql, (SCOPE, sid)).fetchall())
            base_times.append(t)
            ids = [r[0] for r in rows]
            del rows  # neither side's previous result stays alive during the next timing
            t, entries = timed(lambda c=cache: c.history(sid))
            our_times.append(t)
            check(len(ids) == len(entries) == len(expected), "row counts differ")
            check(ids == [e.id for e in entries], "ids differ from baseline")
            if rep == 0:
                check(entries == expected, "history() differs from what was mirrored")
                check(
                    all(
                        dict(a.raw) == b.raw for a, b in zip(entries[:1000], expected, strict=False)
                    ),
                    "raw differs",
                )
            del entries, ids
    raw_conn.close()
    b, o = statistics.median(base_times), statistics.median(our_times)
    ratio = b / o
    return Figure(
        4,
        f"read one {len(expected):,}-entry session as HistoryEntry objects",
        "raw sqlite3 select of the same rows as tuples",
        b,
        o,
        ratio,
        "speed",
        ">= 0.35",
        ratio >= 0.35,
    )


def fig5(path: Path, total: int, repeat: int) -> Figure:
    query = "capital fund"
    match = '"capital" "fund"'
    sql = "SELECT rowid, rank FROM history_fts WHERE history_fts MATCH ? ORDER BY rank LIMIT 20"
    raw_conn = sqlite3.connect(path)
    matches = raw_conn.execute(
        "SELECT count(*) FROM history_fts WHERE history_fts MATCH ?", (match,)
    ).fetchone()[0]
    each = [
        raw_conn.execute(
            "SELECT count(*) FROM history_fts WHERE history_fts MATCH ?", (f'"{w}"',)
        ).fetchone()[0]
        for w in query.split()
    ]
    base_times: list[float] = []
    our_times: list[float] = []
    with HistoryCache(path, scope=SCOPE) as cache:
        cache.search(query)  # warm both alike
        raw_conn.execute(sql, (match,)).fetchall()
        for _ in range(max(repeat, 5)):
            t, rows = timed(lambda: raw_conn.execute(sql, (match,)).fetchall())
            base_times.append(t)
            t, hits = timed(lambda c=cache: c.search(query, limit=20))
            our_times.append(t)
            check(len(hits) == len(rows) == min(20, matches), "hit counts differ")
            ids = [
                r[0]
                for r in raw_conn.execute(
                    f"SELECT rowid FROM history WHERE id IN ({','.join('?' * len(hits))})",
                    [h.entry.id for h in hits],
                )
            ]
            check(sorted(ids) == sorted(r[0] for r in rows), "hits differ from raw FTS5")
            check([h.rank for h in hits] == [r[1] for r in rows], "ranks differ")
    raw_conn.close()
    b, o = statistics.median(base_times), statistics.median(our_times)
    ratio = o / b
    return Figure(
        5,
        f"full-text search, 2 common words, top 20, on {total:,} entries",
        "raw FTS5 MATCH ... ORDER BY rank LIMIT 20",
        b,
        o,
        ratio,
        "latency",
        "<= 1.5x and < 50 ms",
        ratio <= 1.5 and o < 0.050,
        f"query {query!r}: the words are in {each[0] / total:.0%} and {each[1] / total:.0%} "
        f"of entries, both in {matches:,} ({matches / total:.1%})",
    )


# --------------------------------------------------------------------------------------------
# Figure 6: CLI start-to-exit


def fig6(work: Path, mirrored: Path, ds: Dataset, repeat: int) -> Figure:
    path = work / "fig6.db"
    checkpointed_copy(mirrored, path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFFILLR_")}
    ours = [sys.executable, "-m", "pdffillr_sessions", "sessions", "--db", str(path)]
    base = [sys.executable, "-m", "sqlite_utils", "tables", str(path)]

    def run(cmd: list[str]) -> tuple[float, str]:
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        elapsed = time.perf_counter() - t
        check(proc.returncode == 0, f"{cmd[2]} failed: {proc.stderr.strip()[-300:]}")
        return elapsed, proc.stdout

    run(ours), run(base)  # warm the OS caches for both
    base_times: list[float] = []
    our_times: list[float] = []
    for _ in range(repeat):
        t, out = run(base)
        base_times.append(t)
        check("history" in out, "sqlite-utils tables output")
        t, out = run(ours)
        our_times.append(t)
        check(all(sid in out for sid in ds.histories), "sessions output lists every session")
    b, o = statistics.median(base_times), statistics.median(our_times)
    ratio = o / b
    return Figure(
        6,
        f"`python -m pdffillr_sessions sessions --db X`, {ds.total:,}-entry cache",
        "`python -m sqlite_utils tables X`, same file",
        b,
        o,
        ratio,
        "wall time",
        "<= 1.0x",
        ratio <= 1.0,
    )


# --------------------------------------------------------------------------------------------
# Figures 7 and 8: the client against the emulator on a socket


def fig7(n: int, repeat: int) -> Figure:
    with Emulator() as emu:
        with PdffillrClient(api_key=API_KEY, base_url=emu.url) as client:
            for i in range(20):
                client.sessions.create(f"listed {i}")
            expected = [s.session_id for s in client.sessions.list()]
        headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
        path = "/v1/sdk/chat/sessions"
        base_times: list[float] = []
        our_times: list[float] = []
        chunk = max(1, n // repeat)
        with (
            httpx.Client(base_url=emu.url, headers=headers) as bare,
            PdffillrClient(api_key=API_KEY, base_url=emu.url) as client,
        ):
            bare.get(path).json(), client.sessions.list()  # connect both
            for _ in range(repeat):
                t = time.perf_counter()
                for _ in range(chunk):
                    r = bare.get(path)
                    r.raise_for_status()
                    body = r.json()
                base_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                for _ in range(chunk):
                    listed = client.sessions.list()
                our_times.append(time.perf_counter() - t)
                items = body["data"] if isinstance(body, dict) else body
                check([s["session_id"] for s in items] == expected, "bare list result")
                check([s.session_id for s in listed] == expected, "client list result")
    b = statistics.median(base_times) * repeat
    o = statistics.median(our_times) * repeat
    ratio = o / b
    return Figure(
        7,
        f"{chunk * repeat:,} sequential client.sessions.list() on a socket",
        "the same GETs with a bare reused httpx.Client (+ .json())",
        b,
        o,
        ratio,
        "time",
        "<= 1.25x",
        ratio <= 1.25,
        f"{o / (chunk * repeat) * 1000:.3f} ms vs {b / (chunk * repeat) * 1000:.3f} ms a call",
    )


def fig8(work: Path, sends: int, repeat: int) -> Figure:
    cache_path = work / "fig8.db"
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    base_path = "/v1/sdk/chat/sessions"
    messages = [
        f"Please review clause {i} of the side letter for the capital call" for i in range(sends)
    ]
    base_times: list[float] = []
    our_times: list[float] = []
    with (
        Emulator() as emu,
        httpx.Client(base_url=emu.url, headers=headers) as bare,
        PdffillrClient(api_key=API_KEY, base_url=emu.url) as client,
        HistoryCache(cache_path, scope=client.key_scope) as cache,
    ):

        def idem() -> dict[str, str]:
            # The same requests on the wire as ours: the contract says create and send are not
            # idempotent on their own, so a careful bare-httpx user sends a key too (and the
            # server then does the same work for both sides).
            return {"Idempotency-Key": uuid.uuid4().hex}

        def baseline() -> tuple[str, int]:
            r = bare.post(base_path, json={"title": "bench"}, headers=idem())
            r.raise_for_status()
            sid = r.json()["session_id"]
            got = 0
            for m in messages:
                r = bare.post(f"{base_path}/{sid}/messages", json={"content": m}, headers=idem())
                r.raise_for_status()
                body = r.json()
                got += len(body["data"] if isinstance(body, dict) else body)
            bare.post(f"{base_path}/{sid}/end").raise_for_status()
            return sid, got

        def ours() -> tuple[str, int]:
            got = 0
            with Session(client, title="bench", cache=cache) as s:
                for m in messages:
                    got += len(s.send(m))
            return s.session_id, got

        baseline(), ours()  # connect both, warm up
        for _ in range(repeat):
            t, (_, got_b) = timed(baseline)
            base_times.append(t)
            t, (sid, got_o) = timed(ours)
            our_times.append(t)
            check(got_b == got_o >= sends, "entries returned by the sends")
            server = client.sessions.messages(sid)
            check(cache.history(sid) == server, "the cache holds the server's history")
            info = cache.session(sid)
            check(info is not None and info.status == "ended", "session ended and cached")
    b, o = statistics.median(base_times), statistics.median(our_times)
    ratio = o / b
    return Figure(
        8,
        f"a with-block of {sends} sends, cache on",
        f"create + {sends} sends + end through a bare httpx.Client, no cache",
        b,
        o,
        ratio,
        "time",
        "<= 1.3x",
        ratio <= 1.3,
    )


# --------------------------------------------------------------------------------------------
# Report


def table(figs: Sequence[Figure]) -> str:
    lines = [
        "| # | figure | baseline (same run) | baseline | ours | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figs:
        detail = f" ({f.detail})" if f.detail else ""
        lines.append(
            f"| {f.number} | {f.title}{detail} | {f.baseline} | {fmt_s(f.base_s)} | "
            f"{fmt_s(f.ours_s)} | {f.ratio:.3f} ({f.ratio_label}) | {f.target} | "
            f"{'yes' if f.met else '**NO**'} |"
        )
    return "\n".join(lines)


METHOD = """\
How it is measured (`benchmarks/run.py`):

- Each time is the median of several repetitions; baseline and library runs are interleaved.
- Figure 1's baseline starts from the same `HistoryEntry` objects and builds its tuples
  (`json.dumps(raw)`, `created_at.isoformat()`) inside the timed region, then inserts them with
  one `executemany` per session into one plain table (no index, no FTS) in one transaction,
  default journal mode, on a fresh file; `close()` is timed on both sides. The library side is
  10 `mirror_history` calls (one per session, each its own transaction, as `sync` does) plus
  `upsert_sessions`, into a fresh cache (WAL, FTS5 index built in the same transactions).
  Ratio = baseline time / our time.
- Figures 2 and 3 time `upsert_sessions` + one `mirror_history` per session (what `sync` does
  after fetching); figure 2 also checks `total_changes` did not move.
- Figure 4: `HistoryCache.history()` (100,000 `HistoryEntry` objects, `raw` lazy) vs `fetchall()`
  of the same columns as tuples.
- Figure 5: `HistoryCache.search()` (ranks, snippets, joins the entries, builds `SearchHit`s)
  vs the bare FTS5 query returning (rowid, rank); same hits and ranks checked.
- Figure 6: both launched as `sys.executable -m <module>` subprocesses from the repo root.
- Figures 7 and 8: one in-process emulator (threaded stdlib http.server) on 127.0.0.1 serves
  both sides, so the ratio isolates client-side overhead. Figure 8's baseline sends an
  Idempotency-Key with each create and send, as the library does: the same requests on the
  wire, so the server does the same work for both sides (the contract says these calls are not
  idempotent on their own; a careful bare-httpx user sends a key too).
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N: a few seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--only", default="", help="comma-separated figure numbers")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    only = {int(x) for x in args.only.split(",") if x}
    want: Callable[[int], bool] = lambda n: not only or n in only  # noqa: E731

    started = time.perf_counter()
    figs: list[Figure] = []
    corpus = Corpus()
    with tempfile.TemporaryDirectory(prefix="pdffillr-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)

        def log(msg: str) -> None:
            print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

        ds = make_dataset(corpus, sizes.mirror_entries, sizes.mirror_sessions, "sess")
        if only & {1, 2, 3, 6} or not only:
            log("figure 1")
            f1, mirrored = fig1(work, ds, sizes.repeat)
            figs.append(f1)
            if want(2):
                log("figure 2")
                figs.append(fig2(work, mirrored, ds, f1.ours_s, max(sizes.repeat, 5)))
            if want(3):
                log("figure 3")
                figs.append(fig3(work, mirrored, ds, corpus, f1.ours_s, sizes.repeat))
        if want(4) or want(5):
            log("building the big cache")
            big, big_ds = build_big(work, corpus, sizes)
            if want(4):
                log("figure 4")
                figs.append(fig4(big, big_ds, sizes.repeat))
            if want(5):
                log("figure 5")
                figs.append(fig5(big, sizes.big_entries, sizes.repeat))
            del big_ds
        if want(6):
            log("figure 6")
            figs.append(fig6(work, mirrored, ds, sizes.cli_repeat))
        if want(7):
            log("figure 7")
            figs.append(fig7(sizes.list_requests, sizes.repeat))
        if want(8):
            log("figure 8")
            figs.append(fig8(work, sizes.sends, sizes.repeat * 3))  # short blocks: more runs
    figs = [f for f in figs if want(f.number)]
    elapsed = time.perf_counter() - started
    mode = "quick (small N: figures not comparable to the targets)" if args.quick else "full"
    header = (
        f"# Benchmark results\n\nMode: {mode}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in "
        f"{elapsed:.0f} s; Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} CPUs. Command: "
        f"`python benchmarks/run.py{' --quick' if args.quick else ''}`. Before/after figures "
        "of the optimisations, and why a target is missed: `benchmarks/NOTES.md`.\n"
    )
    text = f"{header}\n{table(figs)}\n\n{METHOD}"
    print(table(figs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The PostgreSQL figures (benchmarks/postgres.py) are a section of their own: kept.
    old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    kept = old[old.index("\n## PostgreSQL\n") :] if "\n## PostgreSQL\n" in old else ""
    args.out.write_text(text + kept, encoding="utf-8")
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
