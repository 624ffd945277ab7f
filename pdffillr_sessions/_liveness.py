"""Is the process that opened a session still running? Pure questions to the OS, no cache.

``reap`` asks before ending a session or replaying a create intent: ending a running script's
session would make its next send fail. A pid and a host name can only say "still running on this
host" (a reused pid looks alive); the exact-ending issue replaces this with OS locks.
"""

from __future__ import annotations

import os
import socket

__all__ = ["opener_alive", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return True  # no procfs: trust kill(0)
    return state not in ([b"Z"], [b"X"])


def opener_alive(pid: int | None, host: str | None) -> bool:
    """True when the recorded opening process is known to be still running on this host."""
    if pid is None or host != socket.gethostname():
        return False
    return pid_alive(pid)
