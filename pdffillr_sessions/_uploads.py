"""Reading a document to upload, once, into bytes and a display name.

An upload is read before the retry loop starts, so that every attempt sends the very same
payload (a file object cannot be rewound reliably, a path could change between attempts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from ._exceptions import InvalidInputError
from ._validation import encodable

__all__ = ["FileInput", "read_upload"]

FileInput = str | os.PathLike[str] | bytes | IO[bytes]


def read_upload(file: FileInput | None, filename: str | None) -> tuple[bytes, str]:
    """The bytes and name of an upload, read once so every retry sends the same payload."""
    if filename is not None:
        encodable(filename, "filename")
    if isinstance(file, bytes):
        return file, filename or "document.pdf"
    if isinstance(file, (str, os.PathLike)):
        p = Path(file)
        try:
            return p.read_bytes(), filename or _display_name(p.name)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {str(p)!r}: {exc.strerror}") from exc
    if file is not None and hasattr(file, "read"):
        data = file.read()
        if not isinstance(data, bytes):
            raise InvalidInputError("file must be opened in binary mode")
        name = filename or _display_name(Path(str(getattr(file, "name", "document.pdf"))).name)
        return data, name
    raise InvalidInputError("file must be a path, bytes or a binary file object")


def _display_name(name: str) -> str:
    """A file name as UTF-8 text: undecodable bytes of a POSIX name become U+FFFD."""
    return os.fsencode(name).decode("utf-8", errors="replace")
