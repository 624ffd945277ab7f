"""Quickstart: open a session, talk to it, let the with-block end it, read it back offline.

    python examples/quickstart.py

Runs against the embedded emulator unless PDFFILLR_BASE_URL is set (see _demo.py).
"""

from __future__ import annotations

import shlex
import sys

from _demo import demo_cache_path, demo_client

from pdffillr_sessions import HistoryCache, Session


def main() -> None:
    cache_path = demo_cache_path()
    with demo_client() as client:
        with Session(client, title="Due Diligence Review", cache=cache_path) as s:
            print(f"Created: {s.session_id} ({s.title})")
            for question in (
                "Summarise the side letter for the Q4 subscription.",
                "Which fields of the subscription form are still empty?",
            ):
                for entry in s.send(question):
                    print(f"  [{entry.role or entry.type}] {entry.content}")
            history = s.history()
            print(f"History on the server: {len(history)} entries")
        print(f"Session ended: {s.ended} (status {s.info.status})")
        session_id = s.session_id

    # The server is gone now (the emulator has stopped): everything below is read from disk.
    with HistoryCache(cache_path, readonly=True) as cache:
        cached = cache.session(session_id)
        assert cached is not None
        offline = cache.history(session_id)
        print(f"Offline from {cache_path}: {cached.status}, {len(offline)} entries")
        assert offline == history, "the cache holds exactly what the server held"
        for hit in cache.search("side letter", limit=3):
            print(f"  search hit in {hit.entry.session_id}: {hit.entry.content[:60]!r}")
    # The next step, runnable as printed: this very interpreter, so no venv needs activating.
    show = [sys.executable, "-m", "pdffillr_sessions", "show", session_id, "--db", str(cache_path)]
    print(f"Inspect it with: {shlex.join(show)}")


if __name__ == "__main__":
    main()
