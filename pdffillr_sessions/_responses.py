"""Turning a finished HTTP exchange into a value or a typed error: pure, no I/O.

Both clients give these functions a status, headers and the (already bounded) body bytes. Server
text reaches an exception only through here, so this is where it is made safe: the key redacted
from body and headers (a proxy may echo the token), control characters escaped in the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import _contract
from ._exceptions import APIStatusError, ProtocolError, escape_controls, status_error_class
from ._models import parse_json
from ._retry import parse_retry_after
from ._secret import Secret

_MAX_MESSAGE = 500


def error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    method: str,
    url: str,
    secret: Secret | None = None,
    note: str | None = None,
) -> APIStatusError:
    """The typed error for a non-2xx answer, whatever its body looks like.

    The class comes from the status alone, so an HTML page from a proxy still gives the right
    class; the contract's envelope ``{"error": {"type", "message"}}`` fills in the details when
    present. The body is kept (decoded JSON, else text) for debugging, with the key (``secret``)
    redacted from it and from the headers; the message has no raw control characters. ``note``
    says why the body was not read to its end, if it was not.
    """
    if secret is not None:
        content = secret.redact_bytes(content)
        headers = {k: secret.redact(v) for k, v in headers.items()}
    lowered = {k.lower(): v for k, v in headers.items()}
    body: Any
    error_type: str | None = None
    message: str | None = None
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = content.decode("utf-8", errors="replace")
    if isinstance(body, Mapping):
        err = body.get(_contract.ERROR_ENVELOPE_KEY)
        if isinstance(err, Mapping):
            if isinstance(err.get("type"), str):
                error_type = err["type"]
            if isinstance(err.get("message"), str):
                message = err["message"]
        elif isinstance(err, str):
            message = err
        if message is None and isinstance(body.get("message"), str):
            message = body["message"]
    if message is None:
        snippet = body.strip()[:_MAX_MESSAGE] if isinstance(body, str) else ""
        message = f"HTTP {status_code} from {method} {url}"
        if snippet:
            message += f": {snippet}"
    if note:
        message += f" ({note})"
    request_id = lowered.get(_contract.REQUEST_ID_HEADER)
    cls = status_error_class(status_code)
    return cls(
        escape_controls(message[: _MAX_MESSAGE * 2]),
        status_code=status_code,
        error_type=None if error_type is None else escape_controls(error_type[:_MAX_MESSAGE]),
        request_id=None if request_id is None else escape_controls(request_id[:_MAX_MESSAGE]),
        body=body,
        retry_after=parse_retry_after(lowered),
        method=method,
        url=url,
    )


def decode_body(content: bytes, *, what: str) -> Any:
    """A 2xx body as JSON; empty or malformed is a ``ProtocolError`` naming ``what``."""
    if not content or content.isspace():
        raise ProtocolError(f"{what}: the response body is empty")
    return parse_json(content, what=what)
