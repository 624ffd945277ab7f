"""The client against an in-process transport: parsing, errors, retries, configuration.

These tests use ``httpx.MockTransport`` (no socket, no cassette) to script exact answers,
including ones the emulator would never give.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from pdffillr_sessions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    PdffillrClient,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    SessionEndedError,
    Timeout,
)

KEY = "sk_test_SECRET_abcdef123456"
SESSION = {
    "session_id": "sess_1",
    "title": "Q4",
    "status": "active",
    "message_count": 0,
    "created_at": "2026-01-01T00:00:00Z",
}

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, **kwargs: object) -> PdffillrClient:
    kwargs.setdefault("sleep", lambda s: None)
    return PdffillrClient(
        KEY,
        base_url="http://pdffillr.test",
        transport=httpx.MockTransport(handler),
        **kwargs,  # type: ignore[arg-type]
    )


def script(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that gives ``answers`` in order and records every request."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def test_create_sends_title_and_parses_session() -> None:
    handler, seen = script(httpx.Response(201, json=SESSION))
    with make_client(handler) as client:
        info = client.sessions.create(title="Q4")
    assert info.session_id == "sess_1" and info.title == "Q4" and info.active
    assert info.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert seen[0].method == "POST" and seen[0].url.path == "/v1/sdk/chat/sessions"
    assert json.loads(seen[0].content) == {"title": "Q4"}
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert seen[0].headers["idempotency-key"].startswith("pfs_")


def test_create_without_title_sends_empty_object() -> None:
    handler, seen = script(httpx.Response(200, json={**SESSION, "title": None}))
    with make_client(handler) as client:
        assert client.sessions.create().title is None
    assert json.loads(seen[0].content) == {}


def test_list_accepts_bare_array_and_data_envelope_with_extra_fields_and_offsets() -> None:
    other = {**SESSION, "session_id": "sess_2", "created_at": "2026-01-01T05:30:00+05:30"}
    extra = {**SESSION, "updated_at": "2026-01-02T00:00:00Z", "workspace": {"id": "w"}}
    handler, _ = script(
        httpx.Response(200, json=[extra, other]),
        httpx.Response(200, json={"data": [extra, other], "has_more": False}),
    )
    with make_client(handler) as client:
        bare = client.sessions.list()
        enveloped = client.sessions.list()
    assert bare == enveloped
    assert bare[0].raw["workspace"] == {"id": "w"}
    assert bare[1].created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert bare[1].created_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert bare[1].created_at.tzinfo == timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"", "empty"),
        (b'{"sessions": []}', "expected a JSON array"),
        (
            json.dumps([{k: v for k, v in SESSION.items() if k != "session_id"}]).encode(),
            "'session_id' is missing",
        ),
        (
            json.dumps([{**SESSION, "message_count": "3"}]).encode(),
            "'message_count' has the wrong type",
        ),
        (json.dumps([{**SESSION, "created_at": "yesterday"}]).encode(), "not an ISO 8601"),
        (json.dumps([{**SESSION, "title": 5}]).encode(), "'title' must be a string or null"),
        (json.dumps([5]).encode(), "sessions list[0]: expected a JSON object"),
    ],
)
def test_malformed_bodies_raise_protocol_error_naming_the_problem(
    body: bytes, fragment: str
) -> None:
    handler, seen = script(httpx.Response(200, content=body))
    with make_client(handler) as client, pytest.raises(ProtocolError, match=re.escape(fragment)):
        client.sessions.list()
    assert len(seen) == 1  # a body we cannot read is never retried


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, SessionEndedError),
        (422, BadRequestError),
    ],
)
def test_final_statuses_map_to_their_class_without_retry(status: int, cls: type) -> None:
    body = {"error": {"type": "some_type", "message": "what went wrong"}}
    handler, seen = script(httpx.Response(status, json=body, headers={"x-request-id": "req_42"}))
    with make_client(handler) as client, pytest.raises(cls) as info:
        client.sessions.messages("sess_1")
    err = info.value
    assert (err.status_code, err.error_type, err.message, err.request_id) == (
        status,
        "some_type",
        "what went wrong",
        "req_42",
    )
    assert err.body == body
    assert "req_42" in str(err)
    assert len(seen) == 1


def test_html_error_body_from_a_proxy_still_gives_the_right_class() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    handler, seen = script(*[httpx.Response(502, content=html)] * 3)
    with make_client(handler) as client, pytest.raises(InternalServerError) as info:
        client.sessions.list()
    assert info.value.status_code == 502
    assert info.value.error_type is None
    assert "502 Bad Gateway" in info.value.message
    assert len(seen) == 3  # the first try and two retries


def test_retries_reuse_one_idempotency_key_per_logical_call() -> None:
    handler, seen = script(
        httpx.Response(503, json={"error": {"type": "overloaded", "message": "busy"}}),
        httpx.ConnectError("refused"),
        httpx.Response(
            200,
            json=[
                {
                    "id": "m1",
                    "type": "message",
                    "role": "user",
                    "content": "hi",
                    "created_at": "2026-01-01T00:00:01Z",
                }
            ],
        ),
        httpx.Response(200, json=[]),
    )
    with make_client(handler) as client:
        entries = client.sessions.send("sess_1", "hi")
        client.sessions.send("sess_1", "again")
    assert [e.id for e in entries] == ["m1"] and entries[0].session_id == "sess_1"
    keys = [r.headers["idempotency-key"] for r in seen]
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] != keys[0]


def test_get_requests_carry_no_idempotency_key() -> None:
    handler, seen = script(httpx.Response(200, json=[]))
    with make_client(handler) as client:
        client.sessions.list()
    assert "idempotency-key" not in seen[0].headers


def test_retry_after_is_slept_and_each_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    handler, _ = script(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"type": "rate_limit"}}),
        httpx.Response(503, headers={"retry-after-ms": "300"}),
        httpx.Response(200, json=[]),
    )
    caplog.set_level(logging.INFO, logger="pdffillr_sessions")
    with make_client(handler, sleep=sleeps.append) as client:
        assert client.sessions.list() == []
    assert sleeps == [2.0, 0.3]
    retries = [r for r in caplog.records if r.name == "pdffillr_sessions"]
    assert len(retries) == 2 and {r.levelno for r in retries} == {logging.INFO}
    assert "retry 1 of 2" in retries[0].getMessage()
    assert "RateLimitError" in retries[0].getMessage()


def test_retry_after_beyond_the_cap_fails_at_once() -> None:
    handler, seen = script(httpx.Response(429, headers={"Retry-After": "3600"}))
    with make_client(handler) as client, pytest.raises(RateLimitError) as info:
        client.sessions.list()
    assert info.value.retry_after == 3600
    assert len(seen) == 1


def test_max_retries_zero_makes_one_attempt() -> None:
    handler, seen = script(httpx.Response(500))
    with make_client(handler, max_retries=0) as client, pytest.raises(InternalServerError):
        client.sessions.list()
    assert len(seen) == 1


def test_timeouts_become_api_timeout_error_keeping_the_cause() -> None:
    handler, seen = script(*[httpx.ReadTimeout("slow")] * 3)
    with make_client(handler) as client, pytest.raises(APITimeoutError) as info:
        client.sessions.list()
    assert isinstance(info.value, APIConnectionError)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(seen) == 3


def test_total_timeout_bounds_the_whole_call() -> None:
    # The clock only moves through the injected sleep: 0.5 + 1.0 + 2.0 > 2.5 s total.
    handler, seen = script(*[httpx.ConnectError("refused")] * 10)
    sleeps: list[float] = []
    with (
        make_client(
            handler, sleep=sleeps.append, max_retries=9, timeout=Timeout(30, total=0.001)
        ) as client,
        pytest.raises(APIConnectionError),
    ):
        client.sessions.list()
    assert len(seen) == 1 and sleeps == []


def test_end_treats_409_as_already_ended_and_accepts_204() -> None:
    handler, seen = script(
        httpx.Response(204),
        httpx.Response(409, json={"error": {"type": "session_ended", "message": "ended"}}),
        httpx.Response(200, json={**SESSION, "status": "ended"}),
    )
    with make_client(handler) as client:
        assert client.sessions.end("sess_1") is None
        assert client.sessions.end("sess_1") is None
        assert client.sessions.end("sess_1") is None
    assert [r.url.path for r in seen] == ["/v1/sdk/chat/sessions/sess_1/end"] * 3


def test_end_of_unknown_session_raises_not_found() -> None:
    handler, _ = script(httpx.Response(404, json={"error": {"type": "not_found", "message": "no"}}))
    with make_client(handler) as client, pytest.raises(NotFoundError):
        client.sessions.end("sess_nope")


@pytest.mark.parametrize("bad", ["", ".", "..", None, 5])
def test_session_ids_that_cannot_be_a_segment_are_refused_locally(bad: object) -> None:
    handler, seen = script()
    with make_client(handler) as client, pytest.raises(InvalidInputError):
        client.sessions.messages(bad)  # type: ignore[arg-type]
    assert seen == []


@pytest.mark.parametrize(
    ("session_id", "raw_path"),
    [
        ("a/b", "/v1/sdk/chat/sessions/a%2Fb/messages"),
        ("a?b", "/v1/sdk/chat/sessions/a%3Fb/messages"),
        ("%2e%2e", "/v1/sdk/chat/sessions/%252e%252e/messages"),
        ("../x", "/v1/sdk/chat/sessions/..%2Fx/messages"),
        ("a#b c", "/v1/sdk/chat/sessions/a%23b%20c/messages"),
    ],
)
def test_session_ids_are_sent_as_one_encoded_segment(session_id: str, raw_path: str) -> None:
    handler, seen = script(httpx.Response(200, json=[]))
    with make_client(handler) as client:
        client.sessions.messages(session_id)
    assert seen[0].url.raw_path.decode() == raw_path


@pytest.mark.parametrize("content", ["", None, 3])
def test_send_refuses_bad_content_locally(content: object) -> None:
    handler, seen = script()
    with make_client(handler) as client, pytest.raises(InvalidInputError):
        client.sessions.send("sess_1", content)  # type: ignore[arg-type]
    assert seen == []


def test_create_refuses_non_string_titles() -> None:
    handler, seen = script()
    with make_client(handler) as client, pytest.raises(InvalidInputError):
        client.sessions.create(title=42)  # type: ignore[arg-type]
    assert seen == []


def test_attach_uploads_multipart_and_by_url(tmp_path: pytest.TempPathFactory) -> None:
    doc = {
        "id": "d1",
        "type": "document",
        "role": None,
        "content": "side-letter.pdf",
        "created_at": "2026-01-01T00:00:02Z",
        "document": {"filename": "side-letter.pdf"},
    }
    handler, seen = script(httpx.Response(201, json=[doc]), httpx.Response(201, json=[doc]))
    with make_client(handler) as client:
        entries = client.sessions.attach("sess_1", file=b"%PDF-1.7", filename="side-letter.pdf")
        client.sessions.attach("sess_1", url="https://example.com/a.pdf")
    assert entries[0].document == {"filename": "side-letter.pdf"}
    assert b'name="file"; filename="side-letter.pdf"' in seen[0].content
    assert json.loads(seen[1].content) == {"url": "https://example.com/a.pdf"}
    assert seen[0].headers["idempotency-key"] != seen[1].headers["idempotency-key"]


def test_no_key_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PDFFILLR_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="PDFFILLR_API_KEY"):
        PdffillrClient()


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFFILLR_API_KEY", KEY)
    monkeypatch.setenv("PDFFILLR_BASE_URL", "http://env.test:9/")
    with PdffillrClient() as client:
        assert client.base_url == "http://env.test:9"
    with PdffillrClient(base_url="http://arg.test") as client:
        assert client.base_url == "http://arg.test"
    monkeypatch.delenv("PDFFILLR_BASE_URL")
    with PdffillrClient() as client:
        assert client.base_url == "https://api.pdffillr.ai"


@pytest.mark.parametrize("bad", ["key with space", "key\nInjected: yes"])
def test_malformed_keys_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PdffillrClient(bad)
    assert bad not in str(info.value)


def test_bad_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        PdffillrClient(KEY, base_url="ftp://nope")


def test_the_key_is_not_in_repr_or_errors() -> None:
    handler, _ = script(
        httpx.Response(401, json={"error": {"type": "authentication_error", "message": "bad key"}})
    )
    client = make_client(handler)
    assert KEY not in repr(client) and KEY not in str(vars(client).get("sessions"))
    with pytest.raises(AuthenticationError) as info:
        client.sessions.list()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    client.close()
    assert client.closed


def test_one_http_client_is_reused_across_calls() -> None:
    handler, _ = script(httpx.Response(200, json=[]), httpx.Response(200, json=[]))
    client = make_client(handler)
    pool = client._http
    client.sessions.list()
    client.sessions.list()
    assert client._http is pool and not pool.is_closed
    client.close()


def test_request_sends_one_given_idempotency_key_on_every_attempt() -> None:
    handler, seen = script(
        httpx.Response(503, json={"error": {"type": "overloaded", "message": "busy"}}),
        httpx.Response(201, json=SESSION),
    )
    with make_client(handler) as client:
        response = client.request(
            "POST",
            "/v1/sdk/chat/sessions",
            json={},
            idempotent=False,
            idempotency_key="pfs_raw_request",
        )
    assert response.status_code == 201 and response.json() == SESSION
    assert [r.headers["idempotency-key"] for r in seen] == ["pfs_raw_request"] * 2
