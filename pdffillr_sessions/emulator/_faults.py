"""Scripted faults: what they match, what they do, and the ``--fault`` SPEC mini-syntax.

A ``Fault`` matches requests (an HTTP method and/or a regular expression searched in the raw
request path; by default any request under ``/v1``) and fires ``times`` times, then is used up.
Actions:

``status``       answer ``status`` (with ``headers`` and an optional raw ``body``) WITHOUT acting.
``drop_before``  close the connection (reset) before reading or acting.
``drop_after``   perform the real action, then close the connection without answering.
``delay``        wait ``seconds``, then handle the request normally.
``truncate``     act, send the headers with the full Content-Length, part of the body, close.

SPEC syntax (``--fault`` on the command line, ``{"spec": ...}`` on the control route)::

    ACTION[:METHOD[:PATH_REGEX]][:option=value ...]

ACTION is a status code (``503``) or ``drop_before``/``drop_after``/``delay``/``truncate``.
METHOD is ``GET``/``POST``/... or ``*``/empty for any. PATH_REGEX is searched in the raw path
(it cannot contain ``:``); empty means any ``/v1`` path. Options: ``times=N``,
``retry-after=S`` (sets ``Retry-After``), ``retry-after-ms=MS``, ``seconds=S`` (delay),
``body=TEXT`` (raw body for a status fault), ``content-type=TYPE``, ``header=Name=Value``
(repeatable), ``keep=N`` (bytes of body a truncate keeps). Examples::

    503:POST:/v1/sdk/chat/sessions$:times=2:retry-after=1
    drop_after:POST:/messages$
    delay:GET::seconds=0.5
    502:::body=<html>Bad gateway</html>:content-type=text/html
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, cast

__all__ = ["ACTIONS", "DEFAULT_FAULT_KINDS", "Fault", "FaultSpecError"]

Action = Literal["status", "drop_before", "drop_after", "delay", "truncate"]
ACTIONS: tuple[str, ...] = ("status", "drop_before", "drop_after", "delay", "truncate")
DEFAULT_PREFIX = "/v1"
#: What ``fault_rate`` draws from: status codes as strings, or action names.
DEFAULT_FAULT_KINDS: tuple[str, ...] = (
    "503",
    "429",
    "500",
    "502",
    "drop_before",
    "drop_after",
    "truncate",
)


#: Ranges of the numeric options: beyond them a SPEC is refused (a usage error on the command
#: line), never a crash of a server thread at request time (``time.sleep(1e308)`` overflows).
MAX_TIMES = 10**9
MAX_SECONDS = 86_400.0


class FaultSpecError(ValueError):
    """A fault SPEC or JSON description that cannot be understood."""


class Fault:
    """One scripted fault. ``Fault("status", status=503, headers={"Retry-After": "1"})``.

    ``times`` counts down as the fault fires; at 0 it is removed from the queue.
    """

    def __init__(
        self,
        action: Action = "status",
        *,
        status: int = 503,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        content_type: str | None = None,
        seconds: float = 0.0,
        keep: int | None = None,
    ) -> None:
        if action not in ACTIONS:
            raise FaultSpecError(f"unknown fault action {action!r} (one of {', '.join(ACTIONS)})")
        if not 100 <= status <= 599:
            raise FaultSpecError(f"fault status {status} is not an HTTP status")
        if not 1 <= times <= MAX_TIMES:
            raise FaultSpecError(f"fault times must be between 1 and {MAX_TIMES}")
        if not 0 <= seconds <= MAX_SECONDS:  # NaN fails both comparisons
            raise FaultSpecError(f"fault seconds must be between 0 and {MAX_SECONDS:g}")
        if keep is not None and not 0 <= keep <= MAX_TIMES:
            raise FaultSpecError(f"fault keep must be between 0 and {MAX_TIMES}")
        self.action = action
        self.status = status
        self.method = method.upper() if method and method != "*" else None
        self.path = path or None
        self.times = times
        self.headers = dict(headers or {})
        self.body = body
        self.content_type = content_type
        self.seconds = seconds
        self.keep = keep
        try:
            self._regex = re.compile(self.path) if self.path else None
        except re.error as exc:
            raise FaultSpecError(f"bad path regex {path!r}: {exc}") from None

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={v!r}"
            for k, v in self.to_dict().items()
            if v not in (None, {}, 0.0) or k == "times"
        )
        return f"Fault({fields})"

    def matches(self, method: str, raw_path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        if self._regex is None:
            return raw_path == DEFAULT_PREFIX or raw_path.startswith(DEFAULT_PREFIX + "/")
        return self._regex.search(raw_path) is not None

    @property
    def kind(self) -> str:
        """``"503"`` for a status fault, else the action name (used in logs and counters)."""
        return str(self.status) if self.action == "status" else self.action

    # -- conversions ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        body = self.body.decode("utf-8", "replace") if isinstance(self.body, bytes) else self.body
        return {
            "action": self.action,
            "status": self.status,
            "method": self.method,
            "path": self.path,
            "times": self.times,
            "headers": dict(self.headers),
            "body": body,
            "content_type": self.content_type,
            "seconds": self.seconds,
            "keep": self.keep,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """From JSON: the ``to_dict`` fields, or ``{"spec": "503:POST:..."}``."""
        if not isinstance(data, Mapping):
            raise FaultSpecError("a fault must be a JSON object")
        if "spec" in data:
            return cls.parse(str(data["spec"]))
        known = {
            "action",
            "status",
            "method",
            "path",
            "times",
            "headers",
            "body",
            "content_type",
            "seconds",
            "keep",
        }
        unknown = set(data) - known
        if unknown:
            raise FaultSpecError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        try:
            return cls(
                cast(Action, data.get("action", "status")),
                status=int(data.get("status", 503)),
                method=data.get("method"),
                path=data.get("path"),
                times=int(data.get("times", 1)),
                headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
                body=data.get("body"),
                content_type=data.get("content_type"),
                seconds=float(data.get("seconds", 0.0)),
                keep=None if data.get("keep") is None else int(data["keep"]),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"bad fault description: {exc}") from None

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse the SPEC mini-syntax (see the module docstring)."""
        parts = spec.split(":")
        head = parts[0].strip()
        positional: list[str] = []
        options: list[str] = []
        for part in parts[1:]:
            if "=" in part or options:
                options.append(part)
            else:
                positional.append(part)
        if len(positional) > 2:
            raise FaultSpecError(f"{spec!r}: too many fields before the options")
        method = positional[0] if positional else None
        path = positional[1] if len(positional) > 1 else None
        kwargs: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if head.isdigit():
            action: str = "status"
            kwargs["status"] = int(head)
        else:
            action = head
        for opt in options:
            name, _, value = opt.partition("=")
            name = name.strip().lower()
            try:
                if name == "times":
                    kwargs["times"] = int(value)
                elif name == "retry-after":
                    headers["Retry-After"] = value
                elif name == "retry-after-ms":
                    headers["retry-after-ms"] = value
                elif name in ("seconds", "delay"):
                    kwargs["seconds"] = float(value)
                elif name == "body":
                    kwargs["body"] = value
                elif name == "content-type":
                    kwargs["content_type"] = value
                elif name == "header":
                    hname, _, hvalue = value.partition("=")
                    if not hname:
                        raise FaultSpecError(f"{spec!r}: header option needs Name=Value")
                    headers[hname] = hvalue
                elif name == "keep":
                    kwargs["keep"] = int(value)
                else:
                    raise FaultSpecError(f"{spec!r}: unknown option {name!r}")
            except ValueError as exc:
                if isinstance(exc, FaultSpecError):
                    raise
                raise FaultSpecError(f"{spec!r}: bad value for {name!r}: {value!r}") from None
        if action not in ACTIONS:
            raise FaultSpecError(
                f"{spec!r}: the action must be a status code or one of "
                f"{', '.join(a for a in ACTIONS if a != 'status')}"
            )
        return cls(cast(Action, action), method=method, path=path, headers=headers, **kwargs)
