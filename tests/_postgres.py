"""A throwaway PostgreSQL server for the tests, started by the tests themselves.

One cluster per test session (``initdb`` + ``pg_ctl``, Debian's ``postgresql`` package), in a
temporary directory, listening on a unix socket there (trust, as the ``postgres`` superuser)
and on 127.0.0.1 at a free port (``scram-sha-256``: the wrong-password tests). ``fsync`` is off:
a test server has nothing to keep. Each test gets a fresh database (``PgServer.new_database``).

Where the binaries are missing, ``find_binaries`` says why; ``.ci/run`` installs the package
when it is missing (as root), so CI always runs these tests. Elsewhere they are skipped with
a reason that says how to enable them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN_DIRS = (
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
)
HOW_TO_ENABLE = (
    "PostgreSQL server binaries not found (initdb, pg_ctl): install Debian's `postgresql` "
    "package (`apt-get install -y postgresql`, as .ci/run does) to run the PostgreSQL tests"
)
PASSWORD_USER = "fleet"
PASSWORD = "s3cret-Pa55word-never-shown"


def find_binaries() -> Path | None:
    for directory in PG_BIN_DIRS:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    base: Path
    port: int
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def sockdir(self) -> str:
        return str(self.base)

    def url(self, dbname: str = "postgres") -> str:
        """The superuser's URL over the unix socket (trust)."""
        return f"postgresql://postgres@/{dbname}?host={self.sockdir}&port={self.port}"

    def tcp_url(self, dbname: str, *, password: str = PASSWORD) -> str:
        """A password user's URL over TCP (scram-sha-256)."""
        return f"postgresql://{PASSWORD_USER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {PASSWORD_USER}')
        return name

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as_postgres(), str(self.bindir / args[0]), *args[1:]]
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    @staticmethod
    def _as_postgres() -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["runuser", "-u", "postgres", "--"]

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.run("pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop")


def start_server(bindir: Path) -> PgServer:
    """initdb + pg_ctl start in a new temporary directory (owned by ``postgres`` when root)."""
    base = Path(tempfile.mkdtemp(prefix="pdffillr-pg-"))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
    server = PgServer(bindir=bindir, base=base, port=_free_port())
    data = base / "data"
    server.run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    hba = data / "pg_hba.conf"
    hba_text = (
        "local all all trust\n"
        f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
        "host all all 127.0.0.1/32 trust\n"
    )
    _write_as_postgres(server, hba, hba_text)
    options = (
        f"-k {base} -p {server.port} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
        "-c password_encryption=scram-sha-256"
    )
    server.run("pg_ctl", "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start")
    with server.admin() as conn:
        conn.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
    return server


def _write_as_postgres(server: PgServer, path: Path, text: str) -> None:
    path.write_text(text)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


def remove(server: PgServer) -> None:
    server.stop()
    shutil.rmtree(server.base, ignore_errors=True)
