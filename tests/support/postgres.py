"""A real PostgreSQL (Debian's `postgresql` package) on loopback, in a temporary directory of its own.

    with postgres_server() as database:
        psycopg.connect(database.dsn)
        database.stop()     # the database goes away (fast shutdown: connections are cut)
        database.start()    # and comes back on the same port with the same data

The Debian cluster service is not used: the fixture runs `initdb` and `postgres` from
/usr/lib/postgresql/<major>/bin itself. PostgreSQL refuses to run as root, so when the tests run as root
the server runs as `nobody` (through `setpriv`), in a directory it owns outside pytest's root-only temp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support.processes import free_port, stop

DEBIAN_ROOT = Path("/usr/lib/postgresql")
UNPRIVILEGED_USER = "nobody"


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with `postgres` in it; a clear error when none is installed."""
    majors = sorted(
        (p for p in DEBIAN_ROOT.glob("*/bin") if (p / "postgres").exists()), key=lambda p: int(p.parent.name)
    )
    if not majors:
        raise RuntimeError(
            "PostgreSQL is not installed: run `apt-get install -y --no-install-recommends postgresql` "
            "(the tests start the server themselves; the cluster service is not needed)"
        )
    return majors[-1]


def _as_server_user() -> list[str]:
    """The prefix that runs a command as a user PostgreSQL accepts: none, or `setpriv` to nobody for root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={UNPRIVILEGED_USER}", f"--regid={_group_of(UNPRIVILEGED_USER)}", "--clear-groups"]


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


@dataclass
class PostgresServer:
    """A running PostgreSQL: its DSN, and `stop`/`start` to take it away and bring it back."""

    port: int
    root: Path
    bin_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        """libpq URL of the `postgres` database as the superuser `postgres` (trust authentication on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (idempotent) and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        args = [
            *_as_server_user(),
            str(self.bin_dir / "postgres"),
            "-D", str(self.root / "data"),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",
            # A test database: durability is not what is tested, speed of the suite is.
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        with (self.root / "postgres.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_accepting(timeout)

    def stop(self) -> None:
        """Fast shutdown (SIGTERM to postgres: open connections are cut); idempotent."""
        if self.process is not None:
            stop(self.process, grace=30.0)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                last = str(error)
            time.sleep(0.1)
        tail = (self.root / "postgres.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"PostgreSQL did not accept connections: {last}\n--- postgres.log ---\n{tail}")

    def reset(self) -> None:
        """Drop every table of the `public` schema (a clean database for the next test)."""
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")


@contextmanager
def postgres_server(port: int | None = None) -> Iterator[PostgresServer]:
    """initdb a fresh cluster in a temporary directory, run it on a free loopback port, remove it on exit."""
    bin_dir = postgres_bin_dir()
    # pytest's temp dirs are private to root; the server user needs a directory of its own.
    root = Path(tempfile.mkdtemp(prefix="modelpilot-postgres-"))
    try:
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        subprocess.run([*_as_server_user(), *initdb, "--no-sync"], check=True, capture_output=True)
        server = PostgresServer(port=port or free_port(), root=root, bin_dir=bin_dir)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
