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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere: benchmark the working tree's library
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from pdffillr_sessions import HistoryEntry, PdffillrClient, Session, SessionInfo, sync  # noqa: E402
from pdffillr_sessions._scope import key_scope, server_id  # noqa: E402
from pdffillr_sessions.cache import HistoryCache, _sql  # noqa: E402
from pdffillr_sessions.emulator import Emulator  # noqa: E402

API_KEY = "sk_bench_0123456789abcdef"
#: The key's scope, as the library records it (16 hex digits in every history row and index).
SCOPE = key_scope(API_KEY)

# --------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    mirror_entries: int  # figures 1-3, 6
    mirror_sessions: int
    big_entries: int  # figures 5 and 13 (figure 4 reads one of its sessions)
    big_sessions: int
    list_requests: int  # figure 7
    sends: int  # figure 8
    repeat: int  # repetitions of each timed measurement (median taken)
    cli_repeat: int
    latency: float  # figure 9: seconds before each request is handled
    sync_sessions: int  # figure 9 (x 50 entries); also at a tenth
    fetch_sessions: int  # figure 10
    fetch_entries: int  # figure 10, per session; also at a tenth
    incr_entries: int  # figures 11 (also at a tenth) and 12 (against a hundredth)
    list_sessions: int  # figure 14
    list_entries: int  # figure 14, per session; also at a tenth


FULL = Sizes(
    100_000, 10, 1_000_000, 10, 2_000, 50, 5, 9, 0.05, 200, 20, 5_000, 200_000, 10_000, 200
)
QUICK = Sizes(2_000, 10, 10_000, 5, 150, 10, 3, 3, 0.02, 20, 4, 500, 4_000, 300, 20)


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

    def items(self, session_id: str, start: int, count: int, salt: int) -> list[dict[str, Any]]:
        """The server's JSON objects of entries ``start``.. of a session (what a history
        response holds, parsed)."""
        out: list[dict[str, Any]] = []
        texts = self.texts
        n_texts = len(texts)
        t0 = self.t0
        ids = random.Random(f"{session_id}/{start}")  # random hex ids, like the server's
        for i in range(start, start + count):
            created = t0 + timedelta(seconds=salt * 10_000_000 + i, microseconds=i % 997)
            out.append(
                {
                    "id": f"msg_{ids.getrandbits(96):024x}",
                    "type": "message",
                    "role": "user" if i % 2 == 0 else "assistant",
                    "content": texts[(i * 7919 + salt * 104729) % n_texts],
                    "created_at": created.isoformat().replace("+00:00", "Z"),
                }
            )
        return out

    def entries(self, session_id: str, start: int, count: int, salt: int) -> list[HistoryEntry]:
        out: list[HistoryEntry] = []
        t0 = self.t0
        for i, raw in enumerate(self.items(session_id, start, count, salt), start):
            out.append(
                HistoryEntry(
                    id=raw["id"],
                    session_id=session_id,
                    type="message",
                    role=raw["role"],
                    content=raw["content"],
                    created_at=t0 + timedelta(seconds=salt * 10_000_000 + i, microseconds=i % 997),
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
    rng = random.Random(f"{prefix}/{total}/{sessions}")
    for s in range(sessions):
        sid = f"{prefix}_{rng.getrandbits(96):024x}"  # as long as the server's ids
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
    repeats: int = 0
    unit: str = "s"  # what base_s and ours_s measure: seconds, or "bytes"


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


# --------------------------------------------------------------------------------------------
# Helpers on files


def fresh_cache(path: Path, scope: str = SCOPE) -> HistoryCache:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return HistoryCache(path, scope=scope)


def checkpoint(path: Path) -> None:
    """Fold the WAL into the file, so that the file alone is the database."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


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
# Figure 1: mirror into an empty cache, vs raw sqlite3 writing the same schema


def empty_cache_template(work: Path) -> Path:
    """A cache file with the library's schema and settings and no rows (page size, WAL, FTS5
    table and its hashsize, indexes, triggers): what both sides of a mirror figure start from."""
    path = work / "empty-template.db"
    if not path.exists():
        HistoryCache(path, scope=SCOPE).close()
        checkpoint(path)
    return path


def start_from(template: Path, path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, path)


def raw_connection(path: Path) -> sqlite3.Connection:
    """The baseline's connection: autocommit, the same durability as the library's (WAL,
    synchronous=NORMAL) and the same page cache, so neither side wins by risking data."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -32768")
    return conn


