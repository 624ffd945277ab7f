"""The PostgreSQL store's benchmark figures (issue 15), each against a raw baseline in the same run.

    python benchmarks/postgres.py                  # full: 100,000-entry mirror, 1,000 sessions
                                                   # reaped, search on 1,000,000 entries
    python benchmarks/postgres.py --quick          # small N (the test suite's smoke test)
    python benchmarks/postgres.py --url postgresql://...   # an existing server (a fresh,
                                                           # empty database: it writes there)

Without ``--url`` it starts a throwaway server as the tests do (``tests/_postgres.py``). The
figures are written into ``benchmarks/RESULTS.md`` as its "PostgreSQL" section (``--out``
elsewhere), which ``benchmarks/run.py`` keeps when it rewrites the rest. Figures, reusing
``run.py``'s corpus, timing and table:

* P1: mirror throughput: ``HistoryCache.mirror_history`` (one transaction per session, as
  ``sync`` does) vs raw psycopg ``executemany`` into the same schema (P1a), and vs ``COPY`` in
  one transaction (P1b); the same ``HistoryEntry`` objects and row tuples on both sides.
* P2: ``reap`` of 1,000 open sessions left by 10 worker processes (each opened 100 with-blocks,
  then was SIGKILLed) vs the same 1,000 end requests sent with a bare ``httpx.Client``.
* P3: ``HistoryCache.search`` (two common words, top 20) on 1,000,000 entries vs the same SQL
  run raw with psycopg; the same hits checked.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import httpx  # noqa: E402
import psycopg  # noqa: E402
import run  # noqa: E402  (benchmarks/run.py: corpus, timing, table)

from pdffillr_sessions import HistoryCache, PdffillrClient, reap  # noqa: E402
from pdffillr_sessions.cache._pg_search import search as pg_search  # noqa: E402
from pdffillr_sessions.emulator import Emulator  # noqa: E402

SCOPE = run.SCOPE
SECTION = "## PostgreSQL"


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def url_of(conninfo: str) -> str:
    """A conninfo string as a URL (the store takes URLs)."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    host = info.get("host", "")
    port = info.get("port", "5432")
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    if str(host).startswith("/"):
        return f"postgresql://{user}{password}@/{info['dbname']}?host={host}&port={port}"
    return f"postgresql://{user}{password}@{host}:{port}/{info['dbname']}"


# -- P1 ----------------------------------------------------------------------------------------

_INSERT = (
    "INSERT INTO pdffillr_sessions.history "
    "(scope, session_id, id, seq, type, role, content, created_at, raw) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_COPY = (
    "COPY pdffillr_sessions.history "
    "(scope, session_id, id, seq, type, role, content, created_at, raw) FROM STDIN"
)


def _rows(ds: run.Dataset, sid: str) -> list[tuple[Any, ...]]:
    from pdffillr_sessions.cache._rows import entry_rows

    return list(entry_rows(SCOPE, sid, ds.histories[sid], 0))


def raw_load(url: str, ds: run.Dataset, how: str) -> float:
    """The baseline: the same rows (``_rows.entry_rows``) into the same schema, emptied first."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE pdffillr_sessions.history, pdffillr_sessions.sessions")
        t = time.perf_counter()
        if how == "executemany":
            for sid in ds.histories:  # one transaction per session, as the store does
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(_INSERT, _rows(ds, sid))
        else:
            with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY) as copy:
                for sid in ds.histories:
                    for row in _rows(ds, sid):
                        copy.write_row(row)
        elapsed = time.perf_counter() - t
        (n,) = conn.execute("SELECT count(*) FROM pdffillr_sessions.history").fetchone() or (0,)
    run.check(n == ds.total, f"baseline wrote {n} rows, expected {ds.total}")
    return elapsed


def ours_mirror(url: str, ds: run.Dataset) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE pdffillr_sessions.history, pdffillr_sessions.sessions")
    with HistoryCache(url, scope=SCOPE) as cache:
        t = time.perf_counter()
        n = run.mirror_all(cache, ds)
        elapsed = time.perf_counter() - t
    run.check(n == ds.total, f"mirrored {n} rows, expected {ds.total}")
    return elapsed


BASELINES = {
    "executemany": "raw psycopg executemany, a transaction per session, same schema",
    "copy": "raw psycopg COPY, one transaction, same schema",
}


def fig_p1(url: str, ds: run.Dataset, repeat: int) -> list[run.Figure]:
    HistoryCache(url, scope=SCOPE).close()  # the schema
    times: dict[str, list[float]] = {"executemany": [], "copy": [], "ours": []}
    for _ in range(repeat):
        times["executemany"].append(raw_load(url, ds, "executemany"))
        times["copy"].append(raw_load(url, ds, "copy"))
        times["ours"].append(ours_mirror(url, ds))
    ours = statistics.median(times["ours"])
    figs = []
    for number, how, target, goal in (
        ("P1a", "executemany", ">= 0.5x", 0.5),
        ("P1b", "copy", ">= 0.25x", 0.25),
    ):
        base = statistics.median(times[how])
        ratio = base / ours
        figs.append(
            run.Figure(
                number,  # type: ignore[arg-type]
                f"mirror {ds.total:,} entries ({len(ds.histories)} sessions) into PostgreSQL",
                BASELINES[how],
                base,
                ours,
                ratio,
                "throughput x",
                target,
                ratio >= goal,
                f"{ds.total / ours:,.0f} entries/s",
            )
        )
    return figs


# -- P2 ----------------------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import contextlib, sys
    from pdffillr_sessions import HistoryCache, PdffillrClient, Session
    key, base, db, worker, n = sys.argv[1:6]
    with PdffillrClient(key, base_url=base, sleep=lambda s: None) as client:
        with HistoryCache(db, api_key=key) as cache, contextlib.ExitStack() as stack:
            for i in range(int(n)):  # one store connection and one lock connection for all
                stack.enter_context(Session(client, title=f"w{worker}-{i}", cache=cache))
            print("ready", flush=True)
            sys.stdin.readline()  # SIGKILLed here
    """
)


