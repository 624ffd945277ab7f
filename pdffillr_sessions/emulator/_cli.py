"""Run the emulator in the foreground: ``python -m pdffillr_sessions.emulator`` (argparse only).

``serve_forever_cli`` is the reusable entry point (a click command can call it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType

from ._faults import Fault, FaultSpecError
from ._server import DEFAULT_FAULT_KINDS, Emulator
from ._state import Dialect

DEFAULT_PORT = 8765
FAULT_HELP = (
    "a scripted fault, repeatable: ACTION[:METHOD[:PATH_REGEX]][:option=value...], ACTION a "
    "status code or drop_before|drop_after|delay|truncate; options times=N, retry-after=S, "
    "retry-after-ms=MS, seconds=S, body=TEXT, content-type=T, header=Name=Value, keep=N. "
    "e.g. 503:POST:/v1/sdk/chat/sessions$:times=2:retry-after=1 or drop_after:POST:/messages$"
)


def serve_forever_cli(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    faults: Iterable[Fault | str] = (),
    *,
    fault_rate: float = 0.0,
    seed: int | None = None,
    fault_kinds: Iterable[str] = DEFAULT_FAULT_KINDS,
    deterministic: bool = False,
    valid_keys: Iterable[str] | None = None,
    dialect: Dialect | None = None,
    echo: Callable[[str], None] = lambda line: print(line, flush=True),
    stop_event: threading.Event | None = None,
) -> int:
    """Serve until Ctrl-C, SIGTERM or ``stop_event``; returns the exit status (0)."""
    parsed = [Fault.parse(f) if isinstance(f, str) else f for f in faults]
    emu = Emulator(
        port,
        host,
        valid_keys=valid_keys,
        dialect=dialect,
        deterministic=deterministic,
        faults=parsed,
        fault_rate=fault_rate,
        seed=seed,
        fault_kinds=fault_kinds,
    )
    done = stop_event or threading.Event()
    previous = None
    on_main = threading.current_thread() is threading.main_thread()

    def _on_term(signum: int, frame: FrameType | None) -> None:
        done.set()

    emu.start()
    try:
        if on_main:
            previous = signal.signal(signal.SIGTERM, _on_term)
        echo(f"Pdffillr emulator listening on {emu.url}")
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        emu.stop()
        if on_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    echo("Pdffillr emulator stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pdffillr_sessions.emulator",
        description="A local server of the Pdffillr sessions API, for tests and examples.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC", help=FAULT_HELP)
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="probability of a random fault per /v1 request",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random faults")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="fixed clock from 2026-01-01T00:00:00Z and counter ids",
    )
    parser.add_argument(
        "--key",
        action="append",
        default=None,
        metavar="API_KEY",
        help="accept only these API keys (repeatable; default: any key)",
    )
    args = parser.parse_args(argv)
    try:
        faults = [Fault.parse(s) for s in args.fault]
        return serve_forever_cli(
            args.port,
            args.host,
            faults,
            fault_rate=args.fault_rate,
            seed=args.seed,
            deterministic=args.deterministic,
            valid_keys=args.key,
        )
    except (FaultSpecError, ValueError) as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0  # pragma: no cover - parser.error exits
