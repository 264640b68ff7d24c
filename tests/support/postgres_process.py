"""A PostgreSQL cluster of a test's own (initdb in a temporary folder, its own port and socket
folder) that the test may restart: never the shared server on 5432.

initdb and the server refuse to run as root: as root, the cluster belongs to the `postgres` user
and every command runs as that user (`runuser -u postgres`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg
from waiting import free_port

OWNER = "postgres"


def postgres_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL's programs (Debian's layout), if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresCluster:
    """`start()`, `restart()` (immediate: the server dies without a checkpoint, as in a crash,
    and recovers from its WAL), `stop()`. The database `hexfleet` is created on first start."""

    def __init__(self, port: int | None = None) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server programs (initdb, pg_ctl) are installed")
        self.port = port or free_port()
        # Not under pytest's tmp_path: that folder is private to root, and the server runs as
        # `postgres` when we are root.
        self.folder = Path(tempfile.mkdtemp(prefix="hexfleet-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as_owner = ["runuser", "-u", OWNER, "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/hexfleet"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [*self._as_owner, *argv], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            # Only the server process restarts here, never the machine: the kernel keeps what
            # was written, so the fsync cost (on a shared 2-core CI machine) buys nothing.
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.log),
            "-w", "-t", "60", "-o", options, *extra,
        )

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                "--no-sync", "-E", "UTF8",
            )
            self._pg_ctl("start")
            with psycopg.connect(self.admin_dsn(), autocommit=True) as admin:
                admin.execute("CREATE DATABASE hexfleet")
            return
        self._pg_ctl("start")

    def restart(self) -> None:
        """Stop the server at once (`-m immediate`: every connection cut, no shutdown
        checkpoint) and start it again; returns once it accepts connections."""
        self._pg_ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast")

    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=5"

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
