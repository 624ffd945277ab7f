"""The sync and async twins stay in step: same names, same parameters, same defaults.

``PdffillrClient`` / ``AsyncPdffillrClient``, ``SessionsResource`` / ``AsyncSessionsResource`` and
``Session`` / ``AsyncSession`` are compared member by member (the async twin's methods are
coroutine functions, ``resume`` included; properties are never awaited). Every difference
between a pair must be listed below (a renamed method, an annotation that names the async
flavour of a type); anything else, such as a method or a parameter added to one twin only, fails
here. An allowance that no longer matches anything fails too, so the lists cannot rot.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Generic

import pytest

from pdffillr_sessions import AsyncPdffillrClient, AsyncSession, PdffillrClient, Session
from pdffillr_sessions._async_client import AsyncSessionsResource
from pdffillr_sessions._client import SessionsResource

PAIRS = [
    pytest.param(PdffillrClient, AsyncPdffillrClient, id="client"),
    pytest.param(SessionsResource, AsyncSessionsResource, id="sessions"),
    pytest.param(Session, AsyncSession, id="session"),
]

# Sync member name -> its async name.
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}

# (sync class, sync member, parameter or "return") -> (sync annotation, async annotation).
# Annotations are compared as written (the modules use ``from __future__ import annotations``).
ALLOWED_ANNOTATIONS: dict[tuple[str, str, str], tuple[str, str]] = {
    ("PdffillrClient", "__init__", "transport"): (
        "httpx.BaseTransport | None",
        "httpx.AsyncBaseTransport | None",
    ),
    ("PdffillrClient", "__init__", "http_client"): (
        "httpx.Client | None",
        "httpx.AsyncClient | None",
    ),
    ("PdffillrClient", "__init__", "sleep"): (
        "Callable[[float], None] | None",
        "Callable[[float], Awaitable[None]] | None",
    ),
    ("PdffillrClient", "__enter__", "return"): ("PdffillrClient", "AsyncPdffillrClient"),
    ("SessionsResource", "__init__", "client"): ("PdffillrClient", "AsyncPdffillrClient"),
    ("Session", "__init__", "client"): ("PdffillrClient", "AsyncPdffillrClient"),
    ("Session", "resume", "client"): ("PdffillrClient", "AsyncPdffillrClient"),
    ("Session", "resume", "return"): ("Session", "AsyncSession"),
    ("Session", "__enter__", "return"): ("Session", "AsyncSession"),
}

# Public instance attributes whose types differ: (sync class, attribute) -> (sync, async) type.
ALLOWED_ATTRIBUTE_TYPES: dict[tuple[str, str], tuple[type, type]] = {
    ("PdffillrClient", "sessions"): (SessionsResource, AsyncSessionsResource),
}

# Async members that are plain functions, not coroutine functions (properties are never awaited;
# with_options only copies settings, as openai-python's does).
NOT_AWAITED = {"__init__", "__repr__", "with_options"}

_used_annotations: set[tuple[str, str, str]] = set()
_used_attributes: set[tuple[str, str]] = set()


def surface(cls: type) -> dict[str, Any]:
    """Public members and dunder methods of ``cls`` and its bases (not ``object``'s)."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, Generic):
            continue
        for name, value in vars(klass).items():
            public = not name.startswith("_")
            dunder = name.startswith("__") and name.endswith("__")
            method_like = inspect.isfunction(value) or isinstance(value, property | classmethod)
            if public or (dunder and method_like):
                found[name] = value
    return found


def annotations_of(func: Any) -> dict[str, Any]:
    sig = inspect.signature(func)
    out = {name: p.annotation for name, p in sig.parameters.items()}
    out["return"] = sig.return_annotation
    return out


def shape(func: Any) -> list[tuple[str, Any, Any]]:
    """Each parameter's name, kind and default, in order."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def assert_same_annotations(sync_cls: type, name: str, sync_func: Any, async_func: Any) -> None:
    sync_ann, async_ann = annotations_of(sync_func), annotations_of(async_func)
    for param, sync_value in sync_ann.items():
        key = (sync_cls.__name__, name, param)
        if key in ALLOWED_ANNOTATIONS:
            _used_annotations.add(key)
            assert (sync_value, async_ann[param]) == ALLOWED_ANNOTATIONS[key], key
        else:
            assert sync_value == async_ann[param], f"{key}: {sync_value!r} != {async_ann[param]!r}"


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_same_member_names(sync_cls: type, async_cls: type) -> None:
    sync_names = {RENAMED.get(name, name) for name in surface(sync_cls)}
    async_names = set(surface(async_cls))
    assert sync_names - async_names == set(), f"only on {sync_cls.__name__}"
    assert async_names - sync_names == set(), f"only on {async_cls.__name__}"


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_same_signatures_and_kinds(sync_cls: type, async_cls: type) -> None:
    async_surface = surface(async_cls)
    for name, sync_value in surface(sync_cls).items():
        async_name = RENAMED.get(name, name)
        async_value = async_surface[async_name]
        where = f"{sync_cls.__name__}.{name} vs {async_cls.__name__}.{async_name}"
        if isinstance(sync_value, property):
            assert isinstance(async_value, property), where
            assert (async_value.fset is None) == (sync_value.fset is None), where
            assert_same_annotations(sync_cls, name, sync_value.fget, async_value.fget)
            continue
        if isinstance(sync_value, classmethod):
            assert isinstance(async_value, classmethod), where
            sync_value, async_value = sync_value.__func__, async_value.__func__
        assert inspect.isfunction(sync_value) and inspect.isfunction(async_value), where
        assert shape(sync_value) == shape(async_value), where
        assert_same_annotations(sync_cls, name, sync_value, async_value)
        assert not inspect.iscoroutinefunction(sync_value), f"{where}: the sync one is async"
        assert inspect.iscoroutinefunction(async_value) == (name not in NOT_AWAITED), where


def test_same_public_instance_attributes() -> None:
    """Attributes set in ``__init__`` (``client.sessions``) are part of the surface too."""
    kwargs: dict[str, Any] = {"api_key": "sk_surface_0123456789", "base_url": "http://surface.test"}
    sync_client, async_client = PdffillrClient(**kwargs), AsyncPdffillrClient(**kwargs)
    try:
        instances = [
            (sync_client, async_client),
            (sync_client.sessions, async_client.sessions),
            (Session(sync_client, cache=False), AsyncSession(async_client, cache=False)),
        ]
        for sync_obj, async_obj in instances:
            sync_attrs = {k: v for k, v in vars(sync_obj).items() if not k.startswith("_")}
            async_attrs = {k: v for k, v in vars(async_obj).items() if not k.startswith("_")}
            assert sync_attrs.keys() == async_attrs.keys(), type(sync_obj).__name__
            for name, sync_value in sync_attrs.items():
                key = (type(sync_obj).__name__, name)
                types = (type(sync_value), type(async_attrs[name]))
                if key in ALLOWED_ATTRIBUTE_TYPES:
                    _used_attributes.add(key)
                    assert types == ALLOWED_ATTRIBUTE_TYPES[key], key
                else:
                    assert types[0] is types[1], key
    finally:
        sync_client.close()
        asyncio.run(async_client.aclose())


def test_every_allowed_difference_is_still_a_real_one() -> None:
    """Run the comparisons here too, so this holds whatever order or subset pytest runs."""
    for param in PAIRS:
        test_same_signatures_and_kinds(*param.values)
    test_same_public_instance_attributes()
    assert set(ALLOWED_ANNOTATIONS) == _used_annotations
    assert set(ALLOWED_ATTRIBUTE_TYPES) == _used_attributes
    for sync_name, async_name in RENAMED.items():
        assert sync_name in surface(PdffillrClient) and async_name in surface(AsyncPdffillrClient)
    for name in NOT_AWAITED:
        assert name in surface(AsyncPdffillrClient)


def test_the_surface_covers_the_calls_and_the_loop() -> None:
    """A guard on ``surface`` itself: it sees what the comparisons are meant to compare."""
    client = surface(PdffillrClient)
    assert {"request", "run", "close", "closed", "base_url", "__init__", "__enter__"} <= set(client)
    assert "_http_options" not in client and "__dict__" not in client
    assert {"create", "list", "end", "messages", "send", "attach"} <= set(surface(SessionsResource))
    session = surface(Session)
    assert {"resume", "send", "attach", "history", "end", "close", "info", "ended"} <= set(session)
    assert {"__enter__", "__exit__", "__repr__"} <= set(session) and "_life" not in session


#: The per-call options of openai-python's methods, on every call of both clients.
PER_CALL_OPTIONS = [
    ("extra_headers", "Mapping[str, str] | None"),
    ("extra_query", "Mapping[str, object] | None"),
    ("timeout", "float | Timeout | None"),
    ("max_retries", "int | None"),
]


@pytest.mark.parametrize("resource", [SessionsResource, AsyncSessionsResource])
def test_every_call_takes_the_per_call_options(resource: type) -> None:
    """A method added later without them fails here (the comparisons above only check that
    the two clients agree, not that the options are there)."""
    calls = [
        (name, value)
        for name, value in surface(resource).items()
        if not name.startswith("_") and inspect.isfunction(value)
    ]
    assert {name for name, _ in calls} == {"create", "list", "end", "messages", "send", "attach"}
    targets = [*calls, ("request", PdffillrClient.request), ("run", PdffillrClient.run)]
    for name, func in targets:
        params = inspect.signature(func).parameters
        found = [
            (p.name, p.annotation, p.kind, p.default)
            for p in params.values()
            if p.name in dict(PER_CALL_OPTIONS)
        ]
        expected = [(o, a, inspect.Parameter.KEYWORD_ONLY, None) for o, a in PER_CALL_OPTIONS]
        assert found == expected, name


def test_with_options_is_one_implementation_returning_the_same_kind_of_client() -> None:
    assert PdffillrClient.with_options is AsyncPdffillrClient.with_options
    kwargs: dict[str, Any] = {"api_key": "sk_surface_0123456789", "base_url": "http://surface.test"}
    sync_client, async_client = PdffillrClient(**kwargs), AsyncPdffillrClient(**kwargs)
    try:
        for client, resource in (
            (sync_client, SessionsResource),
            (async_client, AsyncSessionsResource),
        ):
            copy = client.with_options(timeout=3)
            assert type(copy) is type(client) and type(copy.sessions) is resource
            assert copy.sessions._client is copy and copy.timeout.request == 3
            assert client.timeout.request == 60  # the original is unchanged
    finally:
        sync_client.close()
        asyncio.run(async_client.aclose())
