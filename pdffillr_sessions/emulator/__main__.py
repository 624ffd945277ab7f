"""``python -m pdffillr_sessions.emulator [OPTIONS]``: the same command as ``pdffillr-sessions
emulator`` (see ``--help``)."""

from __future__ import annotations

from ._cli import emulator_command

if __name__ == "__main__":
    emulator_command(prog_name="python -m pdffillr_sessions.emulator")
