"""Reads stream: ``iter_history`` is a generator over a cursor, and ``show`` and ``export`` write
entry by entry, so memory stays flat however long a session is.

The proof is a memory limit: the export runs in a subprocess whose address space
(``RLIMIT_AS``) is capped at what the CLI needs at start-up plus 48 MiB, far below the 192 MiB
session it exports; the same limit makes ``history()`` (the whole session in memory) fail, so
the limit is real. The streamed output is byte for byte what the whole-document code wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdffillr_sessions import HistoryCache
from pdffillr_sessions import _cli_output as out
from pdffillr_sessions._models import HistoryEntry, parse_entry, parse_session

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk_streaming_tests_SECRET_9f8e7d"
SID = "sess_long"
MIB = 2**20
ENTRIES = 192  # of 1 MiB each


def one_mib_of_text() -> str:
    words = " ".join(f"clause{i % 400}" for i in range(MIB // 6))
    return (words + " " * MIB)[:MIB]


@pytest.fixture(scope="module")
def long_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding one session of 192 entries of 1 MiB each, written by the library (every
    entry's content is the same string object here, so this process stays small)."""
    db = tmp_path_factory.mktemp("streaming") / "history.db"
    text = one_mib_of_text()
    entries = [
        parse_entry(
            {
                "id": f"e{i:04d}",
                "type": "message",
                "role": "user" if i % 2 == 0 else "assistant",
                "content": text,
                "created_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
            },
            session_id=SID,
        )
        for i in range(ENTRIES)
    ]
    info = parse_session(
        {
            "session_id": SID,
            "title": "a long one",
            "status": "ended",
            "message_count": ENTRIES,
            "created_at": "2026-01-01T00:00:00Z",
        }
    )
    with HistoryCache(db, api_key=KEY) as cache:
        cache.upsert_sessions([info])
        assert cache.mirror_history(SID, entries) == ENTRIES
    return db


_LIMITED = textwrap.dedent(
    """
    import resource, sys

    def vm_size():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize")

    from pdffillr_sessions.cache import HistoryCache
    from pdffillr_sessions.cli import main

    limit = vm_size() + 48 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if sys.argv[1] == "history":
        with HistoryCache(sys.argv[2], readonly=True) as cache:
            print(len(cache.history(sys.argv[3])))
    else:
        main(sys.argv[1:])
    """
)


def limited(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_an_export_streams_under_a_memory_limit_far_below_the_session(
    long_session: Path, tmp_path: Path
) -> None:
    # The limit is real: the whole session does not fit under it.
    control = limited("history", str(long_session), SID)
    assert control.returncode != 0 and b"MemoryError" in control.stderr, control.stderr[-500:]

    for fmt in ("jsonl", "json", "markdown"):
        target = tmp_path / f"export.{fmt}"
        done = limited("export", SID, "-f", fmt, "--db", str(long_session), "-o", str(target))
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"Exported {ENTRIES} entries".encode() in done.stderr
        assert target.stat().st_size > ENTRIES * MIB
        if fmt == "jsonl":
            with target.open("rb") as lines:
                ids = [json.loads(line)["id"] for line in lines]
            assert ids == [f"e{i:04d}" for i in range(ENTRIES)]
        target.unlink()

    with (tmp_path / "show.txt").open("wb") as sink:
        shown = limited("show", SID, "--db", str(long_session), stdout=sink)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert (tmp_path / "show.txt").stat().st_size > ENTRIES * MIB


def test_iter_history_is_a_generator_that_yields_what_history_returns(
    long_session: Path,
) -> None:
    with HistoryCache(long_session, readonly=True) as cache:
        stream = cache.iter_history(SID)
        assert iter(stream) is stream and not isinstance(stream, list)
        first = next(stream)
        assert first.id == "e0000" and len(first.content or "") == MIB
        stream.close()  # a stream left early releases the cache
        assert cache.count_history(SID) == ENTRIES
        assert [e.id for e in cache.iter_history(SID)] == [f"e{i:04d}" for i in range(ENTRIES)]
        assert list(cache.iter_history("no such session")) == []


# -- the streamed shapes are the whole-document shapes, byte for byte ---------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_LINES = st.lists(st.text(alphabet="ab\n ", max_size=6), max_size=8)


@given(_LINES)
def test_trimmed_pieces_join_to_the_stripped_text(lines: list[str]) -> None:
    assert "".join(out.trimmed(lines)) == "\n".join(lines).rstrip("\n") + "\n"


def _entry(i: int, content: str | None, extra: dict[str, Any]) -> HistoryEntry:
    return parse_entry(
        {
            "id": f"e{i}",
            "type": "message" if i % 3 else "document",
            "role": "user" if i % 2 else None,
            "content": content,
            "created_at": "2026-01-01T00:00:00.000Z",
            **extra,
        },
        session_id="s1",
    )


@given(
    st.lists(
        st.tuples(
            st.none() | _TEXT,
            st.dictionaries(st.sampled_from(["entries", "x", "\u2028", "document"]), _TEXT),
        ),
        max_size=4,
    ),
    st.dictionaries(st.sampled_from(["entries", "title", 'q"\n']), _TEXT, max_size=2),
)
def test_json_documents_stream_the_same_bytes(
    items: list[tuple[str | None, dict[str, Any]]], head: dict[str, Any]
) -> None:
    entries = [_entry(i, content, extra) for i, (content, extra) in enumerate(items)]
    whole = out.dumps({**head, "entries": [out.entry_dict(e) for e in entries]}, indent=2) + "\n"
    assert "".join(out.json_document(head, iter(entries))) == whole
    lines = "".join(out.dumps(out.entry_dict(e)) + "\n" for e in entries)
    assert "".join(out.json_lines(out.entry_dict(e) for e in entries)) == lines


def test_iter_history_streams_on_postgres_too(pg_url: str) -> None:
    """A server-side cursor, batch by batch: the same entries as ``history()``; a stream left
    early lets the cache go on (its cursor and transaction are closed)."""
    entries = [
        parse_entry(
            {
                "id": f"e{i:05d}",
                "type": "message",
                "role": "user",
                "content": f"entry {i} \x00 with a NUL",
                "created_at": "2026-01-01T00:00:00.000Z",
            },
            session_id="s1",
        )
        for i in range(5_000)  # more than one batch of the cursor
    ]
    with HistoryCache(pg_url, api_key=KEY) as cache:
        cache.mirror_history("s1", entries)
        assert list(cache.iter_history("s1")) == cache.history("s1") == entries
        stream = cache.iter_history("s1")
        assert next(stream) == entries[0]
        stream.close()
        assert cache.count_history("s1") == 5_000
        cache.append_entries("s1", entries[:1])  # writes work after a stream left early
        with cache.snapshot():
            assert cache.count_history("s1") == sum(1 for _ in cache.iter_history("s1"))
