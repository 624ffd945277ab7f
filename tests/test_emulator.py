"""The emulator over plain httpx: contract, isolation, idempotency, faults, dialects."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from pdffillr_sessions import _contract
from pdffillr_sessions.cli import main as cli_main
from pdffillr_sessions.emulator import (
    Dialect,
    Emulator,
    Fault,
    FaultSpecError,
    ServiceState,
    emulator_command,
    serve_forever_cli,
)
from pdffillr_sessions.emulator._server import _Server, parse_multipart
from pdffillr_sessions.emulator._state import ApiError, assistant_reply

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = _contract.SESSIONS_PATH


def auth(key: str = "key-a") -> dict[str, str]:
    return {_contract.AUTH_HEADER: f"{_contract.AUTH_SCHEME} {key}"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, headers=auth(), timeout=5) as c:
        yield c


def create(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post(SESSIONS, json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def error_type(r: httpx.Response) -> str:
    t: str = r.json()[_contract.ERROR_ENVELOPE_KEY]["type"]
    return t


# -- pure state ---------------------------------------------------------------------------------


def test_state_is_pure_and_deterministic() -> None:
    def run() -> list[Any]:
        st = ServiceState(deterministic=True)
        s = st.create("k", "t")
        sent = st.send("k", s["session_id"], "hello there")
        ended = st.end("k", s["session_id"])
        return [s, sent, ended, st.list_sessions("k")]

    first = run()
    assert first == run()
    assert first[0]["created_at"] == "2026-01-01T00:00:00.000Z"
    assert first[2]["ended_at"] == "2026-01-01T00:00:03.000Z"
    assert assistant_reply("a b c") == assistant_reply("a b c") != assistant_reply("a b d")


def test_state_errors_and_isolation() -> None:
    st = ServiceState()
    s = st.create("k", None)
    with pytest.raises(ApiError) as e:
        st.history("other", s["session_id"])
    assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        st.send("k", s["session_id"], "")
    assert e.value.status == 400
    st.end("k", s["session_id"])
    with pytest.raises(ApiError) as e:
        st.send("k", s["session_id"], "x")
    assert (e.value.status, e.value.error_type) == (409, "session_ended")


# -- lifecycle ------------------------------------------------------------------------------------


def test_start_gives_free_port_url_and_stop_closes_socket() -> None:
    emu = Emulator().start()
    port = emu.port
    assert emu.url == f"http://127.0.0.1:{port}" and port > 0
    assert httpx.get(emu.url + SESSIONS, headers=auth()).status_code == 200
    emu.stop()
    assert not emu.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}{SESSIONS}", headers=auth(), timeout=1)


def test_stop_is_prompt_with_keepalive_and_pending_delay() -> None:
    emu = Emulator().start()
    c = httpx.Client(base_url=emu.url, headers=auth(), timeout=10)
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            c.get(SESSIONS)
        except httpx.HTTPError as exc:
            errors.append(exc)

    keepalive = httpx.Client(base_url=emu.url, headers=auth())
    keepalive.get(SESSIONS)  # leaves an idle keep-alive connection open
    emu.add_fault(Fault("delay", seconds=30))
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 1.0
    t.join(2)
    assert not t.is_alive() and errors  # the delayed request was cut, not answered
    c.close()
    keepalive.close()


def test_keepalive_is_fast(client: httpx.Client) -> None:
    client.get(SESSIONS)
    started = time.perf_counter()
    for _ in range(50):
        client.get(SESSIONS)
    # The ~44 ms delayed-ACK stall would make this >2 s; one send + TCP_NODELAY is ~0.5 ms each.
    assert time.perf_counter() - started < 1.0


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "abc"}],
)
def test_missing_or_malformed_auth_is_401(emu: Emulator, headers: dict[str, str]) -> None:
    r = httpx.get(emu.url + SESSIONS, headers=headers)
    assert r.status_code == 401
    assert error_type(r) == "authentication_error"
    assert r.headers["x-request-id"].startswith("req_")


def test_valid_keys_restrict() -> None:
    with Emulator(valid_keys={"good"}) as emu:
        assert httpx.get(emu.url + SESSIONS, headers=auth("good")).status_code == 200
        r = httpx.post(emu.url + SESSIONS, headers=auth("bad"), json={})
        assert r.status_code == 401
        assert emu.stats["sessions_created"] == 0


def test_keys_are_isolated(emu: Emulator, client: httpx.Client) -> None:
    s = create(client, title="mine")
    sid = s["session_id"]
    other = httpx.Client(base_url=emu.url, headers=auth("key-b"))
    assert other.get(SESSIONS).json() == []
    for method, path in [
        ("GET", _contract.messages_path(sid)),
        ("POST", _contract.end_path(sid)),
    ]:
        r = other.request(method, path)
        assert r.status_code == 404 and error_type(r) == "not_found"
    r = other.post(_contract.messages_path(sid), json={"content": "hi"})
    assert r.status_code == 404
    assert client.get(_contract.messages_path(sid)).json() == []  # nothing leaked in
    assert emu.sessions("key-b") == [] and len(emu.sessions("key-a")) == 1
    other.close()


def test_authorization_value_is_never_recorded(emu: Emulator, client: httpx.Client) -> None:
    client.get(SESSIONS)
    rec = emu.request_log[-1]
    assert "key-a" not in json.dumps(rec.to_dict())
    assert rec.key_scope and rec.method == "GET" and rec.path == SESSIONS and rec.status == 200


# -- create / list --------------------------------------------------------------------------------


def test_create_shapes(client: httpx.Client) -> None:
    r = client.post(SESSIONS, json={"title": "Due Diligence Review"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    s = r.json()
    assert s["session_id"].startswith("sess_")
    assert s["title"] == "Due Diligence Review"
    assert (s["status"], s["message_count"]) == ("active", 0)
    assert s["created_at"].endswith("Z")
    assert client.post(SESSIONS).json()["title"] is None  # empty body
    assert client.post(SESSIONS, json={"title": None}).json()["title"] is None


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"title": 5}', b'{"title": ["x"]}'])
def test_create_rejects_bad_bodies(emu: Emulator, client: httpx.Client, body: bytes) -> None:
    r = client.post(SESSIONS, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_type(r) == "invalid_request"
    assert emu.stats["sessions_created"] == 0


def test_list_newest_first_with_deterministic_ties() -> None:
    with Emulator(deterministic=True) as emu:
        c = httpx.Client(base_url=emu.url, headers=auth())
        ids = [create(c, title=str(i))["session_id"] for i in range(4)]
        assert [s["session_id"] for s in c.get(SESSIONS).json()] == ids[::-1]
        c.close()
    st = ServiceState()
    frozen = datetime(2026, 5, 1, tzinfo=UTC)
    st.now = lambda: frozen  # type: ignore[method-assign]
    tied = [st.create("k", None)["session_id"] for _ in range(3)]
    st.create("other", None)
    # Equal timestamps: the later-created session comes first, every time.
    assert [s["session_id"] for s in st.list_sessions("k")] == tied[::-1]


# -- end ------------------------------------------------------------------------------------------


def test_end_and_end_again(emu: Emulator, client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    r = client.post(_contract.end_path(sid))
    assert r.status_code == 200
    assert r.json()["status"] == "ended" and r.json()["ended_at"].endswith("Z")
    again = client.post(_contract.end_path(sid))
    assert again.status_code == 200 and again.json()["status"] == "ended"
    assert emu.stats["sessions_ended"] == 1 and emu.stats["sessions_active"] == 0
    assert client.get(SESSIONS).json()[0]["status"] == "ended"  # still listed
    r = client.post(_contract.end_path("sess_nope"))
    assert r.status_code == 404 and error_type(r) == "not_found"


# -- messages -------------------------------------------------------------------------------------


def test_send_appends_user_and_deterministic_reply(client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    r = client.post(_contract.messages_path(sid), json={"content": "Summarise clause 4"})
    assert r.status_code == 200
    entries = r.json()
    assert [(e["type"], e["role"]) for e in entries] == [
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert entries[0]["content"] == "Summarise clause 4"
    assert entries[1]["content"] == assistant_reply("Summarise clause 4")
    sid2 = create(client)["session_id"]
    again = client.post(_contract.messages_path(sid2), json={"content": "Summarise clause 4"})
    assert again.json()[1]["content"] == entries[1]["content"]
    history = client.get(_contract.messages_path(sid)).json()
    assert [e["id"] for e in history] == [e["id"] for e in entries]
    sessions = {s["session_id"]: s for s in client.get(SESSIONS).json()}
    assert sessions[sid]["message_count"] == 2


def test_history_oldest_first_unique_ids_and_readable_after_end(client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    for i in range(3):
        client.post(_contract.messages_path(sid), json={"content": f"m{i}"})
    client.post(_contract.end_path(sid))
    history = client.get(_contract.messages_path(sid)).json()
    assert [e["content"] for e in history if e["role"] == "user"] == ["m0", "m1", "m2"]
    assert len({e["id"] for e in history}) == len(history) == 6
    r = client.post(_contract.messages_path(sid), json={"content": "late"})
    assert r.status_code == 409 and error_type(r) == "session_ended"
    assert len(client.get(_contract.messages_path(sid)).json()) == 6


@pytest.mark.parametrize("body", [{}, {"content": ""}, {"content": 5}, {"content": None}])
def test_send_rejects_bad_content(client: httpx.Client, body: dict[str, Any]) -> None:
    sid = create(client)["session_id"]
    r = client.post(_contract.messages_path(sid), json=body)
    assert r.status_code == 400 and error_type(r) == "invalid_request"
    assert client.get(_contract.messages_path(sid)).json() == []


def test_big_message_nul_and_emoji_round_trip(client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    text = "nul\x00 emoji 😀🇫🇷 é\n" + "x" * 200_000
    r = client.post(_contract.messages_path(sid), json={"content": text})
    assert r.status_code == 200
    assert client.get(_contract.messages_path(sid)).json()[0]["content"] == text


def test_ten_megabyte_body_is_accepted(client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    text = "y" * (10 * 1024 * 1024)
    r = client.post(_contract.messages_path(sid), json={"content": text})
    assert r.status_code == 200 and len(r.json()[0]["content"]) == len(text)


def test_percent_encoded_slash_is_one_segment(emu: Emulator, client: httpx.Client) -> None:
    weird = "sess_a/b"
    path = _contract.messages_path(weird)
    assert "%2F" in path
    r = client.get(path)
    assert r.status_code == 404 and weird in r.json()["error"]["message"]
    # A real session whose id contains "/" is reachable through the encoded path.
    emu.state._sessions[weird] = emu.state._sessions.pop(create(client)["session_id"])
    emu.state._sessions[weird].session_id = weird
    assert client.get(path).status_code == 200
    unencoded = client.get(f"{SESSIONS}/sess_a/b/messages")
    assert unencoded.status_code == 404 and "Unknown route" in unencoded.json()["error"]["message"]


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and error_type(r) == "not_found"
    r = client.delete(SESSIONS)
    assert r.status_code == 405 and "error" in r.json()
    assert r.headers["allow"] == "GET, POST"
    assert client.get(_contract.end_path("x")).status_code == 405


# -- documents ------------------------------------------------------------------------------------


def test_attach_upload_exact_bytes(client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    data = b"%PDF-1.7\r\n--not-a-boundary\r\n\x00\xff" * 100
    r = client.post(
        _contract.documents_path(sid), files={"file": ("q4 report.pdf", data, "application/pdf")}
    )
    assert r.status_code == 200, r.text
    doc, activity = r.json()
    assert doc["type"] == "document" and doc["role"] is None
    assert doc["document"]["filename"] == "q4 report.pdf"
    assert doc["document"]["content_type"] == "application/pdf"
    assert doc["document"]["size_bytes"] == len(data)
    assert (doc["document"]["source"], doc["document"]["url"]) == ("upload", None)
    assert doc["document"]["document_id"].startswith("doc_")
    assert activity["type"] == "activity" and activity["event"] == "document.processed"
    assert client.get(SESSIONS).json()[0]["message_count"] == 2


def test_attach_url(client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    r = client.post(_contract.documents_path(sid), json={"url": "https://ex.com/a/lease.pdf"})
    assert r.status_code == 200
    doc = r.json()[0]["document"]
    assert (doc["source"], doc["url"], doc["filename"]) == (
        "url",
        "https://ex.com/a/lease.pdf",
        "lease.pdf",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {}},
        {"json": {"url": "ftp://x/y"}},
        {"json": {"url": 3}},
        {"files": {"other": ("a.txt", b"x")}},
        {"content": b"garbage"},
    ],
)
def test_attach_bad_input_is_400(client: httpx.Client, kwargs: dict[str, Any]) -> None:
    sid = create(client)["session_id"]
    r = client.post(_contract.documents_path(sid), **kwargs)
    assert r.status_code == 400 and error_type(r) == "invalid_request"


def test_attach_on_ended_is_409(client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    client.post(_contract.end_path(sid))
    r = client.post(_contract.documents_path(sid), files={"file": ("a.pdf", b"x")})
    assert r.status_code == 409 and error_type(r) == "session_ended"


def test_multipart_parser_requires_closing_boundary() -> None:
    with pytest.raises(ApiError):
        parse_multipart(
            b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\nabc",
            "multipart/form-data; boundary=b",
        )


# -- idempotency ----------------------------------------------------------------------------------


def test_idempotent_create_send_attach(emu: Emulator, client: httpx.Client) -> None:
    h = {_contract.IDEMPOTENCY_HEADER: "idem-1"}
    first = client.post(SESSIONS, json={"title": "once"}, headers=h)
    second = client.post(SESSIONS, json={"title": "once"}, headers=h)
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert len(client.get(SESSIONS).json()) == 1
    sid = first.json()["session_id"]
    for _ in range(2):
        client.post(_contract.messages_path(sid), json={"content": "hi"}, headers=h)
        client.post(_contract.documents_path(sid), json={"url": "https://e.com/x.pdf"}, headers=h)
    assert len(client.get(_contract.messages_path(sid)).json()) == 4  # 2 + 2, not 8
    # Another API key with the same idempotency key acts on its own.
    other = httpx.Client(base_url=emu.url, headers=auth("key-b"))
    assert other.post(SESSIONS, json={}, headers=h).json()["session_id"] != sid
    other.close()
    assert emu.stats["idempotent_replays"] == 3


# -- faults ---------------------------------------------------------------------------------------


def test_status_fault_with_headers_does_not_act(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault(
        Fault(
            "status",
            status=503,
            method="POST",
            times=2,
            headers={"Retry-After": "2", "retry-after-ms": "1500"},
        )
    )
    for _ in range(2):
        r = client.post(SESSIONS, json={})
        assert r.status_code == 503 and error_type(r) == "overloaded"
        assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("2", "1500")
    assert client.get(SESSIONS).json() == []  # nothing created, GET not matched
    assert client.post(SESSIONS, json={}).status_code == 200  # used up
    assert emu.stats["faults_injected"] == 2
    assert [r.fault for r in emu.request_log] == ["503", "503", None, None]


def test_status_fault_raw_html_body(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault(Fault.parse("502:::body=<html>Bad gateway</html>"))
    r = client.get(SESSIONS)
    assert r.status_code == 502 and r.text == "<html>Bad gateway</html>"
    assert r.headers["content-type"] == "text/html"


def test_drop_before_does_not_act(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault(Fault("drop_before", method="POST"))
    with pytest.raises(httpx.TransportError):
        client.post(SESSIONS, json={"title": "x"})
    assert emu.sessions("key-a") == []
    assert emu.request_log[-1].status is None and emu.request_log[-1].fault == "drop_before"
    assert client.get(SESSIONS).status_code == 200  # the client recovers


def test_drop_after_really_acted(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault(Fault.parse(f"drop_after:POST:{SESSIONS}$"))
    h = {_contract.IDEMPOTENCY_HEADER: "retry-me"}
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(SESSIONS, json={"title": "ghost"}, headers=h)
    created = emu.sessions("key-a")
    assert [s["title"] for s in created] == ["ghost"]  # it happened
    retry = client.post(SESSIONS, json={"title": "ghost"}, headers=h)  # the retry replays
    assert retry.json()["session_id"] == created[0]["session_id"]
    assert len(emu.sessions("key-a")) == 1


def test_drop_after_on_send(emu: Emulator, client: httpx.Client) -> None:
    sid = create(client)["session_id"]
    emu.add_fault("drop_after:POST:/messages$")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(_contract.messages_path(sid), json={"content": "hi"})
    assert [e["role"] for e in emu.history("key-a", sid)] == ["user", "assistant"]


def test_delay_fault_times_out_client_then_acts(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault(Fault("delay", seconds=0.2, method="POST"))
    with pytest.raises(httpx.TimeoutException):
        client.post(SESSIONS, json={}, timeout=0.05)
    time.sleep(0.3)
    assert len(emu.sessions("key-a")) == 1  # handled normally after the delay


def test_truncate_fault_acts_and_cuts_body(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault(Fault("truncate", method="POST"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(SESSIONS, json={"title": "t"})
    assert len(emu.sessions("key-a")) == 1
    # Raw check: full Content-Length announced, fewer bytes sent.
    emu.add_fault(Fault("truncate", keep=5))
    with socket.create_connection(("127.0.0.1", emu.port)) as s:
        s.sendall(
            f"GET {SESSIONS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-a\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    assert len(body) == 5 < length


def test_fault_matchers(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault(Fault("status", status=500, path=r"/messages$"))
    assert client.get(SESSIONS).status_code == 200
    assert client.get(_contract.messages_path("s")).status_code == 500
    emu.add_fault(Fault("status", status=429))
    assert client.get("/_emulator/stats").status_code == 200  # control routes never faulted
    assert client.get(SESSIONS).status_code == 429
    emu.add_fault(Fault("status", status=500))
    assert emu.clear_faults() == 1
    assert client.get(SESSIONS).status_code == 200


def test_random_faults_are_seeded_and_counted() -> None:
    def soak() -> list[str | None]:
        with Emulator(fault_rate=0.5, seed=7, fault_kinds=("503", "429")) as emu:
            c = httpx.Client(base_url=emu.url, headers=auth())
            statuses = [c.get(SESSIONS).status_code for _ in range(40)]
            c.close()
            assert emu.stats["faults_injected"] == sum(s != 200 for s in statuses)
            assert set(statuses) <= {200, 503, 429} and 5 < emu.stats["faults_injected"] < 35
            return [r.fault for r in emu.request_log]

    assert soak() == soak()


def test_fault_spec_parsing() -> None:
    f = Fault.parse("503:POST:/v1/sdk/chat/sessions$:times=2:retry-after=1")
    assert (f.action, f.status, f.method, f.path, f.times) == (
        "status",
        503,
        "POST",
        "/v1/sdk/chat/sessions$",
        2,
    )
    assert f.headers == {"Retry-After": "1"}
    assert Fault.parse("delay:*::seconds=0.5").seconds == 0.5
    assert Fault.parse("drop_after:POST:/messages$").matches("POST", "/v1/x/messages")
    assert not Fault.parse("drop_after:POST:/messages$").matches("GET", "/v1/x/messages")
    for bad in ["nope", "503:GET:/x:times=0", "503:GET:/x:wat=1", "delay:::seconds=x", "99"]:
        with pytest.raises(FaultSpecError):
            Fault.parse(bad)


# -- control routes -------------------------------------------------------------------------------


def test_control_routes(emu: Emulator) -> None:
    ctl = httpx.Client(base_url=emu.url)  # no auth needed
    r = ctl.post("/_emulator/faults", json={"specs": ["503:POST::times=2"]})
    assert r.status_code == 200 and r.json()["queued"] == 1
    r = ctl.post("/_emulator/faults", json={"action": "drop_before", "method": "GET"})
    assert r.status_code == 200
    assert [f["action"] for f in ctl.get("/_emulator/faults").json()] == ["status", "drop_before"]
    c = httpx.Client(base_url=emu.url, headers=auth())
    assert c.post(SESSIONS, json={}).status_code == 503
    assert ctl.delete("/_emulator/faults").json() == {"cleared": 2}
    assert c.post(SESSIONS, json={}).status_code == 200
    stats = ctl.get("/_emulator/stats").json()
    assert stats["faults_injected"] == 1 and stats["sessions_created"] == 1
    log = ctl.get("/_emulator/requests").json()
    assert [(x["method"], x["status"]) for x in log] == [("POST", 503), ("POST", 200)]
    assert ctl.post("/_emulator/faults", json={"spec": "bogus"}).status_code == 400
    assert ctl.post("/_emulator/reset").json() == {"reset": True}
    assert emu.sessions("key-a") == [] and emu.stats["requests"] == 0
    assert ctl.get("/_emulator/nothing").status_code == 404
    assert c.get("/").status_code == 404 and httpx.get(emu.url + "/x").status_code == 404
    c.close()
    ctl.close()


# -- dialects -------------------------------------------------------------------------------------


def test_default_dialect_is_canonical(client: httpx.Client) -> None:
    s = create(client)
    assert set(s) == {"session_id", "title", "status", "message_count", "created_at"}
    assert isinstance(client.get(SESSIONS).json(), list)


def test_dialect_switches() -> None:
    d = Dialect(
        create_status=201,
        list_envelope=True,
        extra_fields=True,
        offset_timestamps=True,
        end_status=204,
        end_ended="409",
    )
    with Emulator(dialect=d) as emu:
        c = httpx.Client(base_url=emu.url, headers=auth())
        r = c.post(SESSIONS, json={})
        assert r.status_code == 201
        s = r.json()
        assert s["created_at"].endswith("+00:00") and "updated_at" in s and "workspace" in s
        listed = c.get(SESSIONS).json()
        assert isinstance(listed, dict) and listed["data"][0]["session_id"] == s["session_id"]
        sent = c.post(_contract.messages_path(s["session_id"]), json={"content": "x"}).json()
        assert len(sent["data"]) == 2
        r = c.post(_contract.end_path(s["session_id"]))
        assert r.status_code == 204 and r.content == b""
        r = c.post(_contract.end_path(s["session_id"]))
        assert r.status_code == 409 and error_type(r) == "session_ended"
        c.close()
    with pytest.raises(ValueError):
        Dialect(end_status=202)  # type: ignore[arg-type]


# -- determinism ----------------------------------------------------------------------------------


def _raw_exchange(emu: Emulator) -> bytes:
    """A fixed script over a raw socket, returning every response byte."""
    out = b""
    with socket.create_connection(("127.0.0.1", emu.port)) as s:
        s.sendall(
            f"POST {SESSIONS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            f'Content-Length: 13\r\n\r\n{{"title":"t"}}'.encode()
        )
        time.sleep(0.05)
        s.sendall(
            f"GET {SESSIONS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_deterministic_mode_is_byte_identical() -> None:
    with Emulator(deterministic=True) as a, Emulator(deterministic=True) as b:
        first, second = _raw_exchange(a), _raw_exchange(b)
    assert first == second
    assert b"x-request-id: req_000001" in first and b"2026-01-01T00:00:00.000Z" in first
    with Emulator() as c:
        assert b"req_000001" not in _raw_exchange(c)


# -- the command line -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_module_runs_and_stops_on_signal(sig: signal.Signals) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdffillr_sessions.emulator",
            "--port",
            str(port),
            "--deterministic",
            "--fault",
            "503:POST::times=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"Pdffillr emulator listening on http://127.0.0.1:{port}"
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth())
        assert c.post(SESSIONS, json={}).status_code == 503  # the --fault applied
        r = c.post(SESSIONS, json={})
        assert r.status_code == 200 and r.json()["session_id"] == "sess_000001"
        c.close()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=5)
        assert proc.returncode == 0, err
        assert "stopped" in out and "key-a" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdffillr_sessions.emulator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=10,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_module_rejects_bad_fault_spec() -> None:
    r = _module("--port", "0", "--fault", "nope")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("Usage: python -m pdffillr_sessions.emulator [OPTIONS]")
    assert "Error: Invalid value for '--fault': 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


def _invoke(entry: str, *args: str) -> Result:
    """Run ``python -m pdffillr_sessions.emulator`` or ``pdffillr-sessions emulator`` in-process."""
    if entry == "module":
        return CliRunner().invoke(
            emulator_command, list(args), prog_name="python -m pdffillr_sessions.emulator"
        )
    return CliRunner().invoke(cli_main, ["emulator", *args], prog_name="pdffillr-sessions")


ENTRY_POINTS = ["module", "pdffillr-sessions"]


def test_both_entry_points_are_one_command_with_every_option() -> None:
    module_help = _module("--help")
    assert module_help.returncode == 0, module_help.stderr
    assert module_help.stdout.startswith("Usage: python -m pdffillr_sessions.emulator [OPTIONS]")
    group_help = _invoke("pdffillr-sessions", "--help")
    assert group_help.exit_code == 0
    assert group_help.output.startswith("Usage: pdffillr-sessions emulator [OPTIONS]")
    options = module_help.stdout.split("\nOptions:\n", 1)[1]
    same_text = re.sub(r"\s+", "", group_help.output.split("\nOptions:\n", 1)[1])
    assert same_text == re.sub(r"\s+", "", options)  # but for the wrapping (terminal width)
    for flag in ("--port", "--host", "--fault", "--fault-rate", "--seed", "--deterministic"):
        assert f"  {flag} " in options, flag
    assert "  --key API_KEY " in options and "-h, --help" in options


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "503:POST::times=1", "--fault", "teapot:GET"], "Invalid value for '--fault'"),
        (["--fault", "503::a:b"], "too many fields"),
        (["--fault-rate", "1.5"], "Invalid value for '--fault-rate'"),
        (["--port", "70000"], "Invalid value for '--port'"),
    ],
)
def test_bad_options_are_usage_errors_before_listening(
    entry: str, args: list[str], message: str
) -> None:
    r = _invoke(entry, *args)
    assert r.exit_code == 2 and r.exception is not None and isinstance(r.exception, SystemExit)
    assert message in r.stderr and "Traceback" not in r.output
    assert "listening" not in r.output


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_port_in_use_is_one_error_line(entry: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _invoke(entry, "--port", str(port))
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@contextlib.contextmanager
def _running_module(*args: str) -> Iterator[str]:
    """``python -m pdffillr_sessions.emulator --port 0 ARGS`` in a real process; yields its URL
    (its first line) and checks that SIGTERM stops it cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdffillr_sessions.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Pdffillr emulator listening on http://127.0.0.1:"), line
        yield line.split()[-1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_key_option_reaches_the_emulator() -> None:
    with (
        _running_module("--key", "key-a", "--key", "key-b") as url,
        httpx.Client(base_url=url, timeout=5) as c,
    ):
        assert c.get(SESSIONS, headers=auth("key-a")).status_code == 200
        assert c.get(SESSIONS, headers=auth("key-b")).status_code == 200
        rejected = c.get(SESSIONS, headers=auth("key-c"))
        assert rejected.status_code == 401 and error_type(rejected) == "authentication_error"
        assert c.get(SESSIONS).status_code == 401


def _random_fault_kinds(url: str, n: int) -> list[str | None]:
    with httpx.Client(base_url=url, headers=auth(), timeout=5) as c:
        for _ in range(n):
            with contextlib.suppress(httpx.TransportError):  # drop and truncate faults
                c.get(SESSIONS)
        return [r["fault"] for r in c.get("/_emulator/requests").json()]


def test_fault_rate_and_seed_reach_the_emulator() -> None:
    with _running_module("--fault-rate", "0.5", "--seed", "42") as url:
        from_the_shell = _random_fault_kinds(url, 12)
    with Emulator(fault_rate=0.5, seed=42) as emu:
        assert from_the_shell == _random_fault_kinds(emu.url, 12)
    assert None in from_the_shell and set(from_the_shell) != {None}


def test_serve_forever_cli_serves_until_its_stop_event() -> None:
    lines: list[str] = []
    listening, stop = threading.Event(), threading.Event()

    def echo(line: str) -> None:
        lines.append(line)
        listening.set()

    status: list[int] = []
    t = threading.Thread(
        target=lambda: status.append(
            serve_forever_cli(
                0, faults=["503:GET::times=1"], valid_keys=["key-a"], echo=echo, stop_event=stop
            )
        )
    )
    t.start()
    try:
        assert listening.wait(5)
        url = lines[0].split()[-1]
        with httpx.Client(base_url=url, timeout=5) as c:
            assert c.get(SESSIONS, headers=auth("key-a")).status_code == 503  # the fault
            assert c.get(SESSIONS, headers=auth("key-a")).status_code == 200
            assert c.get(SESSIONS, headers=auth("key-b")).status_code == 401
    finally:
        stop.set()
        t.join(5)
    assert status == [0] and lines[-1] == "Pdffillr emulator stopped"


def test_listen_backlog_holds_a_burst_of_connections() -> None:
    """16 clients connecting while the accept loop is busy all complete their handshake.

    Nothing accepts here, so every connection waits in the kernel's queue: with socketserver's
    default backlog of 5 the 7th SYN is dropped and its connect() times out."""
    server = _Server(("127.0.0.1", 0), Emulator())
    clients: list[socket.socket] = []
    try:
        for _ in range(16):
            clients.append(socket.create_connection(server.server_address[:2], timeout=5))
    finally:
        for c in clients:
            c.close()
        server.server_close()
    assert len(clients) == 16


def test_vcr_cassettes_recorded_twice_are_identical(tmp_path: Path) -> None:
    vcr = pytest.importorskip("vcr")
    port = _free_port()

    def record(name: str) -> bytes:
        path = tmp_path / name
        with (
            Emulator(port=port, deterministic=True) as emu,
            vcr.use_cassette(str(path), record_mode="all"),
            httpx.Client(base_url=emu.url, headers=auth()) as c,
        ):
            sid = c.post(
                SESSIONS, json={"title": "t"}, headers={_contract.IDEMPOTENCY_HEADER: "i"}
            ).json()["session_id"]
            c.post(_contract.messages_path(sid), json={"content": "hi 😀"})
            c.post(_contract.end_path(sid))
            c.get(SESSIONS)
        return path.read_bytes()

    first = record("a.yaml")
    assert first == record("b.yaml")
    assert b"sess_000001" in first and b"Thu, 01 Jan 2026 00:00:00 GMT" in first


def test_concurrent_retries_with_one_idempotency_key_create_once(
    emu: Emulator, client: httpx.Client
) -> None:
    results: list[str] = []

    def call() -> None:
        with httpx.Client(base_url=emu.url, headers=auth()) as c:
            r = c.post(SESSIONS, json={}, headers={_contract.IDEMPOTENCY_HEADER: "same"})
            results.append(r.json()["session_id"])

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(results) == 8 and len(set(results)) == 1
    assert len(emu.sessions("key-a")) == 1