def fig_p2(url: str, sessions: int, workers: int) -> run.Figure:
    per = sessions // workers
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Emulator(port=0) as emu:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, run.API_KEY, emu.url, url, str(w), str(per)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for w in range(workers)
        ]
        for proc in procs:
            assert proc.stdout is not None
            run.check(proc.stdout.readline().strip() == "ready", "a worker did not start")
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        time.sleep(0.5)  # the server notices the dead connections (it does at once; margin)
        active = [s["session_id"] for s in emu.sessions(run.API_KEY) if s["status"] == "active"]
        run.check(len(active) == per * workers, f"{len(active)} sessions open upstream")
        with PdffillrClient(run.API_KEY, base_url=emu.url, sleep=lambda s: None) as client:
            t = time.perf_counter()
            report = reap(client, url)
            ours = time.perf_counter() - t
        run.check(report.count("ended") == len(active), f"reap ended {report.count('ended')}")
        left = [s for s in emu.sessions(run.API_KEY) if s["status"] == "active"]
        run.check(not left, f"{len(left)} sessions still active after reap")
        # The baseline: the same number of end requests, bare httpx, on fresh sessions.
        with httpx.Client(
            base_url=emu.url, headers={"Authorization": f"Bearer {run.API_KEY}"}
        ) as bare:
            ids = [
                bare.post("/v1/sdk/chat/sessions", json={"title": "b"}).json()["session_id"]
                for _ in active
            ]
            t = time.perf_counter()
            for sid in ids:
                bare.post(f"/v1/sdk/chat/sessions/{sid}/end").raise_for_status()
            base = time.perf_counter() - t
    ratio = ours / base
    budget = 10.0 * len(active) / 1_000  # 1,000 sessions in 10 s: well inside a cron minute
    return run.Figure(
        "P2",  # type: ignore[arg-type]
        f"reap {len(active):,} open sessions left by {workers} SIGKILLed worker processes",
        f"{len(active):,} bare httpx end requests",
        base,
        ours,
        ratio,
        "time x",
        f"< {budget:g} s (10 s per 1,000)",
        ours < budget,
        "each: an advisory-lock probe, a re-read under the lock, the end, a write",
    )


# -- P3 ----------------------------------------------------------------------------------------


def build_big(url: str, corpus: run.Corpus, total: int, sessions: int) -> None:
    HistoryCache(url, scope=SCOPE).close()
    per = total // sessions
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE pdffillr_sessions.history")
        with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY) as copy:
            for s in range(sessions):
                sid = f"big_{s:03d}"
                ds = run.Dataset(histories={sid: corpus.entries(sid, 0, per, s)})
                for row in _rows(ds, sid):
                    copy.write_row(row)
        conn.execute("VACUUM ANALYZE pdffillr_sessions.history")


