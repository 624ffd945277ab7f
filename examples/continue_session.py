"""Continue an existing session: resume it by id, send more, end it when the work is done.

    python examples/continue_session.py [SESSION_ID]

``Session.resume`` neither creates nor ends the session: a script can pick up earlier work (for
example a review that spans several runs) and decide itself when to end it. Without an id, this
example first opens a session the long way, to have one to continue.

A SESSION_ID lives on a server: give it with ``PDFFILLR_BASE_URL`` (and ``PDFFILLR_API_KEY``)
set to that server. The embedded emulator starts empty on every run, so it holds no session of
an earlier run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _demo import demo_cache_path, demo_client

from pdffillr_sessions import NotFoundError, Session, SessionEndedError


def main(argv: list[str]) -> int:
    if argv and not os.environ.get("PDFFILLR_BASE_URL"):
        print(
            f"error: no session {argv[0]} on a fresh emulator: set PDFFILLR_BASE_URL (and "
            "PDFFILLR_API_KEY) to the server that holds it, or give no SESSION_ID",
            file=sys.stderr,
        )
        return 2
    cache_path = demo_cache_path()
    try:
        return resume(argv, cache_path)
    except NotFoundError as exc:  # an unknown id, or another key's session
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SessionEndedError:
        print(f"error: {argv[0]} has ended: it can be read, not continued", file=sys.stderr)
        return 1


def resume(argv: list[str], cache_path: Path) -> int:
    with demo_client() as client:
        if argv:
            session_id = argv[0]
        else:
            session_id = client.sessions.create(title="Multi-day review").session_id
            print(f"Opened {session_id} to continue (left active on purpose)")

        # A later run: pick the session up again by id.
        with Session.resume(client, session_id, cache=cache_path) as s:
            before = len(s.history())
            s.send("Continue the review: list the remaining open questions.")
            print(f"{s.session_id}: {before} entries before, {len(s.history())} now")
            # The review is complete: end it explicitly (resume never ends on its own).
            s.end()
            print(f"Ended: {s.ended}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