_RAW_INSERT = (
    "INSERT INTO history (scope, session_id, id, seq, type, role, content, created_at, raw) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RAW_SESSION = (
    "INSERT INTO sessions (scope, session_id, title, status, message_count, created_at, "
    "ended_at, updated_at, synced_at, raw, server) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?)"
)
_RAW_COUNTS = (
    "UPDATE sessions SET entry_count = ?, last_seq = ?, synced_at = ?, "
    "message_count = CASE WHEN message_count < ? THEN ? ELSE message_count END "
    "WHERE scope = ? AND session_id = ?"
)
_RAW_INDEX = (
    "INSERT INTO history_fts (rowid, content) SELECT rowid, content FROM history WHERE rowid > ?"
)


def _utc_text(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def raw_same_schema(template: Path, path: Path, ds: Dataset) -> float:
    """The baseline: the same rows (the lean ``raw``, the counts) into the same schema (its two
    indexes and the FTS5 index built in the same transactions) with raw sqlite3, from the same
    ``HistoryEntry`` objects, one transaction per session as the library's mirror makes; the
    row tuples are built in the timed region by the simplest code that gets them right for this
    data (the benchmark checks both files hold the very same rows)."""
    start_from(template, path)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    gc.collect()
    t = time.perf_counter()
    conn = raw_connection(path)
    stamp = _utc_text(datetime.now(UTC))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        _RAW_SESSION,
        [
            (
                SCOPE,
                i.session_id,
                i.title,
                i.status,
                i.message_count,
                _utc_text(i.created_at),
                stamp,
                dumps(i.raw),
                None,
            )
            for i in ds.infos
        ],
    )
    conn.execute("COMMIT")
    for sid, entries in ds.histories.items():
        conn.execute("BEGIN IMMEDIATE")
        (first,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM history").fetchone()
        rows = []
        for seq, e in enumerate(entries):
            col = _utc_text(e.created_at)
            sent = e.raw["created_at"]
            lean = "" if sent == col else "s"  # this data: 6 fraction digits, or none
            rows.append((SCOPE, sid, e.id, seq, e.type, e.role, e.content, col, lean))
        conn.executemany(_RAW_INSERT, rows)
        conn.execute(_RAW_INDEX, (first,))
        n = len(entries)
        conn.execute(_RAW_COUNTS, (n, n - 1, stamp, n, n, SCOPE, sid))
        conn.execute("COMMIT")
    conn.close()
    elapsed = time.perf_counter() - t
    check(count_rows(path) == ds.total, f"baseline wrote {count_rows(path)} rows")
    return elapsed


_SAME_ROWS = (
    "SELECT scope, session_id, id, seq, type, role, content, created_at, raw FROM history "
    "ORDER BY session_id, seq"
)
_SAME_SESSIONS = (
    "SELECT scope, session_id, title, status, message_count, created_at, entry_count, last_seq, "
    "raw FROM sessions ORDER BY session_id"
)


def same_rows(a: Path, b: Path) -> bool:
    """Both files hold the same history rows and session rows (their own timestamps aside)."""
    out = []
    for path in (a, b):
        conn = sqlite3.connect(path)
        out.append(
            (
                conn.execute(_SAME_ROWS).fetchall(),
                conn.execute(_SAME_SESSIONS).fetchall(),
                conn.execute("SELECT count(*) FROM history_fts").fetchone(),
            )
        )
        conn.close()
    return out[0] == out[1]


def fig1(work: Path, ds: Dataset, repeat: int) -> tuple[Figure, Path]:
    template = empty_cache_template(work)
    base_times: list[float] = []
    our_times: list[float] = []
    base_path = work / "fig1-base.db"
    cache_path = work / "fig1.db"
    for _ in range(repeat):
        base_times.append(raw_same_schema(template, base_path, ds))
        start_from(template, cache_path)

        def mirror_and_close() -> int:
            # Opening and close() are timed too (the WAL checkpoint close may do is part of the
            # write's cost), as the baseline's connect and close are.
            cache = HistoryCache(cache_path, scope=SCOPE)
            try:
                return mirror_all(cache, ds)
            finally:
                cache.close()

        t, inserted = timed(mirror_and_close)
        our_times.append(t)
        check(inserted == ds.total, f"mirror inserted {inserted}, expected {ds.total}")
    # Correctness of the last run: the very rows the baseline wrote, the index complete, a
    # round trip equal.
    check(same_rows(base_path, cache_path), "the mirror's rows differ from the baseline's")
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
        "raw sqlite3 writing the same rows into the same schema (both indexes, FTS5, counts), "
        "a transaction per session, same durability",
        b,
        o,
        ratio,
        "throughput",
        ">= 0.85",
        ratio >= 0.85,
        f"{ds.total / o:,.0f} rows/s vs {ds.total / b:,.0f} rows/s",
        repeats=repeat,
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
        repeats=repeat,
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
        repeats=repeat,
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
        rng = random.Random("big")
        for s in range(sizes.big_sessions):
            sid = f"sess_{rng.getrandbits(96):024x}"
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
        repeats=repeat,
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
        repeats=max(repeat, 5),
    )


