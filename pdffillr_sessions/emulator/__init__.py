"""A faithful local server of the Pdffillr sessions contract (stdlib only; click for its CLI).

Users test their code with it, the examples run on it, the vcrpy cassettes are recorded from it
and the fault tests drive it::

    from pdffillr_sessions.emulator import Emulator, Fault

    with Emulator(deterministic=True) as emu:
        emu.add_fault(Fault("drop_after", method="POST", path=r"/messages$"))
        ...  # point a client at emu.url

From a shell: ``python -m pdffillr_sessions.emulator --port 8765 --fault 503:POST::times=2`` (or
``pdffillr-sessions emulator``: the same command). Control routes (no auth, never faulted) let
another process script it: ``GET /_emulator/stats``, ``GET /_emulator/requests``,
``GET|POST|DELETE /_emulator/faults``, ``POST /_emulator/reset``.

The server and the service model are imported on first use (``__getattr__``): the
``pdffillr-sessions`` command line imports this package at start-up to register its
``emulator`` command, and its offline commands must not pay for an HTTP server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._cli import emulator_command, serve_forever_cli
from ._faults import DEFAULT_FAULT_KINDS, Fault, FaultSpecError

if TYPE_CHECKING:
    from ._server import Emulator, RequestRecord
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
    "emulator_command",
    "serve_forever_cli",
]

_LAZY = {
    "Emulator": "._server",
    "RequestRecord": "._server",
    "Dialect": "._state",
    "ServiceState": "._state",
    "assistant_reply": "._state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value
