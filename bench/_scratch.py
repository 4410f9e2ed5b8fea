"""Shared by the benchmarks: a throw-away migrated database, pools on it, output.

Each benchmark runs against its own database `exceptao_bench_<random>` on the
server of DATABASE_URL (an administrator URL), created from template0, migrated
with app.migrations.migrate, and dropped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.audit.events import system_actor
from app.config import Settings
from app.db import open_pool
from app.migrations import migrate
from app.tenants import Tenant, create_tenant

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ACTOR = system_actor("bench")


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def add_schema_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sql-dir", type=Path,
                        help="migrate from this directory instead of the repository's sql/ "
                             "(e.g. an older version, to compare)")


@asynccontextmanager
async def scratch_database(sql_dir: Path | None = None) -> AsyncIterator[str]:
    """Create and migrate a scratch database; yield its administrator URL; drop it on exit."""
    server = server_url()
    name = f"exceptao_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
    finally:
        await conn.close()
    log(f"scratch database {name} created")
    try:
        url = _with_database(server, name)
        await migrate(url, *([sql_dir] if sql_dir else []))
        yield url
    finally:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()
        log(f"scratch database {name} dropped")


def app_settings(admin_url: str, pool_size: int = 2) -> Settings:
    """The application's settings for the scratch database, a pool of `pool_size` kept open."""
    return Settings(database_url=admin_url, pool_min=pool_size, pool_max=pool_size)


@asynccontextmanager
async def app_pool(admin_url: str, size: int) -> AsyncIterator[asyncpg.Pool]:
    """The runtime pool (role exceptao_app) on the scratch database, `size` connections kept open."""
    pool = await open_pool(app_settings(admin_url, size))
    try:
        yield pool
    finally:
        await pool.close()


async def make_tenants(admin_url: str, slugs: list[str]) -> list[Tenant]:
    """Create tenants the way the application does (each chain starts with its creation event)."""
    conn = await asyncpg.connect(admin_url)
    try:
        return [await create_tenant(conn, slug, slug, actor=ACTOR) for slug in slugs]
    finally:
        await conn.close()


async def add_user(conn: asyncpg.Connection, tenant_id, email: str, name: str, role: str, password: str):
    """A user who can sign in with `password`, holding the default role `role` (its seeded_as key); their id."""
    return (await add_users(conn, tenant_id, [(email, name)], role, password))[0]


async def add_users(conn: asyncpg.Connection, tenant_id, people: list[tuple[str, str]], role: str, password: str):
    """add_user for each (email, name), all with one password, hashed once (Argon2 is slow on purpose); ids."""
    from app.accounts.passwords import hash_password

    password_hash = hash_password(password)
    ids = []
    for email, name in people:
        user = await conn.fetchval(
            "INSERT INTO app_user (tenant_id, email, display_name, password_hash) VALUES ($1, $2, $3, $4)"
            " RETURNING id", tenant_id, email, name, password_hash)
        await conn.execute("INSERT INTO role_assignment (tenant_id, role_id, user_id)"
                           " SELECT $1, id, $2 FROM role WHERE tenant_id = $1 AND seeded_as = $3",
                           tenant_id, user, role)
        ids.append(user)
    return ids


async def schema_checksums(admin_url: str) -> dict[str, str]:
    """Which migration files were measured: name -> start of the SHA-256 migrate recorded."""
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return {r["name"]: r["checksum"][:12] for r in rows}


async def server_facts(pool: asyncpg.Pool) -> dict:
    """Settings that decide the figures, as the app role's sessions see them."""
    row = await pool.fetchrow(
        "SELECT current_setting('server_version') AS server_version,"
        " current_setting('synchronous_commit') AS synchronous_commit,"
        " current_setting('fsync') AS fsync,"
        " current_setting('wal_sync_method') AS wal_sync_method,"
        " current_setting('commit_delay') AS commit_delay,"
        " current_setting('shared_buffers') AS shared_buffers,"
        " current_setting('autovacuum') AS autovacuum"
    )
    return {**dict(row), "client_cpus": os.cpu_count()}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict) -> None:
    print(json.dumps(result, indent=2))
