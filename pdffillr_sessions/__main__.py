"""``python -m pdffillr_sessions``: the ``pdffillr-sessions`` command line."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main(prog_name="pdffillr-sessions")
