"""Reading a response body with bounded memory and time: pure decisions, fed chunk by chunk.

A hostile or broken server can send a 500 MB body, an endless chunked body, or a gzip bomb
(a few MB that decompress to gigabytes; nested encodings multiply). So the clients stream every
body and hand each raw chunk to a ``BodyReader``, which decodes it itself (zlib with a bounded
output per step, never httpx's unbounded decoders), counts what decoding produces, and stops at
the cap: ``max_response_bytes`` for a 2xx (default 256 MiB: generous for the largest real
history, ~84 MB of JSON at 200,000 entries), and at most ``MAX_ERROR_BODY_BYTES`` (1 MiB) for
any other status. Going over is a ``ProtocolError`` naming the limit (not retried: the server
answered, and would answer the same). It also checks the call's deadline between chunks, which
bounds a transport that streams fast but forever, or one the deadline backend cannot reach.

Nothing here does I/O: the sync and async clients run the same reader in their own loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping

from ._exceptions import APITimeoutError, PdffillrError, ProtocolError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_ERROR_BODY_BYTES",
    "BodyReader",
    "body_cap",
]

DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 1024 * 1024
#: The most one decompression step may produce: memory stays bounded whatever the ratio.
_STEP = 1024 * 1024
#: More stacked encodings than this is not a real server (each layer multiplies a bomb).
_MAX_ENCODINGS = 2


def body_cap(status_code: int, max_response_bytes: int) -> int:
    """The largest decoded body accepted for this status."""
    if 200 <= status_code < 300:
        return max_response_bytes
    return min(max_response_bytes, MAX_ERROR_BODY_BYTES)


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n:,} bytes"


class _Inflater:
    """One gzip or deflate layer whose every step produces at most ``_STEP`` bytes."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._gzip = coding in ("gzip", "x-gzip")
        wbits = 16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS
        self._z = zlib.decompressobj(wbits)
        self._started = False

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._z.decompress(data, _STEP)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                # "deflate" is meant to be zlib-wrapped; some servers send raw deflate.
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                continue
            self._started = True
            data = self._z.unconsumed_tail
            if out:
                yield out
            if self._z.eof or (not data and len(out) < _STEP):
                return

    def complete(self) -> bool:
        return self._z.eof


class BodyReader:
    """Decodes and collects one body; ``feed`` says whether to go on reading.

    ``error`` is set (and ``feed`` returns False) when the body is over the cap, cannot be
    decoded, or the deadline passed. The collected bytes are not in ``repr``: they may hold
    what a server echoed (the key included) before it is redacted.
    """

    def __init__(
        self,
        *,
        status_code: int,
        headers: Mapping[str, str],
        max_response_bytes: int,
        deadline: float | None,
        method: str,
        path: str,
        decoded: bool = False,
    ) -> None:
        self.status_code = status_code
        self.cap = body_cap(status_code, max_response_bytes)
        self.error: PdffillrError | None = None
        #: Why an error body was not read to its end (it could not be decoded), else None.
        self.stopped: str | None = None
        self._deadline = deadline
        self._where = f"{method} {path}"
        self._method, self._path = method, path
        self._chunks: list[bytes] = []
        self._size = 0
        self._raw_seen = False
        self._layers: list[_Inflater] = []
        lowered = {k.lower(): v for k, v in headers.items()}
        codings = (
            []
            if decoded
            else [
                c.strip().lower()
                for c in lowered.get("content-encoding", "").split(",")
                if c.strip() and c.strip().lower() != "identity"
            ]
        )
        unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            self._fail(f"the body's Content-Encoding {unknown[0][:40]!r} is not supported")
        elif len(codings) > _MAX_ENCODINGS:
            self._fail(f"the body has {len(codings)} stacked Content-Encodings")
        else:
            self._layers = [_Inflater(c) for c in reversed(codings)]
        declared = lowered.get("content-length", "")
        if (
            self.error is None
            and not self._layers
            and declared.isdigit()
            and int(declared) > self.cap
        ):
            self._over(int(declared), declared=True)

    def __repr__(self) -> str:
        return f"<BodyReader {self._where} {self.status_code}: {self._size} bytes>"

    @property
    def size(self) -> int:
        """Decoded bytes collected so far."""
        return self._size

    def feed(self, raw: bytes, now: float) -> bool:
        """Take one raw chunk; False when reading must stop (see ``error``)."""
        if self.error is not None or self.stopped is not None:
            return False
        if self._deadline is not None and now > self._deadline:
            self.error = APITimeoutError(
                f"{self._where}: the total timeout ran out while reading the body",
                method=self._method,
                url=self._path,
            )
            return False
        self._raw_seen = self._raw_seen or bool(raw)
        try:
            for piece in self._decode(raw, 0):
                self._size += len(piece)
                if self._size > self.cap:
                    self._over(self._size, declared=False)
                    return False
                self._chunks.append(piece)
        except zlib.error:
            self._fail("the body's compressed data is corrupt")
            return False
        return True

    def _decode(self, data: bytes, layer: int) -> Iterator[bytes]:
        if layer == len(self._layers):
            if data:
                yield data
            return
        for piece in self._layers[layer].pieces(data):
            yield from self._decode(piece, layer + 1)

    def finish(self) -> bytes:
        """The decoded body; sets ``error`` if compressed data ended before its end."""
        if (
            self.error is None
            and self.stopped is None
            and self._raw_seen
            and any(not layer.complete() for layer in self._layers)
        ):
            self._fail("the body's compressed data is cut short")
        return b"".join(self._chunks)

    def _over(self, size: int, *, declared: bool) -> None:
        kind = "response" if 200 <= self.status_code < 300 else "error"
        limit = f"the {_size(self.cap)} limit for {kind} bodies"
        said = (
            f"declares {size:,} bytes, more than {limit}"
            if declared
            else f"is larger than {limit} (reading stopped after {size:,} decoded bytes)"
        )
        self._chunks.clear()
        self.error = ProtocolError(
            f"{self._where}: the HTTP {self.status_code} {kind} body {said}"
            + ("; max_response_bytes sets it" if kind == "response" else "")
        )

    def _fail(self, why: str) -> None:
        """A body that cannot be decoded: a ``ProtocolError`` for a 2xx; for an error status,
        reading stops and the status error is built from what was read (its class comes from
        the status alone)."""
        if 200 <= self.status_code < 300:
            self._chunks.clear()
            self.error = ProtocolError(f"{self._where}: HTTP {self.status_code}: {why}")
        else:
            self.stopped = why
