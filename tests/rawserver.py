"""A raw-socket HTTP server for hostile-server tests: each connection gets a scripted reply.

The emulator is a faithful server; these tests need one that is not: headers or bodies
trickled a byte at a time, endless chunked bodies, gzip bombs, raw control bytes. ``reply`` is
called with the connected socket after the request (headers and declared body) was read.
"""

from __future__ import annotations

import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

Reply = Callable[[socket.socket], None]


class RawServer:
    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self.requests: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _handle(self, conn: socket.socket) -> None:
        with conn, suppress(OSError):
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(rest) < length:
                more = conn.recv(65536)
                if not more:
                    break
                rest += more
            self.requests.append(head)
            self._reply(conn)

    def __enter__(self) -> RawServer:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(timeout=5)


@contextmanager
def serving(reply: Reply) -> Iterator[RawServer]:
    with RawServer(reply) as server:
        yield server


def trickle(conn: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart, until done or stopped."""
    for i in range(len(data)):
        if stop.wait(every):
            return
        conn.sendall(data[i : i + 1])


def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about 1,000 times smaller)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [z.compress(block) for _ in range(size // len(block))]
    parts.append(z.compress(bytes(size % len(block))))
    parts.append(z.flush())
    return b"".join(parts)


def response_head(status: int = 200, headers: dict[str, str] | None = None) -> bytes:
    """A status line and headers; ``Connection: close`` (each connection answers once, so a
    client must never try to reuse it)."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k}: {v}" for k, v in {"Connection": "close", **(headers or {})}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
