"""Shared set-up for the examples: a real server if configured, else the embedded emulator.

With ``PDFFILLR_BASE_URL`` set, the examples talk to that server with ``PDFFILLR_API_KEY``.
Without it they start the emulator that ships in the package (a faithful local server of the
API contract) on a free port, say so, and use a demo key. The history cache is
``PDFFILLR_SESSIONS_DB`` if set, else a demo file in the system temp folder (so the examples
never write demo sessions into your real cache).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pdffillr_sessions import PdffillrClient

DEMO_KEY = "sk_demo_emulator_key"


def demo_cache_path() -> Path:
    env = os.environ.get("PDFFILLR_SESSIONS_DB")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / "pdffillr-sessions-demo" / "history.db"


@contextmanager
def demo_client() -> Iterator[PdffillrClient]:
    if os.environ.get("PDFFILLR_BASE_URL"):
        with PdffillrClient() as client:
            yield client
        return
    from pdffillr_sessions.emulator import Emulator

    with Emulator(port=0) as emu:
        print(
            f"No PDFFILLR_BASE_URL set: started the embedded emulator at {emu.url}", file=sys.stderr
        )
        key = os.environ.get("PDFFILLR_API_KEY") or DEMO_KEY
        with PdffillrClient(key, base_url=emu.url) as client:
            yield client
