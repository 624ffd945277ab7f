"""Turning a finished HTTP exchange into a value or a typed error: pure, no I/O.

The sync client (and any async twin) gives these functions a status, headers and body bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import _contract
from ._exceptions import APIStatusError, ProtocolError, status_error_class
from ._models import parse_json
from ._retry import parse_retry_after

_MAX_MESSAGE = 500


def error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    method: str,
    url: str,
) -> APIStatusError:
    """The typed error for a non-2xx answer, whatever its body looks like.

    The class comes from the status alone, so an HTML page from a proxy still gives the right
    class; the contract's envelope ``{"error": {"type", "message"}}`` fills in the details when
    present. The body is kept (decoded JSON, else text) for debugging.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    body: Any
    error_type: str | None = None
    message: str | None = None
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
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
    cls = status_error_class(status_code)
    return cls(
        message,
        status_code=status_code,
        error_type=error_type,
        request_id=lowered.get(_contract.REQUEST_ID_HEADER),
        body=body,
        retry_after=parse_retry_after(lowered),
        method=method,
        url=url,
    )


def decode_body(content: bytes, *, what: str) -> Any:
    """A 2xx body as JSON; empty or malformed is a ``ProtocolError`` naming ``what``."""
    if not content.strip():
        raise ProtocolError(f"{what}: the response body is empty")
    return parse_json(content, what=what)
