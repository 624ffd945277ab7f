"""A small history cache and the real `serve` command over it, for the serve and browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pdffillr_sessions import _serve
from pdffillr_sessions._models import HistoryEntry, SessionInfo, parse_entry, parse_session
from pdffillr_sessions.cache import HistoryCache

ROOT = Path(__file__).resolve().parent.parent
KEY_A = "sk-test-serve-AAAA-0123456789abcdef"
KEY_B = "sk-test-serve-BBBB-0123456789abcdef"

Q4 = "sess_q4_review"
KYC = "sess_kyc_refresh"
UNTITLED = "sess_untitled"
#: The Q4 session's entries in the server's order: a message exchange, a document and its
#: processing, another exchange.
Q4_ENTRIES: list[dict[str, Any]] = [
    {"id": "m1", "type": "message", "role": "user", "content": "Summarise the side letter."},
    {
        "id": "m2",
        "type": "message",
        "role": "assistant",
        "content": "The side letter waives\nfees.",
    },
    {
        "id": "d1",
        "type": "document",
        "role": None,
        "content": "Attached side-letter.pdf (13 bytes)",
        "document": {"document_id": "doc_1", "filename": "side-letter.pdf", "source": "upload"},
    },
    {
        "id": "a1",
        "type": "activity",
        "role": None,
        "content": "Processed side-letter.pdf",
        "event": "document.processed",
    },
    {"id": "m3", "type": "message", "role": "user", "content": "Which fields are still empty?"},
    {"id": "m4", "type": "message", "role": "assistant", "content": "Tax residency is empty."},
]


def session(sid: str, title: str | None, status: str, count: int, day: int) -> SessionInfo:
    return parse_session(
        {
            "session_id": sid,
            "title": title,
            "status": status,
            "message_count": count,
            "created_at": f"2026-03-{day:02d}T09:30:00Z",
        }
    )


def entries(sid: str, objs: list[dict[str, Any]], day: int) -> list[HistoryEntry]:
    return [
        parse_entry({**obj, "created_at": f"2026-03-{day:02d}T09:31:{i:02d}Z"}, session_id=sid)
        for i, obj in enumerate(objs)
    ]


def fill(path: Path) -> None:
    """Three sessions of key A (one also cached under key B, as two keys of one account see
    the same sessions), newest: KYC (active, open here), then untitled, then Q4 (ended)."""
    with HistoryCache(path, api_key=KEY_A) as a, HistoryCache(path, api_key=KEY_B) as b:
        a.upsert_sessions([session(Q4, "Q4 Contract Review", "ended", 6, 1)])
        a.mirror_history(Q4, entries(Q4, Q4_ENTRIES, 1))
        b.upsert_sessions([session(Q4, "Q4 Contract Review", "ended", 6, 1)])
        b.mirror_history(Q4, entries(Q4, Q4_ENTRIES, 1))
        a.upsert_sessions([session(UNTITLED, None, "ended", 0, 2)])
        a.record_opened(session(KYC, "KYC refresh", "active", 2, 3))
        kyc = [
            {"id": "k1", "type": "message", "role": "user", "content": "List missing KYC files."},
            {"id": "k2", "type": "message", "role": "assistant", "content": "Passport copy."},
        ]
        a.mirror_history(KYC, entries(KYC, kyc, 3))


@contextmanager
def serving(path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The real command on a free port: (the sessions page's address, the process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdffillr_sessions", "serve", "--db", str(path), "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith(f"http://{_serve.HOST}:"), proc.stderr.read() if proc.stderr else ""
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
