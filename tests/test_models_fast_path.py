"""The fast paths of parse_session / parse_entry accept and build exactly what the
field-by-field parsers do (which also explain what is wrong)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pdffillr_sessions._exceptions import ProtocolError
from pdffillr_sessions._models import (
    _parse_entry,
    _parse_session,
    parse_entry,
    parse_session,
)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123456+02:00",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "",
            "s1",
            "active",
        ]
    ),
    st.lists(st.integers(), max_size=2),
)
keys = st.sampled_from(
    [
        "session_id",
        "title",
        "status",
        "message_count",
        "created_at",
        "id",
        "type",
        "role",
        "content",
        "extra",
    ]
)
good_time = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01"])
near_session = st.fixed_dictionaries(
    {
        "session_id": st.one_of(st.just("s1"), values),
        "status": st.one_of(st.just("active"), values),
        "message_count": st.one_of(st.integers(min_value=0, max_value=9), values),
        "created_at": st.one_of(good_time, values),
    },
    optional={"title": st.one_of(st.none(), st.text(max_size=3), values), "extra": values},
)
near_entry = st.fixed_dictionaries(
    {
        "id": st.one_of(st.just("m1"), values),
        "type": st.one_of(st.just("message"), values),
        "created_at": st.one_of(good_time, values),
    },
    optional={
        "role": st.one_of(st.none(), st.just("user"), values),
        "content": st.one_of(st.none(), st.text(max_size=3), values),
        "extra": values,
    },
)
objects = st.one_of(st.dictionaries(keys, values, max_size=10), values, near_session, near_entry)


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except ProtocolError as exc:
        return ("error", str(exc))


@settings(max_examples=400, deadline=None)
@given(objects)
def test_parse_session_fast_path_agrees(obj: Any) -> None:
    assert outcome(lambda o: parse_session(o, what="w"), obj) == outcome(_parse_session, obj, "w")


@settings(max_examples=400, deadline=None)
@given(objects)
def test_parse_entry_fast_path_agrees(obj: Any) -> None:
    assert outcome(lambda o: parse_entry(o, session_id="s", what="w"), obj) == outcome(
        _parse_entry, obj, "s", "w"
    )


def test_fast_path_builds_the_usual_objects() -> None:
    obj = {
        "session_id": "s1",
        "title": None,
        "status": "active",
        "message_count": 2,
        "created_at": "2026-01-01T00:00:00",
        "x": 1,
    }
    assert parse_session(obj) == _parse_session(obj, "session")
    assert parse_session(obj).created_at.tzinfo is not None
    e = {
        "id": "m",
        "type": "message",
        "role": "user",
        "content": "hi",
        "created_at": "2026-01-01T00:00:00Z",
    }
    assert parse_entry(e, session_id="s1") == _parse_entry(e, "s1", "history entry")
