"""Owner locks on PostgreSQL: exact liveness across machines, from session-level advisory locks.

A with-block holds ``pg_advisory_lock(key)`` from before its create intent is recorded until its
end is recorded; ``key`` comes from the lock's name (32 hex digits, written into the records it
owns as ``owner_lock``). PostgreSQL releases a session-level advisory lock the moment the
connection that holds it ends: the process was killed, its machine died, or the server dropped
the connection (its TCP keepalives, set here, notice a silent peer within
``KEEPALIVE_DETECTION_S``). ``reap``, on any machine, tries ``pg_try_advisory_lock(key)``: got it
means the owner is gone (and the reaper keeps it while it ends the session, so no other reaper
works on the record); refused means the owner is alive, or another reaper is at work.

Choices, and why:

* The locks live on a connection of their own, one per process and database, shared by that
  process's with-blocks (``pg_locks`` shows them under its pid): not on the store's connection,
  whose transactions, errors and closing must not touch them, and not one connection per block
  (a fleet would run out of connections). It closes when its last lock is released.
* A probe runs on the reaper's store connection, never on the lock connection: a session-level
  advisory lock is re-entrant within one connection, so a reap in the same process as a running
  block still sees the block's lock as held.
* 64-bit keys from 64 random bits: a clash with another lock is vanishingly rare, and harmless
  when it happens (acquire draws again; a probe would see "alive" and leave the record alone).
* Partitions: a worker cut off from the database may lose its lock while it still reaches the
  API. ``PgOwnerLock.check`` asks the lock connection before each send (one round trip); if it
  is gone, the block raises ``OwnerLockLostError`` and sends nothing more, and its exit ends the
  session. The server drops a silent connection only after ``KEEPALIVE_DETECTION_S``, so a
  reaper can end the session no sooner than that after the worker's last successful check; a
  send already under way then gets ``SessionEndedError``, never a silent leak.
* Fork: the child never uses, unlocks or closes the parent's lock connection (``_pg`` points
  the child's copy of its socket at /dev/null); ``release`` in a child does nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import weakref
from typing import Any

import psycopg

from .._exceptions import OwnerLockLostError
from ._backend import Liveness

__all__ = ["KEEPALIVE_DETECTION_S", "PgOwnerLock", "PgProbe", "lock_key"]

_NAME = re.compile(r"[0-9a-f]{32}")

#: The server-side TCP keepalive settings of a lock connection: a silent peer is dropped after
#: about idle + interval x count seconds (unix sockets never go silent this way).
_KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
KEEPALIVE_DETECTION_S = 25
#: The client side of the same: libpq's keepalives and ``tcp_user_timeout`` (ms) make a check on
#: a cut connection fail within ~10 s instead of hanging.
_CLIENT_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def lock_key(name: str | None) -> int | None:
    """The advisory-lock key of a lock name, or None if it is not one we make (a hostile or
    corrupt row must never make a reaper touch an arbitrary lock)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        return None
    return int.from_bytes(bytes.fromhex(name[:16]), "big", signed=True)


class _LockConnection:
    """The connection of one process that holds its with-blocks' advisory locks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid = os.getpid()
        self.mutex = threading.Lock()
        self.held = 0
        self.conn = connect_with_options(url)
        for setting, value in _KEEPALIVES.items():
            self.conn.execute(f"SET {setting} = {int(value)}")


def connect_with_options(url: str) -> psycopg.Connection[Any]:
    """A lock connection: the store's ``connect`` with client-side keepalives where TCP is
    used (libpq ignores them on unix sockets)."""
    from psycopg.conninfo import make_conninfo

    from ._pg import connect

    return connect(make_conninfo(url, **_CLIENT_OPTIONS), application_name="pdffillr-owner-lock")


_registry_mutex = threading.Lock()
_connections: dict[str, _LockConnection] = {}


def _lock_connection(url: str) -> _LockConnection:
    with _registry_mutex:
        found = _connections.get(url)
        if found is not None and found.pid == os.getpid() and not found.conn.closed:
            found.held += 1
            return found
        fresh = _LockConnection(url)
        fresh.held = 1
        _connections[url] = fresh
        return fresh


def _done_with(lc: _LockConnection) -> None:
    """One lock fewer on ``lc``; the connection closes with its last lock."""
    with _registry_mutex:
        lc.held -= 1
        if lc.held > 0:
            return
        if _connections.get(lc.url) is lc:
            del _connections[lc.url]
    if lc.pid == os.getpid():
        lc.conn.close()


class PgOwnerLock:
    """The advisory lock a with-block holds while it runs (see the module docstring)."""

    def __init__(self, name: str, key: int, lc: _LockConnection) -> None:
        self._name = name
        self._key = key
        self._lc: _LockConnection | None = lc
        self._pid = os.getpid()
        # A block abandoned without its exit (its Session collected): unlocked then, as the
        # file lock is closed then (``_owner``), so reap need not wait for the process to end.
        self._on_collect = weakref.finalize(self, _unlock, lc, key, self._pid)

    @property
    def name(self) -> str:
        return self._name

    @classmethod
    def acquire(cls, url: str) -> PgOwnerLock:
        lc = _lock_connection(url)
        try:
            while True:
                name = secrets.token_hex(16)
                key = lock_key(name)
                assert key is not None
                with lc.mutex:
                    row = lc.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if row is not None and row[0]:
                    return cls(name, key, lc)
        except BaseException:
            _done_with(lc)
            raise

    @property
    def held(self) -> bool:
        return self._lc is not None and self._pid == os.getpid()

    def check(self) -> None:
        """Raise ``OwnerLockLostError`` unless the lock connection is still alive (which holds
        the lock: PostgreSQL drops a session's locks only with the session)."""
        lc = self._lc
        if lc is None or self._pid != os.getpid():
            raise OwnerLockLostError("this with-block no longer holds its owner lock")
        try:
            with lc.mutex:
                lc.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise OwnerLockLostError(
                "lost the connection that holds this with-block's owner lock "
                f"({' '.join(str(exc).split())}): another machine's reap may end the session, "
                "so nothing more is sent"
            ) from None

    def release(self, *, resolved: bool = False) -> None:
        """Unlock (``resolved`` is the flock backend's concern: nothing to delete here).
        Idempotent; in a forked child it does nothing."""
        lc, self._lc = self._lc, None
        self._on_collect.detach()
        if lc is None:
            return
        _unlock(lc, self._key, self._pid)

    def __repr__(self) -> str:
        return f"<PgOwnerLock {self._name} {'held' if self.held else 'released'}>"


def _unlock(lc: _LockConnection, key: int, pid: int) -> None:
    """Release ``key`` on ``lc`` (never in a forked child: the lock is the parent's)."""
    if pid != os.getpid():
        return
    try:
        with lc.mutex:
            lc.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error:
        pass  # the connection is gone, and the lock with it
    finally:
        _done_with(lc)


class PgProbe:
    """``reap``'s look at one record's owner lock, on the reaper's own store connection."""

    def __init__(self, conn: psycopg.Connection[Any], key: int) -> None:
        self._conn: psycopg.Connection[Any] | None = None
        self._key = key
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        got = row is not None and bool(row[0])
        self.liveness: Liveness = "dead" if got else "alive"
        if got:
            self._conn = conn

    def close(self, *, resolved: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        with contextlib.suppress(psycopg.Error):  # gone: the lock went with the connection
            conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))

    def __enter__(self) -> PgProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
