"""``python -m pdffillr_sessions.emulator --port N [--fault SPEC ...] [--deterministic]``."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
