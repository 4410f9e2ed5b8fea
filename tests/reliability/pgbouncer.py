"""Debian's pgbouncer (1.18) in transaction pooling, in front of the test PostgreSQL.

`PgBouncer(upstream_url)` writes its config and auth file into a temporary
directory, starts /usr/sbin/pgbouncer on a free loopback port and stops it
again. Every database name is passed through to the upstream server (`* =`),
so `url(database_url)` is any test database's URL, the same role, through
the bouncer. Each (database, role) pair gets at most `pool_size` server
connections: a small pool, so connections are handed from client to client
(and tenant to tenant) all the time. The admin console (the virtual
`pgbouncer` database) answers SHOW POOLS, SERVERS and STATS.

pgbouncer refuses to run as root, so as root it is started with `-u postgres`
and the directory is given to that user, as tests/reliability/cluster.py does
for initdb. Authentication is `trust`, as on the upstream server of these
machines: the auth file only names the roles that may connect.
"""

from __future__ import annotations

import csv
import io
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.reliability.cluster import free_port

BINARY = Path("/usr/sbin/pgbouncer")
PSQL = shutil.which("psql") or "/usr/bin/psql"
ADMIN = "exceptao_bouncer_admin"   # a console-only name: pgbouncer's own, no PostgreSQL role


class PgBouncer:
    def __init__(self, upstream_url: str, *, pool_size: int = 3, roles: tuple[str, ...] = ()):
        upstream = urlsplit(upstream_url)
        self.upstream_host = upstream.hostname or "127.0.0.1"
        self.upstream_port = upstream.port or 5432
        self.pool_size = pool_size
        self.roles = tuple(dict.fromkeys((upstream.username or "postgres", *roles, ADMIN)))
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="exceptao-pgbouncer-"))
        self.log = self.directory / "pgbouncer.log"
        self.process: subprocess.Popen | None = None

    def url(self, database_url: str) -> str:
        """`database_url` (its role and database) through the bouncer."""
        parts = urlsplit(database_url)
        netloc = f"{parts.username}@127.0.0.1:{self.port}" if parts.username else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @property
    def admin_url(self) -> str:
        return f"postgresql://{ADMIN}@127.0.0.1:{self.port}/pgbouncer"

    def _write_config(self) -> Path:
        (self.directory / "userlist.txt").write_text("".join(f'"{role}" ""\n' for role in self.roles))
        config = self.directory / "pgbouncer.ini"
        # server_round_robin = 0 (the default, said here since tests count on it): a
        # client is handed the server connection used last, as in production.
        config.write_text(f"""\
[databases]
* = host={self.upstream_host} port={self.upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
pidfile = {self.directory}/pgbouncer.pid
logfile = {self.log}
auth_type = trust
auth_file = {self.directory}/userlist.txt
admin_users = {ADMIN}
stats_users = {ADMIN}
pool_mode = transaction
default_pool_size = {self.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
max_db_connections = 0
server_round_robin = 0
""")
        return config

    def start(self) -> "PgBouncer":
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"no {BINARY}: apt-get install pgbouncer (.ci/run does)")
        config = self._write_config()
        command = [str(BINARY)]
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.directory, *self.directory.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
            command += ["-u", "postgres"]
        self.process = subprocess.Popen([*command, str(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({self.process.returncode}):\n{self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not listen within 30 s:\n{self._log_tail()}")
                time.sleep(0.05)

    def _log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def show(self, what: str) -> list[dict[str, str]]:
        """SHOW <what> on the admin console (POOLS, SERVERS, STATS, ...), one dict per row.

        The console answers only the simple query protocol, and asyncpg
        returns rows only from the extended one, so it is read with psql.
        """
        if not re.fullmatch(r"[A-Z_]+", what):
            raise ValueError(f"not a SHOW subject: {what!r}")
        answer = subprocess.run([PSQL, "--csv", "-X", "-d", self.admin_url, "-c", f"SHOW {what}"],
                                capture_output=True, text=True, check=True, timeout=30)
        return list(csv.DictReader(io.StringIO(answer.stdout)))
