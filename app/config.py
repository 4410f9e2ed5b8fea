"""Settings, all from environment variables. This module is the one place they are documented.

| variable | default | meaning |
|---|---|---|
| DATABASE_URL | unset: embedded PostgreSQL | administrator URL: migrations, tenant creation. Must be a superuser (roles, BYPASSRLS). Straight to PostgreSQL, not through pgbouncer: migrations, key rotation and tenant deletion hold session locks |
| APP_DATABASE_URL | DATABASE_URL with user exceptao_app, no password | the runtime pool; connects as the app role; may go through pgbouncer in transaction pooling (with DATABASE_STATEMENT_CACHE 0) |
| OPERATOR_DATABASE_URL | DATABASE_URL with user exceptao_operator, no password | the operator panel's own pool (BYPASSRLS); with neither set, no operator panel |
| EXCEPTAO_DATA_DIR | per-user data dir (platformdirs) | embedded database and local files |
| EXCEPTAO_HOST | 127.0.0.1 | address `exceptao serve` binds (ingress is outbound-only) |
| EXCEPTAO_PORT | 8080 | port `exceptao serve` binds |
| EXCEPTAO_BASE_DOMAIN | localhost | tenants are also found by host: <slug>.<base domain>; links in mail use https://<slug>.<base domain> (http and the port on localhost) |
| DATABASE_POOL_MIN / DATABASE_POOL_MAX | 1 / 10 | runtime pool size |
| DATABASE_STATEMENT_CACHE | 100 | asyncpg prepared statements per connection; 0 behind pgbouncer (transaction pooling) |
| EXCEPTAO_VERIFY_BATCH | 20000 | rows the verifier reads per round trip |
| EXCEPTAO_VERIFY_WORKERS | CPUs, at most 4 | processes that walk a long chain (50,000 rows and more) in parallel |
| EXCEPTAO_SECRET_KEY | `<data dir>/secret.key`, made on first use (mode 0600) | 32 bytes, base64: keys rate-limit counters (HMAC) and seals operators' TOTP secrets; tenants' TOTP secrets sealed under it before tenant keys are moved to the tenant key when next used |
| EXCEPTAO_VAULT_ADDR (or VAULT_ADDR) | unset: the local key file `<data dir>/kek.keys` (mode 0600, made on first use) | Vault or OpenBao whose transit engine holds the key-encryption key that wraps each tenant's data key (app/crypto) |
| EXCEPTAO_VAULT_TOKEN (or VAULT_TOKEN) | unset | the token for transit: encrypt and decrypt on the key; `exceptao keys rotate` also needs rotate, rewrap and read |
| EXCEPTAO_VAULT_TRANSIT_KEY / EXCEPTAO_VAULT_TRANSIT_MOUNT | exceptao / transit | the transit key's name and the engine's mount path |
| EXCEPTAO_VAULT_CACERT (or VAULT_CACERT) | unset: the system's CAs | a CA bundle that signed Vault's TLS certificate |
| EXCEPTAO_SESSION_IDLE_MINUTES | 30 | a session unused this long is over (counted from when it was last marked seen, at most once a minute: it may end up to a minute sooner) |
| EXCEPTAO_SESSION_HOURS | 12 | a session is over this long after sign-in, used or not |
| EXCEPTAO_SMTP_HOST / EXCEPTAO_SMTP_PORT | 127.0.0.1 / 25 | where mail is sent: password resets at once, reminders through the outbox job |
| EXCEPTAO_SMTP_USER / EXCEPTAO_SMTP_PASSWORD / EXCEPTAO_SMTP_STARTTLS | unset / unset / off | SMTP sign-in; STARTTLS when `on` |
| EXCEPTAO_MAIL_FROM | exceptao@localhost | sender of all mail; its domain also names the outbox's Message-IDs |
| EXCEPTAO_JOBS | on | background jobs (app/jobs) run in this process; `off` for tests or an instance that should not |
| EXCEPTAO_STORAGE_DIR | `<data dir>/objects` | the local object store (evidence files, encrypted), used while no S3 bucket is set |
| EXCEPTAO_S3_BUCKET | unset: the local folder | the S3-compatible bucket that holds evidence files (AWS S3, Cloudflare R2, Backblaze B2, MinIO) |
| EXCEPTAO_S3_ENDPOINT | unset: AWS | the store's endpoint URL, e.g. https://<account>.r2.cloudflarestorage.com, https://s3.<region>.backblazeb2.com, http://minio:9000 |
| EXCEPTAO_S3_REGION | us-east-1 | the bucket's region (R2 takes `auto` or us-east-1) |
| EXCEPTAO_S3_ACCESS_KEY_ID / EXCEPTAO_S3_SECRET_ACCESS_KEY | unset: botocore's chain (AWS_* variables, instance role) | the store's access key |
| EXCEPTAO_S3_ADDRESSING | auto | `path` (MinIO, most self-hosted stores), `virtual` or `auto` (botocore decides) |
| EXCEPTAO_S3_PART_MB | 8 | multipart upload part size in MiB (at least 5); memory per upload is about one part |
| EXCEPTAO_EVIDENCE_MAX_MB | 50 | largest evidence file accepted; a larger one is refused with 413 |
| EXCEPTAO_TSA_URL | unset: chain heads are not anchored | the RFC 3161 timestamp authority (HTTP POST of application/timestamp-query) that the hourly audit-anchor job asks to timestamp each tenant's chain head |
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import platformdirs

APP_ROLE = "exceptao_app"
OPERATOR_ROLE = "exceptao_operator"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("exceptao", appauthor=False))


def url_for_role(url: str, role: str, password: str | None = None) -> str:
    """The same server and database as `url`, signed in as `role`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = role + (f":{password}" if password else "") + "@" + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    app_database_url: str | None = None
    operator_database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    base_domain: str = "localhost"
    pool_min: int = 1
    pool_max: int = 10
    statement_cache: int = 100
    verify_batch: int = 20000
    verify_workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    secret_key: bytes | None = field(default=None, repr=False)
    vault_addr: str | None = None
    vault_token: str | None = field(default=None, repr=False)
    vault_transit_key: str = "exceptao"
    vault_transit_mount: str = "transit"
    vault_cacert: str | None = None
    session_idle_minutes: int = 30
    session_hours: int = 12
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    mail_from: str = "exceptao@localhost"
    jobs: bool = True
    storage_dir_override: Path | None = None
    s3_bucket: str | None = None
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_addressing_style: str = "auto"
    s3_part_mb: int = 8
    evidence_max_mb: int = 50
    tsa_url: str | None = None
    # PEM of the authority's root certificate(s): anchors' tokens are checked against it.
    tsa_ca_file: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            app_database_url=env.get("APP_DATABASE_URL") or None,
            operator_database_url=env.get("OPERATOR_DATABASE_URL") or None,
            data_dir=Path(env["EXCEPTAO_DATA_DIR"]) if env.get("EXCEPTAO_DATA_DIR") else defaults.data_dir,
            host=env.get("EXCEPTAO_HOST", defaults.host),
            port=int(env.get("EXCEPTAO_PORT", defaults.port)),
            base_domain=env.get("EXCEPTAO_BASE_DOMAIN", defaults.base_domain),
            pool_min=int(env.get("DATABASE_POOL_MIN", defaults.pool_min)),
            pool_max=int(env.get("DATABASE_POOL_MAX", defaults.pool_max)),
            statement_cache=int(env.get("DATABASE_STATEMENT_CACHE", defaults.statement_cache)),
            verify_batch=int(env.get("EXCEPTAO_VERIFY_BATCH", defaults.verify_batch)),
            verify_workers=int(env.get("EXCEPTAO_VERIFY_WORKERS", defaults.verify_workers)),
            secret_key=decode_key(env["EXCEPTAO_SECRET_KEY"]) if env.get("EXCEPTAO_SECRET_KEY") else None,
            vault_addr=env.get("EXCEPTAO_VAULT_ADDR") or env.get("VAULT_ADDR") or None,
            vault_token=env.get("EXCEPTAO_VAULT_TOKEN") or env.get("VAULT_TOKEN") or None,
            vault_transit_key=env.get("EXCEPTAO_VAULT_TRANSIT_KEY") or defaults.vault_transit_key,
            vault_transit_mount=env.get("EXCEPTAO_VAULT_TRANSIT_MOUNT") or defaults.vault_transit_mount,
            vault_cacert=env.get("EXCEPTAO_VAULT_CACERT") or env.get("VAULT_CACERT") or None,
            session_idle_minutes=int(env.get("EXCEPTAO_SESSION_IDLE_MINUTES", defaults.session_idle_minutes)),
            session_hours=int(env.get("EXCEPTAO_SESSION_HOURS", defaults.session_hours)),
            smtp_host=env.get("EXCEPTAO_SMTP_HOST", defaults.smtp_host),
            smtp_port=int(env.get("EXCEPTAO_SMTP_PORT", defaults.smtp_port)),
            smtp_user=env.get("EXCEPTAO_SMTP_USER") or None,
            smtp_password=env.get("EXCEPTAO_SMTP_PASSWORD") or None,
            smtp_starttls=env.get("EXCEPTAO_SMTP_STARTTLS", "off") == "on",
            mail_from=env.get("EXCEPTAO_MAIL_FROM", defaults.mail_from),
            jobs=env.get("EXCEPTAO_JOBS", "on") != "off",
            storage_dir_override=Path(env["EXCEPTAO_STORAGE_DIR"]) if env.get("EXCEPTAO_STORAGE_DIR") else None,
            s3_bucket=env.get("EXCEPTAO_S3_BUCKET") or None,
            s3_endpoint=env.get("EXCEPTAO_S3_ENDPOINT") or None,
            s3_region=env.get("EXCEPTAO_S3_REGION", defaults.s3_region),
            s3_access_key_id=env.get("EXCEPTAO_S3_ACCESS_KEY_ID") or None,
            s3_secret_access_key=env.get("EXCEPTAO_S3_SECRET_ACCESS_KEY") or None,
            s3_addressing_style=env.get("EXCEPTAO_S3_ADDRESSING", defaults.s3_addressing_style),
            s3_part_mb=int(env.get("EXCEPTAO_S3_PART_MB", defaults.s3_part_mb)),
            evidence_max_mb=int(env.get("EXCEPTAO_EVIDENCE_MAX_MB", defaults.evidence_max_mb)),
            tsa_url=env.get("EXCEPTAO_TSA_URL") or None,
            tsa_ca_file=Path(env["EXCEPTAO_TSA_CA_FILE"]) if env.get("EXCEPTAO_TSA_CA_FILE") else None,
        )

    def with_database(self, admin_url: str) -> "Settings":
        return replace(self, database_url=admin_url)

    def site_url(self, slug: str, path: str = "/") -> str:
        """A tenant's address for links in mail, where no request says it: https://<slug>.<base domain><path>;
        on localhost plain http on the port served."""
        if self.base_domain == "localhost":
            return f"http://{slug}.localhost:{self.port}{path}"
        return f"https://{slug}.{self.base_domain}{path}"

    def key(self) -> bytes:
        """The secret key: from the environment, else a key file in the data dir, made once."""
        if self.secret_key is not None:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        return decode_key(path.read_text().strip())

    @property
    def storage_dir(self) -> Path:
        return self.storage_dir_override or self.data_dir / "objects"

    @property
    def runtime_database_url(self) -> str:
        if self.app_database_url:
            return self.app_database_url
        if not self.database_url:
            raise RuntimeError("no database configured: set DATABASE_URL or use `exceptao serve`")
        return url_for_role(self.database_url, APP_ROLE)

    @property
    def operator_pool_url(self) -> str | None:
        """The operator panel's database URL; None when none is configured (the panel is then off)."""
        if self.operator_database_url:
            return self.operator_database_url
        return url_for_role(self.database_url, OPERATOR_ROLE) if self.database_url else None


def decode_key(text: str) -> bytes:
    key = base64.b64decode(text, validate=True)
    if len(key) != 32:
        raise ValueError("EXCEPTAO_SECRET_KEY must be 32 bytes, base64-encoded")
    return key
