"""Continue an existing session: resume it by id, send more, end it when the work is done.

    python examples/continue_session.py [SESSION_ID]

``Session.resume`` neither creates nor ends the session: a script can pick up earlier work (for
example a review that spans several runs) and decide itself when to end it. Without an id, this
example first opens a session the long way, to have one to continue.
"""

from __future__ import annotations

import sys

from _demo import demo_cache_path, demo_client

from pdffillr_sessions import Session


def main(argv: list[str]) -> int:
    cache_path = demo_cache_path()
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
