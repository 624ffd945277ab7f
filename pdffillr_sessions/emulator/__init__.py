"""A faithful local server of the Pdffillr sessions contract (stdlib only).

Users test their code with it, the examples run on it, the vcrpy cassettes are recorded from it
and the fault tests drive it::

    from pdffillr_sessions.emulator import Emulator, Fault

    with Emulator(deterministic=True) as emu:
        emu.add_fault(Fault("drop_after", method="POST", path=r"/messages$"))
        ...  # point a client at emu.url

From a shell: ``python -m pdffillr_sessions.emulator --port 8765 --fault 503:POST::times=2``.
Control routes (no auth, never faulted) let another process script it: ``GET /_emulator/stats``,
``GET /_emulator/requests``, ``GET|POST|DELETE /_emulator/faults``, ``POST /_emulator/reset``.
"""

from __future__ import annotations

from ._cli import serve_forever_cli
from ._faults import Fault, FaultSpecError
from ._server import DEFAULT_FAULT_KINDS, Emulator, RequestRecord
from ._state import Dialect, ServiceState, assistant_reply

__all__ = [
    "DEFAULT_FAULT_KINDS",
    "Dialect",
    "Emulator",
    "Fault",
    "FaultSpecError",
    "RequestRecord",
    "ServiceState",
    "assistant_reply",
    "serve_forever_cli",
]
