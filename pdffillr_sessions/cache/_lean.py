"""A history row's ``raw`` column holds only what its other columns do not. Pure functions.

Before ``m005_lean_history`` the column held the server's whole object, so every entry's text was
stored twice (``content`` and again inside ``raw``): the file was 3.7 times the text it held.
Now the columns ``id``, ``type``, ``role``, ``content`` and ``created_at`` are the object's fields
and ``raw`` says only how to put them back together, exactly (``decode(encode(obj)) == obj``, key
order included, unknown fields included):

* ``""`` (or a one-letter time code, below) and nothing else: the object is exactly
  ``{"id", "type", "role", "content", "created_at"}``, in that order. The common case: a
  message costs one byte or none.
* the same followed by a JSON object: those five first, then the object's other fields
  (``document``, ``event``, whatever a server adds), in the server's order.
* ``"!"`` followed by the whole object as JSON: anything else (keys in another order, ``role``
  or ``content`` left out rather than null, a ``created_at`` this scheme cannot rebuild, a
  ``raw`` that is not the entry's own object). Exact, just not lean.

The time code says how the server spelled ``created_at``, which the column stores in one
sortable UTC form (``2026-01-01T00:00:00.000000Z``): none for that very form, else a precision
letter (``u`` six fraction digits, ``m`` milliseconds, ``s`` whole seconds) and the offset when
the server did not write ``Z`` (``m+02:00``: the same instant, shown at that offset).

Rows of a file written before ``m005`` hold the whole object: ``HistoryCache`` reads those as
they are (it knows from the file's migrations), and the migration converts them with
``encode``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ._speedups import json_text

__all__ = ["COLUMNS", "WHOLE", "decode", "encode", "render", "time_code"]

#: The entry fields that have a column of their own, in the order a lean row rebuilds them.
COLUMNS = ("id", "type", "role", "content", "created_at")
#: Prefix of a row that keeps the whole object (``encode`` could not make it lean).
WHOLE = "!"

#: Fraction digits of ``created_at`` per precision letter of a time code.
_DIGITS = {"u": 6, "m": 3, "s": 0}
_TIMESPEC = {"u": "microseconds", "m": "milliseconds", "s": "seconds"}
_OFFSET = re.compile(r"[+-]\d\d:\d\d")
_fromiso = datetime.fromisoformat


def render(col: str, code: str) -> str:
    """The ``created_at`` text a time code gives for the column's ``col`` (see ``time_code``)."""
    if not code:
        return col
    precision, offset = code[0], code[1:]
    if not offset:
        digits = _DIGITS[precision]
        return col[: 20 + digits] + "Z" if digits else col[:19] + "Z"
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    delta = timedelta(hours=hours, minutes=minutes)
    zone = timezone(-delta if offset[0] == "-" else delta)
    return _fromiso(col).astimezone(zone).isoformat(timespec=_TIMESPEC[precision])


def time_code(text: object, col: str) -> str | None:
    """How the server spelled ``created_at`` (``text``), given the column's UTC form ``col``:
    ``""`` for ``col`` itself, else a precision letter (``u`` 6 fraction digits, ``m`` 3,
    ``s`` none) and the offset when it is not ``Z`` (``m+02:00``). None when no code gives
    ``text`` back exactly (then the row keeps its whole object)."""
    if type(text) is not str:
        return None
    if text == col:
        return ""
    if text[-1:] == "Z":
        offset = ""
        body = text[:-1]
    else:
        offset = text[-6:]
        body = text[:-6]
        if not _OFFSET.fullmatch(offset):
            return None
    fraction = len(body) - 20 if len(body) > 19 else 0
    precision = {6: "u", 3: "m", 0: "s"}.get(fraction)
    if precision is None:
        return None
    code = precision + offset
    try:
        return code if render(col, code) == text else None
    except (ValueError, OverflowError):
        return None


def encode(
    obj: Mapping[str, Any],
    entry_id: str,
    type_: str,
    role: str | None,
    content: str | None,
    col: str,
) -> str:
    """What the ``raw`` column stores for the server's entry object ``obj`` when the row's
    other columns hold ``entry_id``, ``type_``, ``role``, ``content`` and ``col``. Lean only when
    those are ``obj``'s own values (a ``HistoryEntry`` built by hand may disagree with its
    ``raw``: then ``raw`` is kept whole, as it was given)."""
    if type(obj) is not dict:
        obj = dict(obj)
    keys = tuple(obj)
    if (
        keys[:5] == COLUMNS
        and obj["id"] == entry_id
        and obj["type"] == type_
        and obj["role"] == role
        and obj["content"] == content
        and type(obj["id"]) is str
        and type(obj["type"]) is str
    ):
        code = time_code(obj["created_at"], col)
        if code is not None:
            if len(keys) == 5:
                return code
            return code + json_text({k: obj[k] for k in keys[5:]})
    return WHOLE + json_text(obj)


def decode(
    entry_id: str,
    type_: str,
    role: str | None,
    content: str | None,
    col: str,
    raw: str,
) -> dict[str, Any]:
    """The server's object, rebuilt from a lean row's columns and its ``raw``."""
    if not raw:
        return {"id": entry_id, "type": type_, "role": role, "content": content, "created_at": col}
    first = raw[0]
    if first == WHOLE:
        loaded = json.loads(raw[1:])
        return loaded if isinstance(loaded, dict) else {}
    brace = raw.find("{")
    code, rest = (raw, "") if brace < 0 else (raw[:brace], raw[brace:])
    out = {
        "id": entry_id,
        "type": type_,
        "role": role,
        "content": content,
        "created_at": render(col, code),
    }
    if rest:
        out.update(json.loads(rest))
    return out
