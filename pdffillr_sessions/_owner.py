"""Is the with-block that owns a cached session (or create intent) still running? Ask the kernel.

A with-block holds an exclusive ``flock`` on a lock file of its own, named in its cache rows
(``owner_lock``), from before its create intent is recorded until its end is recorded. The
kernel drops the lock when the process dies, however it dies (SIGKILL included), so ``reap``
learns the owner is dead by taking the lock itself, and keeps holding it while it ends the
session (two reaps never work on one record). No pid is compared: a reused pid, another host
or a clock cannot make a dead owner look alive or a live one dead.

Choices, and why:

* One file per owner in ``<cache>.locks/`` (0700; files 0600), named by a random token (32 hex
  digits), not byte ranges of one shared file: ``flock`` locks belong to an open file
  description, so a reap in the SAME process as a running block still sees the block's lock
  (``fcntl``/``lockf`` record locks belong to the process: the owner's own reap would get the
  lock, and closing any descriptor of the file would drop all of them).
* The directory is found from the cache file's real path, so a cache reached through a symlink
  has one lock directory.
* The owner deletes its file only once its records are resolved (the session recorded ended,
  or the intent forgotten); otherwise it just closes it (as the kernel would at exit). A
  pending record whose lock file is missing was therefore tampered with: ``unknown`` (``reap``
  falls back to ``--older-than``), never ``dead``.
* A lock whose ``OwnerLock`` is garbage collected without ``release`` (a block abandoned by an
  interrupt that landed before its exit could do anything) is closed then, as at exit: a
  process that carries on does not keep a dead block's session "alive".
* Fork: a child made with ``os.fork()`` closes its copies of the parent's lock descriptors at
  once (never unlocking them: that would unlock the parent's), so it never owns them; a
  ``Session`` checks the pid itself as well. ``subprocess`` children never inherit them
  (Python descriptors are close-on-exec).
* Windows (no ``fcntl``): no lock is taken and the rows carry none, so ``reap`` treats them
  like rows of older versions (by ``--older-than``). Nothing fails.

The module does no SQL; ``reap`` passes what it learns (``Liveness``) to pure decisions.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import weakref
from pathlib import Path
from typing import Literal

from ._exceptions import CacheError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: locks unsupported, see the module docstring
    fcntl = None  # type: ignore[assignment]

__all__ = ["Liveness", "OwnerLock", "Probe", "lock_dir", "release_all_held_in_this_process"]

#: ``alive``: a running with-block holds the lock (or another reap is working on the record).
#: ``dead``: nobody holds it: its owner has exited (the kernel released it).
#: ``unknown``: the record names no usable lock (older versions, Windows, a missing file).
Liveness = Literal["alive", "dead", "unknown"]

_NAME = re.compile(r"[0-9a-f]{32}")
#: Every lock this process holds, so that a forked child can let go of its copies.
_held: weakref.WeakSet[OwnerLock] = weakref.WeakSet()


def lock_dir(cache_path: str | os.PathLike[str]) -> Path:
    """``<cache>.locks``, next to the cache file's real path."""
    real = Path(os.path.realpath(cache_path))
    return real.with_name(real.name + ".locks")


def _lock_file(cache_path: str | os.PathLike[str], name: str) -> Path | None:
    """The lock file of ``name``, or None if ``name`` is not one we make (a hostile or corrupt
    row must never steer a path outside the lock directory)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        return None
    return lock_dir(cache_path) / name


class OwnerLock:
    """The lock a with-block holds while it runs: exclusive, released by the kernel at death.

    ``acquire`` returns None where locks are unsupported (Windows). ``release`` deletes the
    file only when told the records are resolved, and does nothing in a forked child.
    """

    def __init__(self, name: str, path: Path, fd: int) -> None:
        self.name = name
        self._path = path
        self._fd: int | None = fd
        self._pid = os.getpid()
        self._on_collect = weakref.finalize(self, _close_quietly, fd)

    @classmethod
    def acquire(cls, cache_path: str | os.PathLike[str]) -> OwnerLock | None:
        """A new lock, held; ``CacheError`` if its file cannot be made next to the cache."""
        if fcntl is None:  # pragma: no cover - Windows
            return None
        try:
            return cls._acquire(lock_dir(cache_path))
        except OSError as exc:
            raise CacheError(f"cannot take an owner lock next to the cache: {exc}") from None

    @classmethod
    def _acquire(cls, directory: Path) -> OwnerLock:
        assert fcntl is not None
        if not directory.is_dir():
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)  # whatever the umask
        name = secrets.token_hex(16)
        path = directory / name
        fd = -1
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: never contended
            lock = cls(name, path, fd)
            _held.add(lock)
        except BaseException:
            if fd >= 0:
                _close_quietly(fd)
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None and self._pid == os.getpid()

    def check(self) -> None:
        """Nothing to check: a ``flock`` lives exactly as long as this process (the PostgreSQL
        lock, whose connection can be cut, checks itself: ``cache._pg_locks``)."""
        return None

    def release(self, *, resolved: bool) -> None:
        """Let go of the lock: the owner is done. ``resolved``: its records need nothing more
        (the file is deleted first); otherwise the file stays for ``reap`` to find unlocked.
        Idempotent; in a forked child, it does nothing at all."""
        fd = self._fd
        if fd is None or self._pid != os.getpid():
            return
        try:
            if resolved:
                with contextlib.suppress(OSError):
                    os.unlink(self._path)
        finally:
            self._fd = None
            _held.discard(self)
            self._on_collect.detach()
            os.close(fd)

    def _forget_in_child(self) -> None:
        """After ``os.fork()``, in the child: close the copy, never unlock the parent's lock."""
        fd, self._fd = self._fd, None
        self._on_collect.detach()
        if fd is not None:
            _close_quietly(fd)

    def __repr__(self) -> str:
        return f"<OwnerLock {self.name} {'held' if self.held else 'released'}>"


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def release_all_held_in_this_process() -> int:
    """Close every lock this process holds, without deleting a file: exactly what the kernel
    does when the process dies. For tests that stand in for a process exit; returns how many."""
    locks = list(_held)
    for lock in locks:
        lock.release(resolved=False)
    return len(locks)


def _after_fork_in_child() -> None:
    for lock in list(_held):
        lock._forget_in_child()
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Probe:
    """``reap``'s look at one record's lock: ``liveness``, and while ``dead``, the lock itself
    (held until ``close``, so that no other reap works on the same record meanwhile)."""

    def __init__(self, cache_path: str | os.PathLike[str], name: str | None) -> None:
        self._fd: int | None = None
        self._path = None if name is None else _lock_file(cache_path, name)
        self.liveness: Liveness = "unknown"
        if self._path is None or fcntl is None:
            return
        fd = -1
        try:
            fd = os.open(self._path, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.liveness = "alive"  # someone holds it
        except OSError:
            pass  # missing or unreadable: see the module docstring (never "dead")
        else:
            self._fd, fd = fd, -1
            self.liveness = "dead"
        finally:
            if fd >= 0:
                _close_quietly(fd)

    def close(self, *, resolved: bool = False) -> None:
        """Release the lock; ``resolved``: the record is done, delete its lock file first."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if resolved and self._path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._path)
        finally:
            os.close(fd)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
