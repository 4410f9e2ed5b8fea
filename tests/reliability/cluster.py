"""A private PostgreSQL 15 cluster for tests that restart or crash the server.

The shared server on 5432 is never restarted: a test that needs to stop
PostgreSQL gets its own cluster, initdb'd into a temporary directory, on a
free loopback port, with fsync on (durability is what such tests check).
initdb and the server refuse to run as root, so as root they run as the
`postgres` system user, which then owns the data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """initdb, start, restart (fast or immediate) and remove one throwaway cluster."""

    def __init__(self, options: dict[str, str] | None = None):
        self.options = {"fsync": "on", "synchronous_commit": "on", "listen_addresses": "127.0.0.1",
                        "unix_socket_directories": "", **(options or {})}
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="exceptao-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(a) for a in args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> "PrivateCluster":
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self._run(BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.port}\n")
            for name, value in self.options.items():
                conf.write(f"{name} = '{value}'\n")
        return self

    def start(self) -> None:
        self._run(BIN / "pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", self.log)

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart -m fast (clean) or -m immediate (a crash: recovery replays the WAL)."""
        self._run(BIN / "pg_ctl", "restart", "-w", "-t", "60", "-m", mode, "-D", self.data, "-l", self.log)

    def stop(self) -> None:
        self._run(BIN / "pg_ctl", "stop", "-w", "-m", "immediate", "-D", self.data)

    def remove(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
