"""The cache file itself: refuse what is not ours before anything writes, create it private.

These checks read bytes and permissions only; they never open the file with SQLite, so a file
that is not a cache is refused untouched (SQLite would otherwise happily create tables in it).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from urllib.parse import quote

from .._exceptions import CacheError

__all__ = [
    "cache_file_role",
    "can_write_wal_index",
    "check_file",
    "ensure_private_file",
    "readonly_uri",
    "tighten_permissions",
]

logger = logging.getLogger("pdffillr_sessions")

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is (None for a regular file)."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_file(path: Path) -> None:
    """Refuse a file that is not SQLite before SQLite (or we) write anything to it.

    Only ``stat`` is used until the file is known to be a regular file: opening a FIFO blocks
    until a writer comes, and ``/dev/zero`` reads forever.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CacheError(f"cannot read the cache at {path}: {exc}") from None
    kind = _kind(st.st_mode)
    if kind is not None:
        raise CacheError(f"{path} is {kind}, not a cache file")
    try:
        size = st.st_size
        if size == 0:
            return
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise CacheError(f"cannot read the cache at {path}: {exc}") from None
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise CacheError(f"{path} is not a pdffillr-sessions cache (not an SQLite database)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise CacheError(f"{path} is not a pdffillr-sessions cache (corrupt SQLite header)")
    wal = Path(f"{path}-wal")
    wal_in_use = wal.exists() and wal.stat().st_size > 0
    n_pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]
    if not wal_in_use and (size % page_size or (header_valid and size < n_pages * page_size)):
        raise CacheError(f"{path} is truncated or corrupt ({size} bytes): not a usable cache")


def can_write_wal_index(path: Path) -> bool:
    """Whether a reader can use (or create) the ``-shm`` file next to a WAL database."""
    shm = path.with_name(path.name + "-shm")
    if shm.exists():
        return os.access(shm, os.R_OK | os.W_OK)
    return os.access(path.parent, os.W_OK | os.X_OK)


def readonly_uri(path: Path) -> str:
    """The SQLite URI that opens ``path`` without ever writing to it.

    In a read-only directory or file system a WAL reader cannot create its ``-shm`` file: the
    file is then read as immutable (no locks, no WAL index), and what a writer left in an
    un-checkpointed ``-wal`` is not seen.
    """
    uri = "file:" + quote(str(path.absolute())) + "?mode=ro"
    if not can_write_wal_index(path):
        uri += "&immutable=1"
    return uri


def ensure_private_file(path: Path) -> None:
    """Create the file (0600) and every missing parent directory (0700), whatever the umask."""
    parent = path.parent
    missing = [d for d in (parent, *parent.parents) if not d.exists()]
    for directory in reversed(missing):  # every directory we create is private, not just the last
        try:
            os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)  # whatever the umask
        except FileExistsError:
            continue
        except OSError as exc:
            raise CacheError(f"cannot create the cache directory {directory}: {exc}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise CacheError(f"cannot create the cache at {path}: {exc}") from None
    os.close(fd)
    # SQLite gives the -wal and -shm files the database file's permissions.


def tighten_permissions(path: Path) -> list[str]:
    """Make an existing cache (and its -wal/-shm) private: group and other bits removed.

    A file that others can read holds every conversation; one they can write can be made to
    say anything. When it cannot be changed (not our file, a read-only file system), a warning
    says so on the ``pdffillr_sessions`` logger. Returns the warnings given.
    """
    warned: list[str] = []
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = candidate.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode) or not mode & 0o077:
            continue
        try:
            os.chmod(candidate, mode & ~0o077)
        except OSError as exc:
            text = (
                f"the cache file {candidate} is readable or writable by others (mode "
                f"{mode:04o}) and could not be made private: {exc.strerror or exc}"
            )
            logger.warning("%s", text)
            warned.append(text)
    return warned


#: The files SQLite keeps beside a database: writing over any of them loses the cache.
_COMPANIONS = ("", "-wal", "-shm", "-journal")


def cache_file_role(path: Path, cache: Path) -> str | None:
    """Which of the cache's files ``path`` is (``"database"``, ``"wal"``, ``"shm"``,
    ``"journal"``), or None when it is none of them.

    Compared as files (hard and symbolic links included) when both exist, else as resolved
    paths, so that a new file about to be created at the cache's place is caught too.
    """
    for suffix in _COMPANIONS:
        cache_file = Path(f"{cache}{suffix}")
        try:
            same = path.exists() and cache_file.exists() and os.path.samefile(path, cache_file)
        except OSError:
            same = False
        if same or path.resolve() == cache_file.resolve():
            return suffix[1:] or "database"
    return None
