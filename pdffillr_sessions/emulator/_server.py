"""The HTTP layer of the emulator: a threaded stdlib HTTP/1.1 server over ``ServiceState``.

Every response is written with ONE ``sendall`` (status line, headers and body together) on a
socket with TCP_NODELAY: a handler that writes headers and body separately stalls ~44 ms per
keep-alive request on delayed ACKs. The Authorization value is never logged or recorded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import mimetypes
import random
import secrets
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from email.message import Message
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import _contract
from .._scope import key_scope
from ._faults import DEFAULT_FAULT_KINDS, MAX_LATENCY, Fault, FaultSpecError
from ._state import (
    ApiError,
    Dialect,
    ServiceState,
    StoredResponse,
    dumps,
    error_body,
    validate_url,
)

__all__ = ["DEFAULT_FAULT_KINDS", "Emulator", "RequestRecord"]

logger = logging.getLogger("pdffillr_sessions.emulator")

CONTROL_PREFIX = "/_emulator"
MAX_BODY_BYTES = 64 * 1024 * 1024
_BASE_SEGMENTS = _contract.SESSIONS_PATH.strip("/").split("/")
_JSON = "application/json"
_FIXED_DATE = "Thu, 01 Jan 2026 00:00:00 GMT"


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator saw (never the Authorization value: only a key fingerprint)."""

    method: str
    path: str
    idempotency_key: str | None
    status: int | None  # None: the connection was dropped without an answer
    fault: str | None  # the fault kind applied ("503", "drop_after", ...), or None
    request_id: str | None
    replayed: bool = False
    key_scope: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- multipart ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> list[_Part]:
    """A small exact multipart/form-data parser (the stdlib ``cgi`` module is deprecated)."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ApiError(400, "multipart body without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2:
        raise ApiError(400, "malformed multipart body: no parts")
    parts: list[_Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        line_end = chunk.find(b"\r\n")
        if line_end < 0:
            raise ApiError(400, "malformed multipart body")
        chunk = chunk[line_end + 2 :]
        head_end = chunk.find(b"\r\n\r\n")
        if head_end < 0:
            if chunk.startswith(b"\r\n"):  # a part without headers
                head, data = b"", chunk[2:]
            else:
                raise ApiError(400, "malformed multipart part headers")
        else:
            head, data = chunk[:head_end], chunk[head_end + 4 :]
        # Part headers are UTF-8 (what browsers and httpx send for non-ASCII file names).
        headers = HeaderParser().parsestr((head + b"\r\n\r\n").decode("utf-8", "replace"))
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        parts.append(
            _Part(
                name=name if isinstance(name, str) else None,
                filename=filename,
                content_type=headers.get("content-type"),
                data=data,
            )
        )
    else:
        raise ApiError(400, "malformed multipart body: no closing boundary")
    return parts


# -- the server --------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False  # Emulator.stop() joins the threads itself, with a deadline
    # socketserver's default backlog of 5 drops the SYNs of a burst of concurrent connections
    # (16 threads each opening one); the kernel caps this at net.core.somaxconn anyway.
    request_queue_size = 128
    timeout = 0.0  # handle_request() is only called when the socket is ready

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._resets: set[socket.socket] = set()
        self._conn_threads: list[threading.Thread] = []
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__(address, _Handler)

    def serve_until(self, stopping: threading.Event) -> None:
        """Accept until ``stopping`` is set; ``wake()`` interrupts the wait at once (no polling)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self and not stopping.is_set():
                        self.handle_request()  # ready: with timeout 0, accepts one

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="pdffillr-emulator-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._connections.add(request)
            self._conn_threads = [x for x in self._conn_threads if x.is_alive()]
            self._conn_threads.append(t)
        t.start()

    def mark_reset(self, request: socket.socket) -> None:
        with self._conn_lock:
            self._resets.add(request)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
            reset = request in self._resets
            self._resets.discard(request)
        if reset:  # linger 0 is set: closing without a FIN first sends a reset
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def close_connections(self) -> list[threading.Thread]:
        with self._conn_lock:
            conns = list(self._connections)
            threads = list(self._conn_threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return threads

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("emulator connection error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pdffillr-emulator"
    sys_version = ""
    timeout = 600  # an idle keep-alive connection is closed after this
    server: _Server

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    # Quiet: route the stdlib's request logging to our logger at DEBUG.
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors from the stdlib parser, as our JSON envelope in one write."""
        self.close_connection = True
        self._send(
            code,
            dumps(error_body(code, message or explain or "Bad request")),
            request_id=self.server.emulator._new_request_id(),
        )

    # Every method goes through one dispatcher.
    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    # -- wire helpers ----------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        request_id: str,
        headers: Iterable[tuple[str, str]] = (),
        content_type: str | None = _JSON,
        keep: int | None = None,
    ) -> None:
        reason = self.responses.get(status, ("",))[0]
        # Deterministic mode: a fixed Date, so that recorded cassettes are byte-identical.
        date = _FIXED_DATE if self.server.emulator.deterministic else self.date_time_string()
        lines = [
            f"HTTP/1.1 {status} {reason}".rstrip(),
            f"Date: {date}",
            f"Server: {self.server_version}",
        ]
        no_body = status == 204 or 100 <= status < 200 or status == 304
        if no_body:
            body = b""
        else:
            if content_type:
                lines.append(f"Content-Type: {content_type}")
            lines.append(f"Content-Length: {len(body)}")
        lines.append(f"{_contract.REQUEST_ID_HEADER}: {request_id}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        if self.close_connection or keep is not None:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        payload = b"" if self.command == "HEAD" else body
        if keep is not None:
            payload = payload[:keep]
            self.close_connection = True
        self.wfile.write(head + payload)  # ONE sendall

    def _abort(self, *, reset: bool) -> None:
        """Close without answering; ``reset``: an RST instead of an orderly FIN."""
        self.close_connection = True
        if reset:
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.server.mark_reset(self.connection)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size_line = self.rfile.readline(65537)
                try:
                    size = int(size_line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    self.close_connection = True
                    raise ApiError(400, "malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                if len(out) + size > self.server.emulator.max_body_bytes:
                    self.close_connection = True
                    raise ApiError(413, "request body too large")
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "invalid Content-Length") from None
        if length > self.server.emulator.max_body_bytes:
            self.close_connection = True
            raise ApiError(413, "request body too large")
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True
            raise ApiError(400, "request body shorter than Content-Length")
        return data

    # -- dispatch ------------------------------------------------------------------------------

    def _handle(self) -> None:
        emu = self.server.emulator
        method = self.command
        raw_path = urlsplit(self.path).path if "://" in self.path else self.path.split("?")[0]
        if raw_path == CONTROL_PREFIX or raw_path.startswith(CONTROL_PREFIX + "/"):
            self._control(method, raw_path)
            return
        idem = self.headers.get(_contract.IDEMPOTENCY_HEADER)
        api_key = _bearer(self.headers.get(_contract.AUTH_HEADER))
        scope = key_scope(api_key) if api_key else None
        request_id = emu._new_request_id()
        if emu.latency and emu._stopping.wait(emu.latency):  # the round trip of a real API
            self._abort(reset=True)
            return
        fault = emu._take_fault(method, raw_path)
        kind = fault.kind if fault else None

        def record(status: int | None, replayed: bool = False) -> None:
            emu._record(
                RequestRecord(
                    method,
                    raw_path,
                    idem,
                    status,
                    kind,
                    request_id if status is not None else None,
                    replayed,
                    scope,
                )
            )

        if fault is not None and fault.action == "drop_before":
            self._abort(reset=True)
            record(None)
            return
        if fault is not None and fault.action == "delay" and emu._stopping.wait(fault.seconds):
            self._abort(reset=True)
            record(None)
            return
        try:
            body = self._read_body()
        except ApiError as exc:
            record(exc.status)
            self._send(exc.status, dumps(exc.body()), request_id=request_id)
            return
        if fault is not None and fault.action == "status":
            record(fault.status)
            self._send_fault(fault, request_id)
            return

        result, replayed = self._dispatch(method, raw_path, api_key, idem, body)
        payload = b"" if result.body is None else dumps(result.body)
        extra = [("Idempotent-Replayed", "true")] if replayed else []
        if result.status == 405:
            extra.append(("Allow", ", ".join(_allowed(raw_path))))
        if fault is not None and fault.action == "drop_after":
            self._abort(reset=False)
            record(None, replayed)
            return
        keep = None
        if fault is not None and fault.action == "truncate":
            keep = fault.keep if fault.keep is not None else len(payload) // 2
        # Recorded before answering: a client that saw the answer also sees the record.
        record(result.status, replayed)
        self._send(result.status, payload, request_id=request_id, headers=extra, keep=keep)

    def _send_fault(self, fault: Fault, request_id: str) -> None:
        if fault.body is None:
            body = dumps(error_body(fault.status, f"Injected fault: HTTP {fault.status}."))
            ctype: str | None = fault.content_type or _JSON
        else:
            body = fault.body.encode("utf-8") if isinstance(fault.body, str) else fault.body
            default = "text/html" if body.lstrip().startswith(b"<") else "text/plain"
            ctype = fault.content_type or default
        self._send(
            fault.status,
            body,
            request_id=request_id,
            headers=list(fault.headers.items()),
            content_type=ctype,
        )

    def _dispatch(
        self, method: str, raw_path: str, api_key: str | None, idem: str | None, body: bytes
    ) -> tuple[StoredResponse, bool]:
        emu = self.server.emulator
        state = emu.state
        dialect = state.dialect
        if not (raw_path == "/v1" or raw_path.startswith("/v1/")):
            return StoredResponse(404, error_body(404, f"Unknown route {raw_path}")), False
        if api_key is None or not emu._key_ok(api_key):
            return StoredResponse(
                401,
                ApiError(
                    401, "Missing or invalid API key: send 'Authorization: Bearer <key>'."
                ).body(),
            ), False
        route = _route(raw_path)
        if route is None:
            return StoredResponse(404, error_body(404, f"Unknown route {raw_path}")), False
        name, session_id = route
        allowed = _ROUTE_METHODS[name]
        if method not in allowed:
            return StoredResponse(
                405, error_body(405, f"Method {method} not allowed on {raw_path}")
            ), False

        def run(fn: Callable[[], StoredResponse]) -> StoredResponse:
            try:
                return fn()
            except ApiError as exc:
                return StoredResponse(exc.status, exc.body())

        key = api_key
        sid = session_id or ""
        if name == "collection" and method == "GET":
            return run(
                lambda: StoredResponse(200, dialect.wrap_list(state.list_sessions(key)))
            ), False
        if name == "messages" and method == "GET":
            return run(
                lambda: StoredResponse(200, dialect.wrap_list(state.history(key, sid)))
            ), False
        if name == "end":

            def end() -> StoredResponse:
                session = state.end(key, sid)
                if dialect.end_status == 204:
                    return StoredResponse(204, None)
                return StoredResponse(200, session)

            return run(end), False

        actions: dict[str, Callable[[], StoredResponse]] = {
            "collection": lambda: self._create(key, body),
            "messages": lambda: self._send_message(key, sid, body),
            "documents": lambda: self._attach(key, sid, body),
        }
        action = actions[name]
        return state.idempotent(key, idem or "", method, raw_path, lambda: run(action))

    # -- the mutating actions ------------------------------------------------------------------

    def _create(self, api_key: str, body: bytes) -> StoredResponse:
        state = self.server.emulator.state
        data = _json_object(body)
        title = data.get("title")
        if title is not None and not isinstance(title, str):
            raise ApiError(400, "Field 'title' must be a string or null.")
        return StoredResponse(state.dialect.create_status, state.create(api_key, title))

    def _send_message(self, api_key: str, session_id: str, body: bytes) -> StoredResponse:
        state = self.server.emulator.state
        data = _json_object(body)
        entries = state.send(api_key, session_id, data.get("content"))
        return StoredResponse(state.dialect.append_status, state.dialect.wrap_list(entries))

    def _attach(self, api_key: str, session_id: str, body: bytes) -> StoredResponse:
        state = self.server.emulator.state
        ctype = self.headers.get("Content-Type") or ""
        if ctype.lower().startswith("multipart/form-data"):
            parts = parse_multipart(body, ctype)
            state.require_active(api_key, session_id)
            files = [p for p in parts if p.name == "file"]
            if not files:
                raise ApiError(400, "multipart body without a 'file' field")
            part = files[0]
            filename = part.filename or "upload"
            entries = state.attach(
                api_key,
                session_id,
                filename=filename,
                content_type=part.content_type or "application/octet-stream",
                size_bytes=len(part.data),
                source="upload",
            )
        else:
            data = _json_object(body)
            state.require_active(api_key, session_id)
            if "url" not in data:
                raise ApiError(400, "Send a multipart field 'file' or JSON {\"url\": ...}.")
            url = validate_url(data["url"])
            filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "document"
            guessed = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            entries = state.attach(
                api_key,
                session_id,
                filename=filename,
                content_type=guessed,
                size_bytes=None,
                source="url",
                url=url,
            )
        return StoredResponse(state.dialect.append_status, state.dialect.wrap_list(entries))

    # -- control routes (no auth, never faulted) -----------------------------------------------

    def _control(self, method: str, raw_path: str) -> None:
        emu = self.server.emulator
        request_id = "req_emulator_control"  # never consumes the /v1 request-id counter
        try:
            body = self._read_body()
            status, payload = _control_route(emu, method, raw_path[len(CONTROL_PREFIX) :], body)
        except ApiError as exc:
            status, payload = exc.status, exc.body()
        self._send(status, dumps(payload), request_id=request_id)


_ROUTE_METHODS: dict[str, tuple[str, ...]] = {
    "collection": ("GET", "POST"),
    "end": ("POST",),
    "messages": ("GET", "POST"),
    "documents": ("POST",),
}


def _route(raw_path: str) -> tuple[str, str | None] | None:
    """(route name, decoded session id) from the RAW path: split on '/', then unquote each."""
    segments = raw_path.split("/")
    if segments[0] != "":
        return None
    segments = segments[1:]
    n = len(_BASE_SEGMENTS)
    if segments[:n] != _BASE_SEGMENTS:
        return None
    rest = [unquote(s) for s in segments[n:]]
    if not rest:
        return "collection", None
    if len(rest) == 2 and rest[0] and rest[1] in ("end", "messages", "documents"):
        return rest[1], rest[0]
    return None


def _allowed(raw_path: str) -> tuple[str, ...]:
    route = _route(raw_path)
    return _ROUTE_METHODS[route[0]] if route else ()


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, key = value.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != _contract.AUTH_SCHEME.lower() or not key:
        return None
    return key


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def _control_route(emu: Emulator, method: str, sub: str, body: bytes) -> tuple[int, Any]:
    if sub in ("", "/", "/health") and method == "GET":
        return 200, {"ok": True, "url": emu.url}
    if sub == "/stats" and method == "GET":
        return 200, emu.stats
    if sub == "/requests" and method == "GET":
        return 200, [r.to_dict() for r in emu.request_log]
    if sub == "/reset" and method == "POST":
        emu.reset()
        return 200, {"reset": True}
    if sub == "/faults":
        if method == "GET":
            return 200, [f.to_dict() for f in emu.pending_faults]
        if method == "DELETE":
            return 200, {"cleared": emu.clear_faults()}
        if method == "POST":
            try:
                data = json.loads(body.decode("utf-8") or "null")
            except (UnicodeDecodeError, ValueError):
                raise ApiError(400, "The request body is not valid JSON.") from None
            try:
                if isinstance(data, dict) and "specs" in data:
                    faults = [Fault.parse(str(s)) for s in data["specs"]]
                elif isinstance(data, list):
                    faults = [Fault.from_dict(d) for d in data]
                elif isinstance(data, dict):
                    faults = [Fault.from_dict(data)]
                else:
                    raise FaultSpecError('send a fault object, a list, or {"specs": [...]}')
            except FaultSpecError as exc:
                raise ApiError(400, str(exc)) from None
            emu.add_faults(faults)
            return 200, {"queued": len(faults), "faults": [f.to_dict() for f in faults]}
        raise ApiError(405, f"Method {method} not allowed on {CONTROL_PREFIX}{sub}")
    raise ApiError(404, f"Unknown control route {CONTROL_PREFIX}{sub}")


# -- the public object -------------------------------------------------------------------------


def _kind_to_fault(kind: str) -> Fault:
    if kind.isdigit():
        return Fault("status", status=int(kind))
    if kind == "delay":
        return Fault("delay", seconds=0.05)
    return Fault.parse(kind)


class Emulator:
    """A faithful local Pdffillr sessions server, for tests, examples and cassettes.

    ``with Emulator() as emu: client = PdffillrClient(api_key="k", base_url=emu.url)``

    ``valid_keys=None`` accepts any non-empty Bearer key; a collection restricts to those keys.
    ``fault_rate``: the probability that a /v1 request with no scripted fault gets a random fault
    of one of ``fault_kinds`` (status codes as strings, or action names), drawn from ``seed``.
    ``latency``: seconds every /v1 request waits before it is handled, like the round trip to a
    hosted API (requests on different connections wait at the same time): network-bound
    behaviour (``sync``'s concurrency) shows on a laptop. The control routes answer at once.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        valid_keys: Iterable[str] | None = None,
        dialect: Dialect | None = None,
        deterministic: bool = False,
        faults: Iterable[Fault] = (),
        fault_rate: float = 0.0,
        seed: int | None = None,
        fault_kinds: Iterable[str] = DEFAULT_FAULT_KINDS,
        max_body_bytes: int = MAX_BODY_BYTES,
        latency: float = 0.0,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if not 0.0 <= latency <= MAX_LATENCY:  # also NaN
            raise ValueError(f"latency must be between 0 and {MAX_LATENCY:g} seconds")
        self.latency = float(latency)
        self.host = host
        self._requested_port = port
        self.valid_keys = None if valid_keys is None else frozenset(valid_keys)
        self.deterministic = deterministic
        self.state = ServiceState(dialect=dialect, deterministic=deterministic)
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        for kind in self.fault_kinds:
            _kind_to_fault(kind)  # validate early
        self.seed = seed
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._log: list[RequestRecord] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reset_counters()
        self.add_faults(faults)

    def _reset_counters(self) -> None:
        self._rng = random.Random(self.seed)
        self._request_ids = itertools.count(1)
        self._requests = 0
        self._faults_injected = 0
        self._faults_by_kind: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind (port 0: a free port) and serve in a daemon thread. Returns self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_until,
            args=(self._stopping,),
            name="pdffillr-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.debug("emulator listening on %s", self.url)
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving, close every connection and the socket, join the threads (< timeout)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes delay faults
        deadline = time.monotonic() + timeout
        server.wake()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        threads = server.close_connections()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def __enter__(self) -> Emulator:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start()")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    # -- faults --------------------------------------------------------------------------------

    def add_fault(self, fault: Fault | str) -> Fault:
        """Queue a fault (a ``Fault`` or a SPEC string). Faults fire in the order queued."""
        f = Fault.parse(fault) if isinstance(fault, str) else fault
        with self._lock:
            self._faults.append(f)
        return f

    def add_faults(self, faults: Iterable[Fault | str]) -> None:
        for f in faults:
            self.add_fault(f)

    def clear_faults(self) -> int:
        """Drop every queued fault; returns how many were pending."""
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
            return n

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def _take_fault(self, method: str, raw_path: str) -> Fault | None:
        with self._lock:
            self._requests += 1
            chosen: Fault | None = None
            for i, f in enumerate(self._faults):
                if f.matches(method, raw_path):
                    f.times -= 1
                    if f.times <= 0:
                        del self._faults[i]
                    chosen = f
                    break
            if (
                chosen is None
                and self.fault_rate
                and self.fault_kinds
                and self._rng.random() < self.fault_rate
            ):
                chosen = _kind_to_fault(self._rng.choice(self.fault_kinds))
            if chosen is not None:
                self._faults_injected += 1
                self._faults_by_kind[chosen.kind] = self._faults_by_kind.get(chosen.kind, 0) + 1
            return chosen

    # -- internals used by the handler ---------------------------------------------------------

    def _new_request_id(self) -> str:
        if self.deterministic:
            with self._lock:
                return f"req_{next(self._request_ids):06d}"
        return f"req_{secrets.token_hex(12)}"

    def _key_ok(self, api_key: str) -> bool:
        return self.valid_keys is None or api_key in self.valid_keys

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    # -- inspection ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget sessions, idempotency records, faults, the request log and the counters."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._reset_counters()
        self.state.reset()

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "requests": self._requests,
                "faults_injected": self._faults_injected,
                "faults_by_kind": dict(self._faults_by_kind),
                "faults_pending": len(self._faults),
            }
        out.update(self.state.counts())
        return out

    def sessions(self, api_key: str) -> list[dict[str, Any]]:
        """The key's sessions as the list route renders them (newest first), as plain dicts."""
        return self.state.list_sessions(api_key)

    def history(self, api_key: str, session_id: str) -> list[dict[str, Any]]:
        """A session's history as plain dicts (KeyError if the key has no such session)."""
        try:
            return self.state.history(api_key, session_id)
        except ApiError:
            raise KeyError(session_id) from None

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<Emulator {where}>"
