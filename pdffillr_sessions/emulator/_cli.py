"""The emulator's one command line: ``python -m pdffillr_sessions.emulator`` and
``pdffillr-sessions emulator`` are the same click command object, ``emulator_command``.

Importing this module must stay cheap: ``pdffillr_sessions.cli`` imports it at start-up to
register the command, and its offline commands must not pay for an HTTP server they never run.
So only click and the fault parser are imported here; the server is imported when one is run.

``serve_forever_cli`` is the reusable Python entry point (it raises instead of exiting).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from ._faults import DEFAULT_FAULT_KINDS, MAX_LATENCY, Fault, FaultSpecError

if TYPE_CHECKING:
    from ._server import Emulator
    from ._state import Dialect

__all__ = [
    "DEFAULT_PORT",
    "FAULT_HELP",
    "MAX_LATENCY",
    "emulator_command",
    "parse_latency",
    "serve_forever_cli",
]

DEFAULT_PORT = 8765
FAULT_HELP = (
    "A scripted fault, repeatable: ACTION[:METHOD[:PATH_REGEX]][:option=value...], ACTION a "
    "status code or drop_before|drop_after|delay|truncate; options times=N, retry-after=S, "
    "retry-after-ms=MS, seconds=S, body=TEXT, content-type=T, header=Name=Value, keep=N. "
    "E.g. 503:POST:/v1/sdk/chat/sessions$:times=2:retry-after=1 or drop_after:POST:/messages$"
)


def parse_latency(text: str) -> float:
    """``50ms``, ``0.2s`` or a bare number of seconds (``0.05``), as seconds; ValueError else."""
    value = text.strip().lower()
    scale = 1.0
    if value.endswith("ms"):
        value, scale = value[:-2], 0.001
    elif value.endswith("s"):
        value = value[:-1]
    try:
        seconds = float(value.strip()) * scale
    except ValueError:
        raise ValueError(f"{text!r} is not a latency like 50ms, 0.2s or 0.05") from None
    if not 0.0 <= seconds <= MAX_LATENCY:  # also NaN and inf
        raise ValueError(f"{text!r} is not between 0 and {MAX_LATENCY:g} s")
    return seconds


class _Latency(click.ParamType[Any, Any]):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            return parse_latency(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def serve_forever_cli(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    faults: Iterable[Fault | str] = (),
    *,
    fault_rate: float = 0.0,
    latency: float = 0.0,
    seed: int | None = None,
    fault_kinds: Iterable[str] = DEFAULT_FAULT_KINDS,
    deterministic: bool = False,
    valid_keys: Iterable[str] | None = None,
    dialect: Dialect | None = None,
    echo: Callable[[str], None] = lambda line: print(line, flush=True),
    stop_event: threading.Event | None = None,
) -> int:
    """Serve until Ctrl-C, SIGTERM or ``stop_event``; returns the exit status (0).

    Raises ``OSError`` if the address cannot be bound, ``FaultSpecError`` for a bad SPEC.
    """
    from ._server import Emulator

    emu = Emulator(
        port,
        host,
        valid_keys=valid_keys,
        dialect=dialect,
        deterministic=deterministic,
        faults=[Fault.parse(f) if isinstance(f, str) else f for f in faults],
        fault_rate=fault_rate,
        seed=seed,
        fault_kinds=fault_kinds,
        latency=latency,
    )
    emu.start()
    return _serve_started(emu, echo, stop_event)


def _serve_started(
    emu: Emulator, echo: Callable[[str], None], stop_event: threading.Event | None
) -> int:
    """Print the URL, wait for Ctrl-C, SIGTERM or ``stop_event``, then stop ``emu``."""
    done = stop_event or threading.Event()
    previous = None
    on_main = threading.current_thread() is threading.main_thread()

    def _on_term(signum: int, frame: FrameType | None) -> None:
        done.set()

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


def _parse_faults(
    ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]
) -> list[Fault]:
    """Parse every ``--fault`` before anything listens: a bad SPEC is a usage error (exit 2)."""
    try:
        return [Fault.parse(spec) for spec in specs]
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command(
    "emulator",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the first line printed gives the URL).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 exposes the emulator to the network).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    callback=_parse_faults,
    help=FAULT_HELP,
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Probability that a /v1 request with no scripted fault gets a random one of "
    f"{', '.join(DEFAULT_FAULT_KINDS)}.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the --fault-rate draws, so that a run's random faults can be replayed.",
)
@click.option(
    "--latency",
    type=_Latency(),
    default="0",
    show_default=True,
    help="How long every /v1 request waits before it is handled, like the round trip to a "
    "hosted API: 50ms, 0.2s, or seconds.",
)
@click.option(
    "--deterministic",
    is_flag=True,
    help="A fixed clock from 2026-01-01T00:00:00Z, counter ids and a fixed Date header: the "
    "same calls get byte-identical answers (for recording cassettes).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="API_KEY",
    help="Accept only this API key (repeatable); others get 401. Default: any Bearer key.",
)
def emulator_command(
    port: int,
    host: str,
    faults: list[Fault],
    fault_rate: float,
    seed: int | None,
    latency: float,
    deterministic: bool,
    keys: tuple[str, ...],
) -> None:
    """Run the local Pdffillr emulator until Ctrl-C or SIGTERM.

    A local server of the sessions API, in the foreground; its first line gives its URL. Other
    processes can script it through its control routes (no auth): GET /_emulator/stats,
    GET /_emulator/requests, GET|POST|DELETE /_emulator/faults, POST /_emulator/reset.
    """
    from ._server import Emulator

    emu = Emulator(
        port,
        host,
        valid_keys=keys or None,
        deterministic=deterministic,
        faults=faults,
        fault_rate=fault_rate,
        seed=seed,
        latency=latency,
    )
    try:
        emu.start()
    except OSError as exc:  # address in use, no such interface, privileged port...
        where = f"[{host}]" if ":" in host else host
        reason = exc.strerror or str(exc)
        raise click.ClickException(f"cannot listen on {where}:{port}: {reason}") from None
    _serve_started(emu, click.echo, None)