# --------------------------------------------------------------------------------------------
# Figure 6: CLI start-to-exit


#: Figure 6's baseline: the query `sessions` runs, run by `python -c` with sqlite3 (read-only,
#: as the command opens the file), every row printed.
_FIG6_BASELINE = """
import sqlite3, sys
conn = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = conn.execute(sys.argv[2]).fetchall()
sys.stdout.write("".join("  ".join(map(str, row[:8])) + "\\n" for row in rows))
"""


def listing_sql() -> str:
    """The statement `HistoryCache.sessions()` runs on an unscoped cache with no server."""
    return (
        _sql.SESSION_SELECT + " WHERE TRUE AND TRUE ORDER BY s.created_at DESC, s.session_id DESC"
    )


def fig6(work: Path, mirrored: Path, ds: Dataset, repeat: int) -> Figure:
    path = work / "fig6.db"
    checkpointed_copy(mirrored, path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFFILLR_")}
    ours = [sys.executable, "-m", "pdffillr_sessions", "sessions", "--db", str(path)]
    base = [sys.executable, "-c", _FIG6_BASELINE, str(path), listing_sql()]
    floor = [sys.executable, "-c", "import attrs, click, sqlite3"]

    def run(cmd: list[str]) -> tuple[float, str]:
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        elapsed = time.perf_counter() - t
        check(proc.returncode == 0, f"{cmd[1:3]} failed: {proc.stderr.strip()[-300:]}")
        return elapsed, proc.stdout

    run(ours), run(base), run(floor)  # warm the OS caches for all
    base_times: list[float] = []
    our_times: list[float] = []
    floor_times: list[float] = []
    for _ in range(repeat):
        t, out = run(base)
        base_times.append(t)
        check(all(sid in out for sid in ds.histories), "baseline output lists every session")
        t, out = run(ours)
        our_times.append(t)
        check(all(sid in out for sid in ds.histories), "sessions output lists every session")
        floor_times.append(run(floor)[0])
    b, o = statistics.median(base_times), statistics.median(our_times)
    f = statistics.median(floor_times)
    ratio = o / b
    return Figure(
        6,
        f"`python -m pdffillr_sessions sessions --db X`, {ds.total:,}-entry cache",
        "the same query run by `python -c` with sqlite3, rows printed (start-up on both sides)",
        b,
        o,
        ratio,
        "wall time",
        "<= 1.0x",
        ratio <= 1.0,
        f"`python -c 'import attrs, click, sqlite3'` alone takes {fmt_s(f)}: "
        f"{f / b:.2f}x of the baseline",
        repeats=repeat,
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
        repeats=repeat,
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
        repeats=repeat,
    )


# --------------------------------------------------------------------------------------------
# Figures 9-14 (issue 12): sync, incremental sync, streaming export, file size, listing


@contextmanager
def emulator_process(
    sessions: Sequence[tuple[int, int]], latency: float = 0.0
) -> Iterator[tuple[str, list[str]]]:
    """An emulator in its own process (so that its work never competes with the measured side
    for this process's GIL) holding ``count`` sessions of ``entries`` entries for each pair,
    with ``latency`` seconds before each /v1 request. Yields its URL and the session ids (in
    the order of ``sessions``)."""
    spec = {"key": API_KEY, "latency": latency, "sessions": list(sessions)}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--emulator-child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        url = proc.stdout.readline().strip()
        sids = json.loads(proc.stdout.readline())
        check(url.startswith("http://"), f"the emulator did not start: {url!r}")
        yield url, sids
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def emulator_child() -> int:
    """``--emulator-child``: seed an emulator's state from a spec on stdin (the corpus' texts
    sent as messages: each send adds the user's entry and the assistant's reply), serve it,
    print its URL and the session ids, and stop when stdin closes."""
    spec = json.loads(sys.stdin.readline())
    texts = Corpus().texts
    emu = Emulator(latency=spec["latency"])
    state, key = emu.state, spec["key"]
    sids: list[str] = []
    k = 0
    for count, entries in spec["sessions"]:
        for _ in range(count):
            sid = state.create(key, f"Bench session {len(sids)}")["session_id"]
            for _ in range(entries // 2):
                state.send(key, sid, texts[k % len(texts)])
                k += 1
            sids.append(sid)
    emu.start()
    print(emu.url, flush=True)
    print(json.dumps(sids), flush=True)
    sys.stdin.read()
    emu.stop()
    return 0


HEADERS = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
LIST_PATH = "/v1/sdk/chat/sessions"


def _items(body: Any) -> list[Any]:
    return body["data"] if isinstance(body, dict) else body


def bare_fetch_all(url: str, concurrency: int) -> dict[str, list[Any]]:
    """The same GETs as a sync (the list, then every history) with the same number in flight,
    through one bare httpx.Client (one connection pool, like the library's): parsed, nothing
    written."""
    with httpx.Client(base_url=url, headers=HEADERS) as http:
        listed = [s["session_id"] for s in _items(http.get(LIST_PATH).json())]

        def get(sid: str) -> list[Any]:
            r = http.get(f"{LIST_PATH}/{sid}/messages")
            r.raise_for_status()
            return _items(r.json())

        with ThreadPoolExecutor(concurrency) as pool:
            return dict(zip(listed, pool.map(get, listed), strict=True))


def our_sync(url: str, path: Path, concurrency: int, **kwargs: Any) -> Any:
    with PdffillrClient(API_KEY, base_url=url) as client:
        return sync(client, path, concurrency=concurrency, **kwargs)


def fig9(work: Path, sizes: Sizes, repeat: int) -> Figure:
    """sync of N sessions x 50 entries at a realistic latency vs the concurrent floor."""
    latency, per, conc = sizes.latency, 50, 8
    results: dict[int, tuple[float, float]] = {}
    for n in (sizes.sync_sessions // 10, sizes.sync_sessions):
        base_times: list[float] = []
        our_times: list[float] = []
        with emulator_process([(n, per)], latency) as (url, sids):
            template = empty_cache_template(work)
            for _ in range(repeat):
                t, fetched = timed(lambda u=url: bare_fetch_all(u, conc))
                base_times.append(t)
                check(sorted(fetched) == sorted(sids), "the floor fetched every history")
                check(all(len(v) == per for v in fetched.values()), "the floor's histories")
                del fetched
                path = work / "fig9.db"
                start_from(template, path)
                t, report = timed(lambda u=url, p=path: our_sync(u, p, conc))
                our_times.append(t)
                check(report.ok and report.entries_added == n * per, f"sync: {report}")
        results[n] = (statistics.median(base_times), statistics.median(our_times))
    small, big = (results[k] for k in sorted(results))
    b, o = big
    ratio = o / b
    return Figure(
        9,
        f"sync {sizes.sync_sessions} sessions x {per} entries, {latency * 1000:.0f} ms a "
        f"request, {conc} in flight, into an empty cache",
        f"the same GETs (list + every history) with {conc} in flight through one bare "
        "httpx.Client, parsed, nothing written",
        b,
        o,
        ratio,
        "time",
        "<= 1.5x",
        ratio <= 1.5,
        f"at {sizes.sync_sessions // 10} sessions: {fmt_s(small[1])} vs {fmt_s(small[0])}, "
        f"{small[1] / small[0]:.2f}x; 10x the sessions costs {big[1] / small[1]:.1f}x the "
        f"time (floor {big[0] / small[0]:.1f}x)",
        repeats=repeat,
    )


def bare_fetch_and_write(url: str, path: Path, concurrency: int) -> int:
    """Figure 10's baseline: the same GETs with the same number in flight, each history written
    as it arrives (in this thread, overlapping the fetches still in flight) with raw sqlite3:
    the same rows into the same schema (both indexes, FTS5, counts), a transaction per session,
    the same durability."""
    scope = SCOPE
    server = server_id(url)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    conn = raw_connection(path)
    stamp = _utc_text(datetime.now(UTC))
    written = 0
    with httpx.Client(base_url=url, headers=HEADERS) as http:
        listed = _items(http.get(LIST_PATH).json())
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            _RAW_SESSION,
            [
                (
                    scope,
                    s["session_id"],
                    s["title"],
                    s["status"],
                    s["message_count"],
                    s["created_at"][:23] + "000Z",  # this data: milliseconds, Z
                    stamp,
                    dumps(s),
                    server,
                )
                for s in listed
            ],
        )
        conn.execute("COMMIT")

        def get(sid: str) -> tuple[str, list[Any]]:
            r = http.get(f"{LIST_PATH}/{sid}/messages")
            r.raise_for_status()
            return sid, _items(r.json())

        with ThreadPoolExecutor(concurrency) as pool:
            futures = [pool.submit(get, s["session_id"]) for s in listed]
            for future in as_completed(futures):
                sid, items = future.result()
                conn.execute("BEGIN IMMEDIATE")
                (first,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM history").fetchone()
                conn.executemany(
                    _RAW_INSERT,
                    [
                        (
                            scope,
                            sid,
                            o["id"],
                            seq,
                            o["type"],
                            o["role"],
                            o["content"],
                            o["created_at"][:23] + "000Z",
                            "m",  # this data: milliseconds, Z, no other field
                        )
                        for seq, o in enumerate(items)
                    ],
                )
                conn.execute(_RAW_INDEX, (first,))
                n = len(items)
                conn.execute(_RAW_COUNTS, (n, n - 1, stamp, n, n, scope, sid))
                conn.execute("COMMIT")
                written += n
    conn.close()
    return written


def fig10(work: Path, sizes: Sizes, repeat: int) -> Figure:
    n, per_big, conc = sizes.fetch_sessions, sizes.fetch_entries, 8
    template = empty_cache_template(work)
    results: dict[int, tuple[float, float]] = {}
    for per in (per_big // 10, per_big):
        base_times: list[float] = []
        our_times: list[float] = []
        with emulator_process([(n, per)]) as (url, _sids):
            base_path, our_path = work / "fig10-base.db", work / "fig10.db"
            for _ in range(repeat):
                start_from(template, base_path)
                t, written = timed(lambda u=url, p=base_path: bare_fetch_and_write(u, p, conc))
                base_times.append(t)
                check(written == n * per, f"baseline wrote {written}")
                start_from(template, our_path)
                t, report = timed(lambda u=url, p=our_path: our_sync(u, p, conc))
                our_times.append(t)
                check(report.ok and report.entries_added == n * per, f"sync: {report}")
            check(same_rows(base_path, our_path), "sync's rows differ from the baseline's")
        results[per] = (statistics.median(base_times), statistics.median(our_times))
    small, big = (results[k] for k in sorted(results))
    b, o = big
    ratio = o / b
    return Figure(
        10,
        f"sync {n} sessions x {per_big:,} entries ({n * per_big:,}), no latency, {conc} in "
        "flight, into an empty cache",
        "the same GETs with the same number in flight, each history written as it arrives "
        "with raw sqlite3: the same rows into the same schema, same durability",
        b,
        o,
        ratio,
        "time",
        "<= 1.3x",
        ratio <= 1.3,
        f"at {per_big // 10:,} entries a session: {small[1] / small[0]:.2f}x; 10x the entries "
        f"costs {big[1] / small[1]:.1f}x the time (baseline {big[0] / small[0]:.1f}x); "
        f"{n * per_big / o:,.0f} entries/s",
        repeats=repeat,
    )


def fig11_12(work: Path, sizes: Sizes, repeat: int) -> list[Figure]:
    """Incremental sync (+4 entries on a long history) vs the bare fetch; then the peak RSS of
    exporting that long history vs one 100 times shorter."""
    big, mid, small = sizes.incr_entries, sizes.incr_entries // 10, sizes.incr_entries // 100
    path = work / "fig11.db"
    start_from(empty_cache_template(work), path)
    incr: dict[int, tuple[float, float]] = {}
    with emulator_process([(1, big), (1, mid), (1, small)]) as (url, sids):
        first = our_sync(url, path, 8)
        check(first.ok and first.entries_added == big + mid + small, f"first sync: {first}")
        with (
            httpx.Client(base_url=url, headers=HEADERS) as bare,
            PdffillrClient(API_KEY, base_url=url) as client,
        ):
            for n, sid in ((mid, sids[1]), (big, sids[0])):
                base_times: list[float] = []
                our_times: list[float] = []
                for rep in range(repeat):
                    for i in range(2):  # 4 entries: 2 sends (the user's and the reply)
                        client.sessions.send(sid, f"one more, {rep}.{i}")

                    def fetch(s: str = sid) -> int:
                        r = bare.get(f"{LIST_PATH}/{s}/messages")
                        r.raise_for_status()
                        return len(_items(r.json()))

                    t, got = timed(fetch)
                    base_times.append(t)
                    t, report = timed(lambda s=sid: sync(client, path, session_ids=[s]))
                    our_times.append(t)
                    check(report.entries_added == 4 and got == n + 4 * (rep + 1), f"{report}")
                incr[n] = (statistics.median(base_times), statistics.median(our_times))
        with HistoryCache(path, scope=SCOPE) as cache:
            check(cache.count_history(sids[0]) == big + 4 * repeat, "the long history, grown")
            check(cache.integrity_check() == [], "integrity after the incremental syncs")
    (mb, mo), (bb, bo) = incr[mid], incr[big]
    ratio = bo / bb
    fig11 = Figure(
        11,
        f"incremental sync: +4 entries on a {big:,}-entry history",
        "the bare fetch of that history (httpx GET + .json())",
        bb,
        bo,
        ratio,
        "time",
        "<= 1.2x",
        ratio <= 1.2,
        f"on {mid:,} entries: {mo / mb:.2f}x ({fmt_s(mo)}); 10x the history costs "
        f"{bo / mo:.1f}x the time (the fetch {bb / mb:.1f}x)",
        repeats=repeat,
    )
    # Figure 12: peak RSS of a streaming export, long vs short history.
    rss: dict[str, list[int]] = {sids[0]: [], sids[2]: []}
    for _ in range(repeat):
        for sid in rss:
            rss[sid].append(export_peak_rss(path, sid, work / "export.jsonl"))
    long_kb, short_kb = (statistics.median(v) for v in rss.values())
    ratio12 = long_kb / short_kb
    fig12 = Figure(
        12,
        f"peak RSS of `export -f jsonl` of a {big + 4 * repeat:,}-entry history",
        f"the same export of a {small:,}-entry history",
        short_kb * 1024,
        long_kb * 1024,
        ratio12,
        "peak RSS",
        "<= 1.5x",
        ratio12 <= 1.5,
        f"{long_kb / 1024:.1f} MiB vs {short_kb / 1024:.1f} MiB",
        repeats=repeat,
        unit="bytes",
    )
    return [fig11, fig12]


#: Runs the CLI in this very process, then prints its peak RSS in KiB: ``VmHWM``, the high-water
#: mark of this process's own memory (``ru_maxrss`` survives ``exec`` on Linux: a child forked
#: from a large parent would report the parent's).
_PEAK_RSS = """
import runpy, sys
sys.argv = ["pdffillr-sessions", *sys.argv[1:]]
try:
    runpy.run_module("pdffillr_sessions", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    if exc.code:
        raise
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def export_peak_rss(path: Path, sid: str, target: Path) -> int:
    """The peak resident set (KiB) of one `export` process, start-up included."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, "export", sid, "--db", str(path), "-o", str(target)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    check(proc.returncode == 0, f"export failed: {proc.stderr.strip()[-300:]}")
    check(target.stat().st_size > 0, "the export wrote nothing")
    target.unlink()
    return int(proc.stdout.strip().splitlines()[-1])


def fig13(path: Path, total: int) -> Figure:
    """The file's size against the text it holds (the big cache of figures 4 and 5)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (text,) = conn.execute("SELECT sum(length(CAST(content AS BLOB))) FROM history").fetchone()
    parts = dict(
        conn.execute(
            "SELECT CASE WHEN name LIKE 'history_fts%' THEN 'fts' WHEN name = 'history' "
            "THEN 'rows' WHEN name LIKE 'history_%' THEN 'indexes' ELSE 'other' END, "
            "sum(pgsize) FROM dbstat GROUP BY 1"
        ).fetchall()
    )
    conn.close()
    wal = Path(f"{path}-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    ratio = size / text
    share = ", ".join(f"{k} {v / text:.2f}" for k, v in sorted(parts.items()))
    fig = Figure(
        13,
        f"file size of a {total:,}-entry cache (realistic ids) against its message text",
        "the message text it holds (UTF-8 bytes of every content)",
        text,
        size,
        ratio,
        "size",
        "<= 2.0x",
        ratio <= 2.0,
        f"{size / 2**20:,.0f} MiB for {text / 2**20:,.0f} MiB of text; per byte of text: {share}",
        repeats=1,
        unit="bytes",
    )
    return fig


def build_listing_cache(path: Path, corpus: Corpus, sessions: int, per: int) -> None:
    """``sessions`` sessions of ``per`` entries each, through the library's write path (the
    sessions listed, then each history mirrored from the server's JSON, as `sync` does)."""
    rng = random.Random(f"listing/{sessions}/{per}")
    sids = [f"sess_{rng.getrandbits(96):024x}" for _ in range(sessions)]
    with fresh_cache(path) as cache:
        cache.upsert_sessions([session_info(sid, per, i) for i, sid in enumerate(sids)])
        for i, sid in enumerate(sids):
            cache.mirror_history_json(sid, corpus.items(sid, 0, per, i))
    checkpoint(path)


def fig14(work: Path, corpus: Corpus, sizes: Sizes, repeat: int) -> Figure:
    n, per = sizes.list_sessions, sizes.list_entries
    sql = _LISTING_SCOPED
    scope = SCOPE
    times: dict[int, tuple[float, float]] = {}
    for each in (per // 10, per):
        path = work / f"fig14-{each}.db"
        build_listing_cache(path, corpus, n, each)
        raw_conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        base_times: list[float] = []
        our_times: list[float] = []
        with HistoryCache(path, scope=scope, readonly=True) as cache:
            raw_conn.execute(sql, (scope,)).fetchall(), cache.sessions()  # warm both
            for _ in range(repeat):
                t, rows = timed(lambda c=raw_conn: c.execute(sql, (scope,)).fetchall())
                base_times.append(t)
                ids = [r[0] for r in rows]
                del rows
                t, found = timed(lambda c=cache: c.sessions())
                our_times.append(t)
                check([s.session_id for s in found] == ids and len(ids) == n, "listings differ")
                check(all(s.entry_count == each for s in found), "entry counts")
                del found, ids
        raw_conn.close()
        times[each] = (statistics.median(base_times), statistics.median(our_times))
    small, big = times[per // 10], times[per]
    b, o = big
    ratio = o / b
    return Figure(
        14,
        f"list {n:,} sessions holding {n * per:,} entries (`HistoryCache.sessions()`)",
        "the same query with raw sqlite3 (fetchall of the same rows)",
        b,
        o,
        ratio,
        "time",
        "<= 1.3x",
        ratio <= 1.3,
        f"with 10x fewer entries ({n * per // 10:,}): ours {fmt_s(small[1])}, raw "
        f"{fmt_s(small[0])}: independent of the entries",
        repeats=repeat,
    )


#: What `HistoryCache(path, scope=...).sessions()` runs (a scoped cache, no server).
_LISTING_SCOPED = (
    _sql.SESSION_SELECT
    + " WHERE s.scope = ? AND TRUE ORDER BY s.created_at DESC, s.session_id DESC"
)


# --------------------------------------------------------------------------------------------
# Report


def fmt_value(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 2**20:,.1f} MiB"
    return fmt_s(value)


def table(figs: Sequence[Figure]) -> str:
    lines = [
        "| # | figure | baseline (same run) | baseline | ours | ratio | target | met | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figs:
        detail = f" ({f.detail})" if f.detail else ""
        lines.append(
            f"| {f.number} | {f.title}{detail} | {f.baseline} | {fmt_value(f.base_s, f.unit)} | "
            f"{fmt_value(f.ours_s, f.unit)} | {f.ratio:.3f} ({f.ratio_label}) | {f.target} | "
            f"{'yes' if f.met else '**NO**'} | {f.repeats or ''} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """The machine the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            kib = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
            memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return (
        f"{os.cpu_count()} CPUs{f' ({model})' if model else ''}{memory}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, httpx {httpx.__version__}"
    )


METHOD = """\
How it is measured (`benchmarks/run.py`):

- Each time is the median of several repetitions (`runs`); baseline and library runs are
  interleaved, so that the shared machine's noise hits both alike. Every timed result is
  checked (row counts, equality with the baseline's result); a wrong one aborts the run.
- The data: corpus texts of 20-70 words (Zipf-like, fund-administration vocabulary, ~300 bytes),
  ids as long as the server's (`sess_` and `msg_` + 24 hex digits) and the key's real
  16-digit scope in every row.
- Figure 1's baseline starts from the same `HistoryEntry` objects and writes the very rows the
  library writes (checked: both files hold the same history and session rows) into a copy of
  the same empty cache file (same schema: both indexes, the FTS5 table filled in the same
  transactions, the session counts, the triggers), with raw sqlite3: one transaction per
  session, WAL, `synchronous=NORMAL` and the same page cache; its row tuples are built in the
  timed region by the simplest code that is right for this data. Connect and close are timed on
  both sides. Ratio = baseline time / our time.
- Figures 2 and 3 time `upsert_sessions` + one `mirror_history` per session (what `sync` does
  after fetching); figure 2 also checks `total_changes` did not move.
- Figure 4: `HistoryCache.history()` (100,000 `HistoryEntry` objects, `raw` lazy) vs `fetchall()`
  of the same columns as tuples.
- Figure 5: `HistoryCache.search()` (ranks, snippets, joins the entries, builds `SearchHit`s)
  vs the bare FTS5 query returning (rowid, rank); same hits and ranks checked.
- Figure 6: `python -m pdffillr_sessions sessions` vs `python -c` running the statement that
  command runs, with sqlite3, on a read-only connection, every row printed; both subprocesses of
  the same interpreter from the repository root, start-up included. The detail gives what
  `python -c 'import attrs, click, sqlite3'` alone takes: the floor of any command built on
  those libraries.
- Figures 7 and 8: one in-process emulator (threaded stdlib http.server) on 127.0.0.1 serves
  both sides, so the ratio isolates client-side overhead. Figure 8's baseline sends an
  Idempotency-Key with each create and send, as the library does: the same requests on the
  wire, so the server does the same work for both sides (the contract says these calls are not
  idempotent on their own; a careful bare-httpx user sends a key too).
- Figures 9-12 run the emulator in a process of its own (its work never competes with the
  measured side for this process's GIL), its histories made by sending the corpus' texts (each
  send adds the user's entry and the assistant's reply). Figure 9: `--latency 50ms` on every
  request; `sync` into an empty cache vs the same GETs (the list, then every history) with the
  same 8 in flight through one bare `httpx.Client`, parsed, nothing written. Figure 10: no
  latency; the baseline does figure 9's fetches and writes each history as it arrives, in its
  main thread while the other fetches go on, with raw sqlite3 into the same schema (the rows
  are checked equal to the library's). Figure 11: two sends add 4 entries to one history, then
  `sync(session_ids=[it])` vs one bare GET + `.json()` of that history. Figure 12: the peak
  resident memory (`VmHWM`) of one `export -f jsonl` process, start-up included, exporting the
  long history vs one a hundred times shorter.
- Figure 13: the big cache of figures 4 and 5, checkpointed: its file size over the UTF-8 bytes
  of every content; the detail splits the size per byte of text with `dbstat`.
- Figure 14: `HistoryCache.sessions()` on a scoped, read-only cache vs the statement it runs,
  with raw sqlite3 (`fetchall`); measured at 200 and at 20 entries a session.
- Growth (the details of figures 9, 10, 11, 14): each is also measured at a tenth of its size,
  so that how its cost grows with the work (10x the sessions, 10x the entries) is visible.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N: a few seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--only", default="", help="comma-separated figure numbers")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--emulator-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.emulator_child:
        return emulator_child()
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
        if want(4) or want(5) or want(13):
            log("building the big cache")
            big, big_ds = build_big(work, corpus, sizes)
            if want(4):
                log("figure 4")
                figs.append(fig4(big, big_ds, sizes.repeat))
            if want(5):
                log("figure 5")
                figs.append(fig5(big, sizes.big_entries, sizes.repeat))
            if want(13):
                log("figure 13")
                figs.append(fig13(big, sizes.big_entries))
            del big_ds
            for suffix in ("", "-wal", "-shm"):
                Path(f"{big}{suffix}").unlink(missing_ok=True)
        if want(6):
            log("figure 6")
            figs.append(fig6(work, mirrored, ds, sizes.cli_repeat))
        if want(7):
            log("figure 7")
            figs.append(fig7(sizes.list_requests, sizes.repeat))
        if want(8):
            log("figure 8")
            figs.append(fig8(work, sizes.sends, sizes.repeat * 3))  # short blocks: more runs
        if want(9):
            log("figure 9")
            figs.append(fig9(work, sizes, sizes.repeat))
        if want(10):
            log("figure 10")
            figs.append(fig10(work, sizes, sizes.repeat))
        if want(11) or want(12):
            log("figures 11 and 12")
            figs.extend(fig11_12(work, sizes, sizes.repeat))
        if want(14):
            log("figure 14")
            figs.append(fig14(work, corpus, sizes, sizes.repeat))
    figs = sorted((f for f in figs if want(f.number)), key=lambda f: f.number)
    elapsed = time.perf_counter() - started
    mode = "quick (small N: figures not comparable to the targets)" if args.quick else "full"
    header = (
        f"# Benchmark results\n\nMode: {mode}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in "
        f"{elapsed:.0f} s on {machine()}. Command: "
        f"`python benchmarks/run.py{' --quick' if args.quick else ''}`. Each figure gives its "
        "N in its title and the repetitions it took the median of in `runs`. Before/after "
        "figures of the optimisations, and why a target is missed: `benchmarks/NOTES.md`.\n"
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