def fig_p3(url: str, total: int, repeat: int) -> run.Figure:
    query = "capital fund"
    with HistoryCache(url, scope=SCOPE) as cache, psycopg.connect(url, autocommit=True) as raw:
        from pdffillr_sessions.cache._pg_dialect import register_text_adapters

        register_text_adapters(raw)
        raw.execute("SET search_path = pdffillr_sessions")
        captured: list[tuple[str, list[Any]]] = []

        class Spy:
            """Captures the SQL and parameters the store runs, to run them raw."""

            def __init__(self, conn: Any) -> None:
                self._conn = conn

            def transaction(self) -> Any:
                return self._conn.transaction()

            def execute(self, sql: str, params: Any = None) -> Any:
                if params is not None:
                    captured.append((sql, list(params)))
                return self._conn.execute(sql, params)

        pg_search(Spy(raw), query, 20, SCOPE, None)  # type: ignore[arg-type]
        sql, params = captured[-1]
        matches = raw.execute(
            "SELECT count(*) FROM history WHERE fts @@ (phraseto_tsquery('simple', 'capital') "
            "&& phraseto_tsquery('simple', 'fund'))"
        ).fetchone()[0]
        base_times: list[float] = []
        our_times: list[float] = []
        cache.search(query)
        for _ in range(max(repeat, 5)):
            t, rows = run.timed(lambda: raw.execute(sql, params).fetchall())
            base_times.append(t)
            t, hits = run.timed(lambda c=cache: c.search(query, limit=20))
            our_times.append(t)
            run.check(len(hits) == len(rows) == min(20, matches), "hit counts differ")
            run.check([h.entry.id for h in hits] == [r[2] for r in rows], "hits differ")
    b, o = statistics.median(base_times), statistics.median(our_times)
    ratio = o / b
    return run.Figure(
        "P3",  # type: ignore[arg-type]
        f"full-text search, 2 common words, top 20, on {total:,} entries",
        "the same SQL run raw with psycopg",
        b,
        o,
        ratio,
        "latency",
        "<= 1.5x",
        ratio <= 1.5,
        f"both words in {matches:,} entries ({matches / total:.1%}): all ranked",
    )


# -- report ------------------------------------------------------------------------------------

METHOD = """\
How it is measured (`benchmarks/postgres.py`): a local PostgreSQL server (the tests' throwaway
cluster, unix socket, `fsync=off`, unless `--url`); medians of interleaved repetitions; every
result checked (row counts, sessions left active, the same hits). P1 builds the rows with the
store's own `entry_rows` on both sides, so the ratio is the store's overhead (its write lock,
tail read, `upsert_sessions`, the NUL-safe text adapter) over the bare inserts, the GIN and
`tsvector` work being the same. P2's workers each hold their 100 with-blocks open in one
process (sharing one `HistoryCache`: one store connection and one lock connection), then are
SIGKILLed; the reaper runs in this process against the same emulator as the bare baseline.
"""


def write_section(out: Path, text: str) -> None:
    """Replace (or add) the PostgreSQL section of ``out``, keeping the rest."""
    old = out.read_text(encoding="utf-8") if out.exists() else "# Benchmark results\n"
    head = old.split(f"\n{SECTION}\n")[0].rstrip("\n")
    out.write_text(f"{head}\n\n{SECTION}\n\n{text}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N: a few seconds")
    parser.add_argument("--url", default=None, help="an existing server's admin URL")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    quick = args.quick
    started = time.perf_counter()
    server = None
    admin = args.url
    if admin is None:
        sys.path.insert(0, str(ROOT / "tests"))
        import _postgres

        bindir = _postgres.find_binaries()
        if bindir is None:
            print(_postgres.HOW_TO_ENABLE, file=sys.stderr)
            return 2
        server = _postgres.start_server(bindir)
        admin = server.url()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    figs: list[run.Figure] = []
    try:
        with psycopg.connect(admin) as conn:
            version = conn.info.server_version
        corpus = run.Corpus()
        entries, sessions = (2_000, 10) if quick else (100_000, 10)
        log("P1: mirror")
        db = url_of(fresh_database(admin, "bench_mirror"))
        ds = run.make_dataset(corpus, entries, sessions, "sess")
        figs += fig_p1(db, ds, 3)
        log("P2: reap")
        db = url_of(fresh_database(admin, "bench_reap"))
        figs.append(fig_p2(db, 100 if quick else 1_000, 10))
        big = 20_000 if quick else 1_000_000
        log(f"P3: building {big:,} entries")
        db = url_of(fresh_database(admin, "bench_search"))
        build_big(db, corpus, big, 10)
        log("P3: search")
        figs.append(fig_p3(db, big, 3 if quick else 7))
    finally:
        if server is not None:
            _postgres.remove(server)
    elapsed = time.perf_counter() - started
    mode = "quick (small N)" if quick else "full"
    text = (
        f"Mode: {mode}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; Python "
        f"{platform.python_version()}, PostgreSQL {version // 10000}.{version % 10000}, psycopg "
        f"{psycopg.__version__}, {os.cpu_count()} CPUs. "
        f"Command: `python benchmarks/postgres.py{' --quick' if quick else ''}`.\n\n"
        f"{run.table(figs)}\n\n{METHOD}"
    )
    print(run.table(figs))
    write_section(args.out, text)
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
